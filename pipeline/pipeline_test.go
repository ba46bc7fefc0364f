package pipeline

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/config/duration"
	"auditwatch/ingest/dir"
	"auditwatch/ingest/source"
	"auditwatch/schema"
	"auditwatch/stream"
)

// memDetector raises one finding per "vault:delete" event and counts the
// events it was given; its checkpoint lives in a shared map, so a new
// instance restores what the last one checkpointed.
type memDetector struct {
	store *memStore
	seen  int
}

type memStore struct {
	mu   sync.Mutex
	meta map[string][]byte
	seen int
	all  map[string]int // every event id processed, across restarts
}

func (d *memDetector) Process(ev schema.Event) []schema.Finding {
	d.seen++
	d.store.mu.Lock()
	d.store.all[ev.ID]++
	d.store.mu.Unlock()
	if ev.Action != "vault:delete" {
		return nil
	}
	return []schema.Finding{{ID: schema.MakeID("test", ev.ID), Detector: schema.DetectorPrivilegedUse, EventIDs: []string{ev.ID}}}
}

func (d *memDetector) Checkpoint(meta map[string][]byte) error {
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	d.store.meta = meta
	d.store.seen = d.seen
	return nil
}

func (d *memDetector) Meta() (map[string][]byte, error) {
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	return d.store.meta, nil
}

func (d *memDetector) Close() error { return nil }

func writeEvents(t *testing.T, path string, from, n int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := from; i < from+n; i++ {
		act := "vault:read"
		if i%10 == 0 {
			act = "vault:delete"
		}
		b, _ := json.Marshal(schema.Event{ID: fmt.Sprintf("e%05d", i), Action: act, Principal: fmt.Sprintf("p%d", i%7)})
		fmt.Fprintf(f, "%s\n", b)
	}
}

// runOnce runs dir source → embedded stream → detect stage → findings file
// until the detector has seen want events in total, then stops.
func runOnce(t *testing.T, st *memStore, folder, findings string, want int) {
	t.Helper()
	det := &memDetector{store: st, seen: st.seen}
	meta, _ := det.Meta()
	cp := source.NewMemCheckpoints(PositionsFromMeta(meta))
	ff, err := OpenFindingsFile(findings)
	if err != nil {
		t.Fatal(err)
	}
	defer ff.Close()
	emb, err := stream.NewEmbedded(stream.EmbeddedConfig{QueueSize: 64}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	stage, err := NewDetectStage(DetectConfig{
		Open:               func(int, bool) (Detector, error) { return det, nil },
		Findings:           ff,
		CheckpointEvents:   50,
		CheckpointInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ing, err := NewIngest(IngestConfig{Stream: emb, EventsTopic: "events", CarryPositions: true})
	if err != nil {
		t.Fatal(err)
	}
	src, err := dir.New(dir.Config{Path: folder, PollInterval: duration.Duration(10 * time.Millisecond), SettleTime: duration.Duration(time.Millisecond)}, "drop", source.JSONLines, cp, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithCancel(context.Background())
	ddone := make(chan error, 1)
	go func() { ddone <- emb.Consume(dctx, "events", "detect", stage) }()
	sctx, scancel := context.WithCancel(context.Background())
	sdone := make(chan error, 1)
	go func() { sdone <- src.Run(sctx, ing) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st.mu.Lock()
		n := st.seen
		st.mu.Unlock()
		if n >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpointed %d events, want %d", n, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	scancel()
	if err := <-sdone; err != nil {
		t.Fatal(err)
	}
	dcancel()
	if err := <-ddone; err != nil {
		t.Fatal(err)
	}
}

func readFindings(t *testing.T, path string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var v schema.Finding
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		out[v.ID]++
	}
	return out
}

// TestEmbeddedRestartResumesFromCheckpoint: source positions are stored
// with detector state, so a restart resumes exactly there: no event is
// given to the detector twice and every finding is written once.
func TestEmbeddedRestartResumesFromCheckpoint(t *testing.T) {
	folder := t.TempDir()
	findings := filepath.Join(t.TempDir(), "findings.jsonl")
	st := &memStore{all: map[string]int{}}
	writeEvents(t, filepath.Join(folder, "a.jsonl"), 0, 300)
	runOnce(t, st, folder, findings, 300)
	b := filepath.Join(folder, "b.jsonl")
	writeEvents(t, b, 300, 200)
	// written a while ago: settled for the dir source at its first look
	settled := time.Now().Add(-time.Minute)
	if err := os.Chtimes(b, settled, settled); err != nil {
		t.Fatal(err)
	}
	runOnce(t, st, folder, findings, 500)
	if len(st.all) != 500 {
		t.Fatalf("detector saw %d distinct events, want 500", len(st.all))
	}
	for id, n := range st.all {
		if n != 1 {
			t.Fatalf("event %s given to the detector %d times", id, n)
		}
	}
	got := readFindings(t, findings)
	if len(got) != 50 {
		t.Fatalf("%d findings, want 50", len(got))
	}
	for id, n := range got {
		if n != 1 {
			t.Fatalf("finding %s written %d times", id, n)
		}
	}
}

// TestFindingsFileDedupesAcrossReopen: a replay after a crash hands the
// same findings again; the file keeps one of each and drops a torn line.
func TestFindingsFileDedupesAcrossReopen(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f.jsonl")
	ff, err := OpenFindingsFile(p)
	if err != nil {
		t.Fatal(err)
	}
	fs := []schema.Finding{{ID: "a"}, {ID: "b"}, {ID: "a"}}
	if err := ff.WriteFindings(context.Background(), fs); err != nil {
		t.Fatal(err)
	}
	ff.Close()
	f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"id":"c","detec`)
	f.Close()
	ff, err = OpenFindingsFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := ff.WriteFindings(context.Background(), []schema.Finding{{ID: "b"}, {ID: "c"}}); err != nil {
		t.Fatal(err)
	}
	ff.Close()
	got := readFindings(t, p)
	if len(got) != 3 || got["a"] != 1 || got["b"] != 1 || got["c"] != 1 {
		t.Fatalf("findings = %v", got)
	}
}
