package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"auditwatch/schema"
	"auditwatch/stream"
)

// journal records, in order, what the stage did with findings and what
// the store acknowledged.
type journal struct {
	mu  sync.Mutex
	ops []string
}

func (j *journal) add(op string) {
	j.mu.Lock()
	j.ops = append(j.ops, op)
	j.mu.Unlock()
}

func (j *journal) list() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.ops)
}

// stalledStore is a StoreSink that stores nothing until released: a store
// stalled by merges or a slow disk.
type stalledStore struct {
	j       *journal
	mu      sync.Mutex
	pending []submission
	events  []string // ids stored, in order
	fs      []string
}

type submission struct {
	evs  []string
	fs   []string
	done func()
}

func (s *stalledStore) Submit(_ context.Context, evs []schema.Event, fs []schema.Finding, done func()) error {
	var sub submission
	for _, ev := range evs {
		sub.evs = append(sub.evs, ev.ID)
	}
	for _, f := range fs {
		sub.fs = append(sub.fs, f.ID)
	}
	sub.done = done
	s.mu.Lock()
	s.pending = append(s.pending, sub)
	s.mu.Unlock()
	return nil
}

// release stores every submission so far, in order.
func (s *stalledStore) release() {
	s.mu.Lock()
	subs := s.pending
	s.pending = nil
	for _, sub := range subs {
		s.events = append(s.events, sub.evs...)
		s.fs = append(s.fs, sub.fs...)
	}
	s.mu.Unlock()
	for _, sub := range subs {
		s.j.add(fmt.Sprintf("stored %d events %d findings", len(sub.evs), len(sub.fs)))
		sub.done()
	}
}

func (s *stalledStore) Flush(context.Context) error {
	s.release()
	return nil
}

// savedState is a detector's durable state across a restart: the meta of
// its last checkpoint.
type savedState struct {
	mu   sync.Mutex
	meta map[string][]byte
}

// recordingDetector raises one finding for each event whose id starts
// with "bad" and saves its checkpoint meta in a savedState.
type recordingDetector struct {
	saved     *savedState
	processed []string
}

func (d *recordingDetector) Process(ev schema.Event) []schema.Finding {
	d.processed = append(d.processed, ev.ID)
	if strings.HasPrefix(ev.ID, "bad") {
		return []schema.Finding{{ID: "f-" + ev.ID, Detector: "test", EventIDs: []string{ev.ID}}}
	}
	return nil
}

func (d *recordingDetector) Checkpoint(meta map[string][]byte) error {
	d.saved.mu.Lock()
	d.saved.meta = maps.Clone(meta)
	d.saved.mu.Unlock()
	return nil
}

func (d *recordingDetector) Meta() (map[string][]byte, error) {
	d.saved.mu.Lock()
	defer d.saved.mu.Unlock()
	return maps.Clone(d.saved.meta), nil
}

func (d *recordingDetector) Close() error { return nil }

// journalSink is the findings sink (the alert outbox) writing to the journal.
type journalSink struct{ j *journal }

func (s journalSink) WriteFindings(_ context.Context, fs []schema.Finding) error {
	for _, f := range fs {
		s.j.add("finding " + f.ID)
	}
	return nil
}

type storeRig struct {
	stage   *DetectStage
	det     *recordingDetector
	store   *stalledStore
	j       *journal
	commits []int64
}

func newStoreRig(t *testing.T, saved *savedState, opts ...func(*DetectConfig)) *storeRig {
	t.Helper()
	j := &journal{}
	rig := &storeRig{det: &recordingDetector{saved: saved}, store: &stalledStore{j: j}, j: j}
	cfg := DetectConfig{
		Open:     func(int, bool) (Detector, error) { return rig.det, nil },
		Findings: journalSink{j}, Store: rig.store,
		CheckpointEvents: 2, CheckpointInterval: time.Hour,
	}
	for _, o := range opts {
		o(&cfg)
	}
	st, err := NewDetectStage(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rig.stage = st
	commit := func(_ context.Context, _ int, next int64) error {
		rig.commits = append(rig.commits, next)
		return nil
	}
	// The group's committed offset is the last one this rig's
	// predecessor committed (what a Kafka group would hand over).
	committed := int64(-1)
	if m, _ := rig.det.Meta(); m != nil {
		if v, ok := m[MetaOffset]; ok {
			fmt.Sscan(string(v), &committed)
		}
	}
	if _, err := st.Assigned(context.Background(), stream.Assignment{Topic: "events", Committed: map[int]int64{0: committed}, Oldest: map[int]int64{0: 0}, Commit: commit}); err != nil {
		t.Fatal(err)
	}
	return rig
}

// handle hands the events of ids to the stage as records of source "s",
// each record's position its id.
func (r *storeRig) handle(t *testing.T, from int64, ids ...string) {
	t.Helper()
	recs := make([]stream.Record, len(ids))
	for i, id := range ids {
		recs[i] = stream.Record{Offset: from + int64(i), Source: "s", Position: []byte(id), Event: &schema.Event{ID: id, Source: schema.SourceVault}}
	}
	if err := r.stage.Handle(context.Background(), 0, recs); err != nil {
		t.Fatal(err)
	}
}

// TestStalledStoreDoesNotHoldFindings: with the store stalled (nothing
// acknowledged), detection goes on and every finding reaches the findings
// sink; the input position is neither saved nor committed past what the
// store acknowledged, and what it has not is in the checkpoint. Once the
// store catches up, the position follows, and every event and finding is
// stored once.
func TestStalledStoreDoesNotHoldFindings(t *testing.T) {
	saved := &savedState{}
	rig := newStoreRig(t, saved)
	rig.handle(t, 0, "e0", "bad1")
	rig.handle(t, 2, "e2", "bad3")
	if got := rig.j.list(); !slices.Equal(got, []string{"finding f-bad1", "finding f-bad3"}) {
		t.Fatalf("with the store stalled: %q, want both findings handed on and nothing stored", got)
	}
	if len(rig.commits) != 0 {
		t.Fatalf("committed %v while the store acknowledged nothing", rig.commits)
	}
	meta, _ := rig.det.Meta()
	if _, ok := meta[MetaSourcePrefix+"s"]; ok {
		t.Errorf("checkpoint saved the source position %q before the store acknowledged any event", meta[MetaSourcePrefix+"s"])
	}
	if n := len(meta[MetaStorePending]); n != 4*8 {
		t.Errorf("checkpoint lists %d bytes of events not yet stored, want 4 hashes (32 bytes)", n)
	}
	if v := testutil.ToFloat64(rig.stage.m.unstored); v != 4 {
		t.Errorf("auditwatch_detect_stage_store_pending_events = %v, want 4", v)
	}
	var pendingFs []schema.Finding
	if err := json.Unmarshal(meta[MetaStoreFindings], &pendingFs); err != nil || len(pendingFs) != 2 {
		t.Errorf("checkpoint findings not yet stored: %d (%v), want 2", len(pendingFs), err)
	}

	rig.store.release()
	rig.handle(t, 4, "e4", "e5")
	if !slices.Equal(rig.commits, []int64{4}) {
		t.Errorf("commits %v after the store acknowledged the first 4 events, want [4]", rig.commits)
	}
	meta, _ = rig.det.Meta()
	if got := string(meta[MetaSourcePrefix+"s"]); got != "bad3" {
		t.Errorf("saved source position %q, want the position after the last acknowledged event (bad3)", got)
	}
	if n := len(meta[MetaStorePending]); n != 2*8 {
		t.Errorf("checkpoint lists %d bytes of events not yet stored, want 2 hashes", n)
	}
	if v := testutil.ToFloat64(rig.stage.m.unstored); v != 2 {
		t.Errorf("auditwatch_detect_stage_store_pending_events = %v, want 2", v)
	}
	if _, ok := meta[MetaStoreFindings]; ok {
		t.Error("checkpoint still lists findings the store acknowledged")
	}
	if err := rig.stage.Revoked(context.Background(), []int{0}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rig.commits, []int64{4, 6}) {
		t.Errorf("commits %v after a clean stop, want [4 6]", rig.commits)
	}
	if v := testutil.ToFloat64(rig.stage.m.unstored); v != 0 {
		t.Errorf("auditwatch_detect_stage_store_pending_events = %v after a clean stop, want 0", v)
	}
	meta, _ = rig.det.Meta()
	if _, ok := meta[MetaStorePending]; ok || string(meta[MetaSourcePrefix+"s"]) != "e5" {
		t.Errorf("after a clean stop: position %q, pending %d bytes; want e5 and nothing pending", meta[MetaSourcePrefix+"s"], len(meta[MetaStorePending]))
	}
	if want := []string{"e0", "bad1", "e2", "bad3", "e4", "e5"}; !slices.Equal(rig.store.events, want) {
		t.Errorf("stored events %q, want %q", rig.store.events, want)
	}
	if want := []string{"f-bad1", "f-bad3"}; !slices.Equal(rig.store.fs, want) {
		t.Errorf("stored findings %q, want %q", rig.store.fs, want)
	}
	if !slices.Equal(rig.det.processed, []string{"e0", "bad1", "e2", "bad3", "e4", "e5"}) {
		t.Errorf("detected %q", rig.det.processed)
	}
}

// TestStoreCrashReplaysWithoutDetectingTwice: the process dies while the
// store has acknowledged nothing. The restarted stage resumes before the
// unacknowledged events (the saved position), stores them when they are
// read again without handing them to the detectors (whose saved state has
// them), stores the findings the store had not acknowledged, and detects
// the new events as usual.
func TestStoreCrashReplaysWithoutDetectingTwice(t *testing.T) {
	saved := &savedState{}
	first := newStoreRig(t, saved)
	first.handle(t, 0, "e0", "bad1")
	first.handle(t, 2, "e2", "bad3")
	// killed: no Revoked, nothing stored

	second := newStoreRig(t, saved)
	if pos := second.stage.Positions(0); len(pos) != 0 {
		t.Fatalf("restart resumes at %q, want the beginning (nothing was stored)", pos)
	}
	second.handle(t, 0, "e0", "bad1")
	second.handle(t, 2, "e2", "bad3")
	second.handle(t, 4, "e4", "bad5")
	if err := second.stage.Revoked(context.Background(), []int{0}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"e4", "bad5"}; !slices.Equal(second.det.processed, want) {
		t.Errorf("after the restart the detectors took %q, want only the new events %q", second.det.processed, want)
	}
	if got := second.j.list(); !slices.Contains(got, "finding f-bad5") || slices.Contains(got, "finding f-bad1") || slices.Contains(got, "finding f-bad3") {
		t.Errorf("findings after the restart: %q, want f-bad5 only", got)
	}
	if want := []string{"e0", "bad1", "e2", "bad3", "e4", "bad5"}; !slices.Equal(second.store.events, want) {
		t.Errorf("stored after the restart: %q, want every event once: %q", second.store.events, want)
	}
	slices.Sort(second.store.fs)
	if want := []string{"f-bad1", "f-bad3", "f-bad5"}; !slices.Equal(second.store.fs, want) {
		t.Errorf("stored findings after the restart: %q, want %q", second.store.fs, want)
	}
	meta, _ := second.det.Meta()
	if _, ok := meta[MetaStorePending]; ok {
		t.Error("after a clean stop the checkpoint still lists events not stored")
	}
}

// TestStoreReplayKeptUntilTheSourcePassesIt: the events the store had not
// acknowledged before a crash are kept from the detectors, without a time
// limit, until the source has been read again up to the position it had
// reached when they were taken (checkpoint MetaStoreUntil); past it, what
// did not come back is forgotten and later events are detected as usual.
func TestStoreReplayKeptUntilTheSourcePassesIt(t *testing.T) {
	saved := &savedState{}
	first := newStoreRig(t, saved)
	first.handle(t, 0, "e0", "bad1")
	first.handle(t, 2, "e2", "bad3")
	// killed
	meta, _ := first.det.Meta()
	var u storeUntil
	if err := json.Unmarshal(meta[MetaStoreUntil], &u); err != nil || string(u.Positions["s"]) != "bad3" {
		t.Fatalf("checkpoint bound %s (%v), want source s up to bad3", meta[MetaStoreUntil], err)
	}

	second := newStoreRig(t, saved)
	second.handle(t, 0, "e0", "bad1")
	// Read again up to bad1 only: e2 and bad3 are still expected back,
	// and the checkpoint keeps them and the bound.
	pt, _ := second.stage.part(0)
	if len(pt.replayed) != 2 {
		t.Fatalf("after reading again up to bad1, %d events still expected back, want 2 (e2, bad3)", len(pt.replayed))
	}
	meta, _ = second.det.Meta()
	if err := json.Unmarshal(meta[MetaStoreUntil], &u); err != nil || string(u.Positions["s"]) != "bad3" {
		t.Errorf("checkpoint after a partial re-read: bound %s (%v), want s up to bad3", meta[MetaStoreUntil], err)
	}
	// A second crash here, then the source comes back with a different
	// record at bad3's position (the file was rewritten): the bound is
	// reached, the rest is forgotten, and a later bad3 is detected.
	third := newStoreRig(t, saved)
	third.handle(t, 0, "e0", "bad1")
	pt, _ = third.stage.part(0)
	if len(pt.replayed) != 2 {
		t.Fatalf("after a second crash %d events expected back, want 2", len(pt.replayed))
	}
	recs := []stream.Record{{Offset: 2, Source: "s", Position: []byte("bad3"), Event: &schema.Event{ID: "other", Source: schema.SourceVault}}}
	if err := third.stage.Handle(context.Background(), 0, recs); err != nil {
		t.Fatal(err)
	}
	third.handle(t, 3, "e2")
	if err := third.stage.Revoked(context.Background(), []int{0}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"other", "e2"}; !slices.Equal(third.det.processed, want) {
		t.Errorf("detected after the bound was reached: %q, want %q", third.det.processed, want)
	}
	if pt.replayed != nil {
		t.Errorf("%d events still expected back past the bound", len(pt.replayed))
	}
	meta, _ = third.det.Meta()
	if _, ok := meta[MetaStoreUntil]; ok {
		t.Error("checkpoint keeps a bound with nothing pending")
	}
}

// TestStoreReplayEventsWithoutID: events without an id (normalized JSON
// lines may carry none) are recognised when read again after a crash by
// a hash of their content, so they are stored and not detected twice;
// events that differ in any of the hashed fields are not confused.
func TestStoreReplayEventsWithoutID(t *testing.T) {
	at := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	base := schema.Event{Source: schema.SourceVault, Time: at, Principal: "p", Action: "read", Resource: "secret/a", SourceIP: "10.0.0.1", Outcome: schema.OutcomeSuccess, Raw: []byte(`{"x":1}`)}
	variants := []func(*schema.Event){
		func(e *schema.Event) { e.Time = e.Time.Add(time.Nanosecond) },
		func(e *schema.Event) { e.Principal = "q" },
		func(e *schema.Event) { e.Action = "list" },
		func(e *schema.Event) { e.Resource = "secret/b" },
		func(e *schema.Event) { e.SourceIP = "10.0.0.2" },
		func(e *schema.Event) { e.Outcome = schema.OutcomeFailure },
		func(e *schema.Event) { e.Raw = []byte(`{"x":2}`) },
		func(e *schema.Event) { e.Source = schema.SourceCloudTrail },
		func(e *schema.Event) { e.ID = "id" },
	}
	seen := map[uint64]int{eventHash(&base): -1}
	same := base
	same.Raw = []byte(`{"x":1}`)
	if eventHash(&same) != eventHash(&base) {
		t.Error("the same content hashes differently")
	}
	for i, v := range variants {
		e := base
		v(&e)
		h := eventHash(&e)
		if j, dup := seen[h]; dup {
			t.Errorf("variant %d hashes like %d", i, j)
		}
		seen[h] = i
	}

	saved := &savedState{}
	noID := func(action string, off int64) stream.Record {
		e := base
		e.Action = action
		return stream.Record{Offset: off, Source: "s", Position: []byte(action), Event: &e}
	}
	first := newStoreRig(t, saved)
	if err := first.stage.Handle(context.Background(), 0, []stream.Record{noID("a", 0), noID("b", 1)}); err != nil {
		t.Fatal(err)
	}
	// killed before the store acknowledged anything
	second := newStoreRig(t, saved)
	if err := second.stage.Handle(context.Background(), 0, []stream.Record{noID("a", 0), noID("b", 1), noID("c", 2)}); err != nil {
		t.Fatal(err)
	}
	if err := second.stage.Revoked(context.Background(), []int{0}); err != nil {
		t.Fatal(err)
	}
	if n := len(second.det.processed); n != 1 {
		t.Errorf("after the restart the detectors took %d events without id, want 1 (only the new one)", n)
	}
	if n := len(second.store.events); n != 3 {
		t.Errorf("stored %d events after the restart, want 3", n)
	}
}

// TestStoreReplayKafkaOffsetBound: on Kafka the events the store had not
// acknowledged are recognised until the partition is read again up to the
// offset after them (checkpoint bound next); records from that offset on
// are detected. With StoreEventsOnly (the Kafka detect stage: findings
// are stored from the findings topic) no finding goes to the store or
// into the checkpoint.
func TestStoreReplayKafkaOffsetBound(t *testing.T) {
	kafka := func(c *DetectConfig) { c.Replayable, c.StoreEventsOnly = true, true }
	saved := &savedState{}
	first := newStoreRig(t, saved, kafka)
	first.handle(t, 0, "e0", "bad1")
	first.store.release()
	first.handle(t, 2, "e2", "bad3") // checkpoint: e2, bad3 not acknowledged
	first.handle(t, 4, "e4")         // taken after the checkpoint: not listed
	// killed
	meta, _ := first.det.Meta()
	var u storeUntil
	if err := json.Unmarshal(meta[MetaStoreUntil], &u); err != nil || u.Next != 4 {
		t.Fatalf("checkpoint bound %s (%v), want next 4", meta[MetaStoreUntil], err)
	}
	if _, ok := meta[MetaStoreFindings]; ok {
		t.Error("checkpoint lists findings although the stage stores events only")
	}
	if string(meta[MetaOffset]) != "2" || !slices.Equal(first.commits, []int64{2}) {
		t.Fatalf("saved offset %s, commits %v; want 2 (what the store acknowledged)", meta[MetaOffset], first.commits)
	}

	second := newStoreRig(t, saved, kafka)
	second.handle(t, 2, "e2", "bad3", "e4", "bad5")
	if err := second.stage.Revoked(context.Background(), []int{0}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"e4", "bad5"}; !slices.Equal(second.det.processed, want) {
		t.Errorf("after the restart the detectors took %q, want %q (from the bound offset 4 on)", second.det.processed, want)
	}
	if want := []string{"e2", "bad3", "e4", "bad5"}; !slices.Equal(second.store.events, want) {
		t.Errorf("stored after the restart %q, want %q", second.store.events, want)
	}
	if len(second.store.fs) != 0 || len(first.store.fs) != 0 {
		t.Errorf("findings went to the store: %q %q", first.store.fs, second.store.fs)
	}
	if got := second.j.list(); !slices.Contains(got, "finding f-bad5") || slices.Contains(got, "finding f-bad3") {
		t.Errorf("findings after the restart %q, want f-bad5 and not f-bad3", got)
	}
}
