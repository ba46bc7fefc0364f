package pipeline

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"auditwatch/schema"
)

// FindingsFile is a FindingSink appending each finding as one JSON line,
// once per finding id: ids already in the file (from before a restart) are
// skipped, so a replay never writes a finding twice.
type FindingsFile struct {
	mu   sync.Mutex
	f    *os.File
	seen map[string]struct{}
	buf  []byte
}

// OpenFindingsFile opens (creating) path and loads the ids it holds. A
// torn last line (a crash mid-write) is cut off.
func OpenFindingsFile(path string) (*FindingsFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("findings file: %w", err)
	}
	seen := map[string]struct{}{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var good int64
	for sc.Scan() {
		line := sc.Bytes()
		var v struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(line, &v); err != nil {
			break
		}
		seen[v.ID] = struct{}{}
		good += int64(len(line)) + 1
	}
	if err := f.Truncate(good); err != nil {
		f.Close()
		return nil, fmt.Errorf("findings file %s: %w", path, err)
	}
	if _, err := f.Seek(good, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("findings file %s: %w", path, err)
	}
	return &FindingsFile{f: f, seen: seen}, nil
}

// WriteFindings appends the findings not yet in the file and syncs it.
func (w *FindingsFile) WriteFindings(_ context.Context, fs []schema.Finding) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = w.buf[:0]
	var added []string
	for i := range fs {
		if _, dup := w.seen[fs[i].ID]; dup {
			continue
		}
		b, err := json.Marshal(&fs[i])
		if err != nil {
			return fmt.Errorf("findings file: encode %s: %w", fs[i].ID, err)
		}
		w.buf = append(append(w.buf, b...), '\n')
		w.seen[fs[i].ID] = struct{}{}
		added = append(added, fs[i].ID)
	}
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.f.Write(w.buf)
	if err == nil {
		err = w.f.Sync()
	}
	if err != nil {
		for _, id := range added {
			delete(w.seen, id)
		}
		return fmt.Errorf("findings file: %w", err)
	}
	return nil
}

// Close closes the file.
func (w *FindingsFile) Close() error { return w.f.Close() }
