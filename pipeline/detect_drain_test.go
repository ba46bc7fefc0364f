package pipeline

import (
	"context"
	"testing"
	"time"

	"auditwatch/schema"
	"auditwatch/stream"
)

// bufferingDetector holds every event in a reorder buffer that only an
// idle drain releases, one finding per event.
type bufferingDetector struct{ buf []schema.Event }

func (d *bufferingDetector) Process(ev schema.Event) []schema.Finding {
	d.buf = append(d.buf, ev)
	return nil
}
func (d *bufferingDetector) Checkpoint(map[string][]byte) error { return nil }
func (d *bufferingDetector) Meta() (map[string][]byte, error)   { return nil, nil }
func (d *bufferingDetector) Close() error                       { return nil }
func (d *bufferingDetector) Buffered() int                      { return len(d.buf) }
func (d *bufferingDetector) Drain() []schema.Finding {
	fs := make([]schema.Finding, len(d.buf))
	for i, ev := range d.buf {
		fs[i] = schema.Finding{ID: "f-" + ev.ID, Detector: "buffered"}
	}
	d.buf = nil
	return fs
}

// TestRebuiltPartitionDrainsAtCommittedOffset: the previous owner
// committed offset 3 with the events of offsets 0-2 still in its reorder
// buffer (saved with its state, never released). The new owner rebuilds
// to offset 3; when the partition then stays idle, the drain's findings
// were raised by nobody before and must be handed on (they were dropped
// as "published by the previous owner").
func TestRebuiltPartitionDrainsAtCommittedOffset(t *testing.T) {
	sink := newFindingCounter()
	st, err := NewDetectStage(DetectConfig{
		Open:     func(int, bool) (Detector, error) { return &bufferingDetector{}, nil },
		Findings: sink, Replayable: true,
		CheckpointEvents: 1000, CheckpointInterval: time.Hour, IdleDrain: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	commit := func(context.Context, int, int64) error { return nil }
	start, err := st.Assigned(ctx, stream.Assignment{Topic: "events", Committed: map[int]int64{0: 3}, Oldest: map[int]int64{0: 0}, Commit: commit})
	if err != nil {
		t.Fatal(err)
	}
	if start[0] != 0 {
		t.Fatalf("rebuild starts at %d, want the oldest offset 0", start[0])
	}
	evs := []schema.Event{{ID: "a"}, {ID: "b"}, {ID: "c"}}
	recs := make([]stream.Record, len(evs))
	for i := range evs {
		recs[i] = stream.Record{Offset: int64(i), Event: &evs[i]}
	}
	if err := st.Handle(ctx, 0, recs); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if err := st.Handle(ctx, 0, nil); err != nil { // idle tick: drain
		t.Fatal(err)
	}
	if err := st.Revoked(ctx, []int{0}); err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if sink.ids["f-"+ev.ID] != 1 {
			t.Errorf("finding of buffered event %s handed on %d times, want 1", ev.ID, sink.ids["f-"+ev.ID])
		}
	}
}
