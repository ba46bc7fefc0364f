package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"auditwatch/schema"
)

// EventsFile is an EventSink appending each event as one JSON line. It is
// at-least-once: events after the last checkpoint are written again after
// a restart.
type EventsFile struct {
	mu  sync.Mutex
	f   *os.File
	buf []byte
}

// OpenEventsFile opens (creating, appending) path.
func OpenEventsFile(path string) (*EventsFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("events file: %w", err)
	}
	return &EventsFile{f: f}, nil
}

// WriteEvents appends evs and syncs the file.
func (w *EventsFile) WriteEvents(_ context.Context, evs []schema.Event) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = w.buf[:0]
	for i := range evs {
		b, err := json.Marshal(&evs[i])
		if err != nil {
			return fmt.Errorf("events file: encode %s: %w", evs[i].ID, err)
		}
		w.buf = append(append(w.buf, b...), '\n')
	}
	if _, err := w.f.Write(w.buf); err != nil {
		return fmt.Errorf("events file: %w", err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("events file: %w", err)
	}
	return nil
}

// Close closes the file.
func (w *EventsFile) Close() error { return w.f.Close() }
