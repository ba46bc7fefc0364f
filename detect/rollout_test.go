package detect

import (
	"fmt"
	"testing"
	"time"

	"auditwatch/schema"
)

// Rollout decisions stay on arrival and end the same whatever the arrival
// order within the source's lateness: a first read of a Secrets Manager
// secret is reported when it arrives; its secret's write arriving later
// (dated within the grace before the read) sends a revision of that
// finding that resolves it. A read no write explains stays open; a write
// arriving after the source moved past the read by its lateness resolves
// nothing; dynamic credentials are never remembered; what is remembered
// survives a restart from a checkpoint.
func TestRolloutResolvesLateWrites(t *testing.T) {
	cfg := testConfig(learnEnd)
	cfg.Lateness = map[string]Duration{schema.SourceCloudTrail: Duration(15 * time.Minute), schema.SourceVault: Duration(5 * time.Second)}
	arn := "arn:aws:secretsmanager:eu-west-1:123456789012:secret:"
	var history []schema.Event
	for i := range 60 {
		at := time.Duration(i) * 2 * time.Minute
		history = append(history, ctev(fmt.Sprint("h1-", i), at, "reader", "10.0.0.1", "secretsmanager:GetSecretValue", arn+"own"))
		history = append(history, ctev(fmt.Sprint("h2-", i), at, "reader2", "10.0.0.4", "secretsmanager:GetSecretValue", arn+"own3"))
		history = append(history, ctev(fmt.Sprint("h3-", i), at, "writer", "10.0.0.2", "secretsmanager:GetSecretValue", arn+"own2"))
		history = append(history, vev(fmt.Sprint("hv-", i), at, "vreader", "10.0.0.3", "read", "secret/data/own"))
	}
	ft := func(fs []schema.Finding) []schema.Finding { return ofDetector(fs, schema.DetectorFirstTimeAccess) }
	dir := t.TempDir()
	st := openStore(t, dir)
	e := newEngine(t, cfg, st, nil)
	runAll(e, history)
	base := learnEnd.Sub(t0) + time.Hour

	// reader: a first read (t+1m) arrives before the write (t).
	first := ft(e.Process(ctev("read-1", base+time.Minute, "reader", "10.0.0.1", "secretsmanager:GetSecretValue", arn+"prod/db")))
	if len(first) != 1 || first[0].Attributes[StatusAttr] != "" {
		t.Fatalf("first read not reported on arrival: %+v", first)
	}
	// reader2: a first read no write explains, and one of the rolled-out
	// secret: its finding is explained in part only.
	open := ft(e.Process(ctev("read-2", base+2*time.Minute, "reader2", "10.0.0.4", "secretsmanager:GetSecretValue", arn+"prod/other")))
	open = append(open, ft(e.Process(ctev("read-3", base+3*time.Minute, "reader2", "10.0.0.4", "secretsmanager:GetSecretValue", arn+"prod/db")))...)
	if len(open) != 2 {
		t.Fatalf("reader2: %+v", open)
	}
	// A restart from a checkpoint keeps what a late write may resolve.
	if err := e.Checkpoint(nil); err != nil {
		t.Fatal(err)
	}
	e.Close()
	e = newEngine(t, cfg, st, nil)
	res := ft(e.Process(ctev("write", base, "writer", "10.0.0.2", "secretsmanager:PutSecretValue", arn+"prod/db")))
	if len(res) != 2 {
		t.Fatalf("the late write sent %d revisions, want 2: %+v", len(res), res)
	}
	for _, f := range res {
		switch f.Principal {
		case "reader":
			if f.DedupeKey != first[0].DedupeKey || f.Revision != first[0].Revision+1 || f.Attributes[StatusAttr] != StatusResolved ||
				f.Severity != schema.SeverityInfo || f.Attributes["explained_by"] != "writer" || f.Resource != arn+"prod/db" {
				t.Errorf("reader's revision does not resolve its finding: %+v", f)
			}
		case "reader2":
			if f.DedupeKey != open[0].DedupeKey || f.Attributes[StatusAttr] == StatusResolved {
				t.Errorf("reader2's finding resolved though prod/other is unexplained: %+v", f)
			}
		default:
			t.Errorf("revision for %s", f.Principal)
		}
	}
	all := append(append(append([]schema.Finding{}, first...), open...), res...)
	if u := Unresolved(all); len(u) != 3 || u[0].Principal != "reader2" {
		t.Errorf("Unresolved: %+v", u)
	}
	// Once CloudTrail has moved past a read by its lateness, a write dated
	// before it resolves nothing (it is late itself).
	e.Process(ctev("read-4", base+5*time.Minute, "reader", "10.0.0.1", "secretsmanager:GetSecretValue", arn+"prod/late"))
	e.Process(ctev("tick", base+30*time.Minute, "writer", "10.0.0.2", "secretsmanager:GetSecretValue", arn+"own2"))
	if fs := ft(e.Process(ctev("write-late", base+4*time.Minute, "writer", "10.0.0.2", "secretsmanager:PutSecretValue", arn+"prod/late"))); len(fs) != 0 {
		t.Errorf("a write later than the lateness resolved %+v", fs)
	}
	// Dynamic credentials are never a rollout's.
	dyn := vev("dyn", base+31*time.Minute, "vreader", "10.0.0.3", "read", "database/creds/payments")
	dyn.Mount, dyn.MountType = "database/", "database"
	if fs := ft(e.Process(dyn)); len(fs) != 1 {
		t.Fatalf("dynamic credentials: %+v", fs)
	}
	if len(e.firstTimeRecent()) != 0 {
		t.Errorf("remembered %d reads, want 0", len(e.firstTimeRecent()))
	}
	e.Close()
	st.Close()
}

func (e *Engine) firstTimeRecent() []recentRead {
	for _, d := range e.dets {
		if ft, ok := d.(*firstTime); ok {
			return ft.recent
		}
	}
	return nil
}

// Across partitions: the write reaches the reader's engine as a note
// (Engine.Note), which resolves the reported read without being an event
// of that engine; RolloutWrites picks exactly the writes that start a
// rollout.
func TestRolloutNoteFromAnotherPartition(t *testing.T) {
	cfg := testConfig(learnEnd)
	arn := "arn:aws:secretsmanager:eu-west-1:123456789012:secret:"
	var history []schema.Event
	for i := range 30 {
		history = append(history, ctev(fmt.Sprint("h-", i), time.Duration(i)*2*time.Minute, "reader", "10.0.0.1", "secretsmanager:GetSecretValue", arn+"own"))
	}
	st := openStore(t, t.TempDir())
	defer st.Close()
	e := newEngine(t, cfg, st, nil)
	runAll(e, history)
	base := learnEnd.Sub(t0) + time.Hour
	fs := ofDetector(e.Process(ctev("read", base+time.Minute, "reader", "10.0.0.1", "secretsmanager:GetSecretValue", arn+"prod/db")), schema.DetectorFirstTimeAccess)
	if len(fs) != 1 {
		t.Fatalf("read: %+v", fs)
	}
	events := e.Stats().Events
	w := ctev("write", base, "writer", "10.0.0.2", "secretsmanager:PutSecretValue", arn+"prod/db")
	is := RolloutWrites(cfg)
	if !is(&w) {
		t.Fatal("PutSecretValue is not a rollout write")
	}
	for _, ev := range []schema.Event{
		ctev("r", base, "writer", "10.0.0.2", "secretsmanager:GetSecretValue", arn+"prod/db"),
		failed(ctev("f", base, "writer", "10.0.0.2", "secretsmanager:PutSecretValue", arn+"prod/db"), schema.FailurePermissionDenied, false),
		vev("dbw", base, "writer", "10.0.0.2", "update", "database/roles/x"),
	} {
		if ev.ID == "dbw" {
			ev.Mount, ev.MountType = "database/", "database"
		}
		if is(&ev) {
			t.Errorf("%s counted as a rollout write", ev.ID)
		}
	}
	res := e.Note(w)
	if len(res) != 1 || res[0].DedupeKey != fs[0].DedupeKey || res[0].Attributes[StatusAttr] != StatusResolved {
		t.Fatalf("note: %+v", res)
	}
	if e.Stats().Events != events {
		t.Error("a note counted as an event")
	}
}

// The remembered reads are bounded in bytes, not only in number: first
// reads carrying huge attacker-chosen fields (a 256 KiB user agent each)
// are all reported, but stop being remembered once the byte budget is
// held, and the estimate follows prunes.
func TestRolloutRecentBoundedInBytes(t *testing.T) {
	cfg := testConfig(learnEnd)
	cfg.Lateness = map[string]Duration{schema.SourceCloudTrail: Duration(15 * time.Minute), schema.SourceVault: Duration(5 * time.Second)}
	arn := "arn:aws:secretsmanager:eu-west-1:123456789012:secret:"
	var history []schema.Event
	for i := range 60 {
		history = append(history, ctev(fmt.Sprint("h-", i), time.Duration(i)*2*time.Minute, "reader", "10.0.0.1", "secretsmanager:GetSecretValue", arn+"own"))
	}
	st := openStore(t, t.TempDir())
	e := newEngine(t, cfg, st, nil)
	runAll(e, history)
	base := learnEnd.Sub(t0) + time.Hour
	ua := string(make([]byte, 256<<10))
	reported := 0
	const n = 200 // 200 × 256 KiB = 50 MiB of user agents
	for i := range n {
		ev := ctev(fmt.Sprint("read-", i), base+time.Duration(i)*time.Millisecond, "reader", "10.0.0.1", "secretsmanager:GetSecretValue", fmt.Sprintf("%sprod/s%d", arn, i))
		ev.UserAgent = ua
		reported += len(ofDetector(e.Process(ev), schema.DetectorFirstTimeAccess))
	}
	if reported == 0 {
		t.Fatal("no first read reported")
	}
	var ft *firstTime
	for _, d := range e.dets {
		if x, ok := d.(*firstTime); ok {
			ft = x
		}
	}
	held := 0
	for i := range ft.recent {
		held += recentSize(&ft.recent[i])
	}
	if held != ft.recentBytes || held > maxRecentBytes || len(ft.recent) == 0 || len(ft.recent) >= n {
		t.Fatalf("remembered %d reads, %d bytes (estimate %d), budget %d", len(ft.recent), held, ft.recentBytes, maxRecentBytes)
	}
	// Past CloudTrail's lateness every read is forgotten and the bytes with it.
	e.Process(ctev("tick", base+time.Hour, "reader", "10.0.0.1", "secretsmanager:GetSecretValue", arn+"own"))
	ft.pruneRecent()
	if len(ft.recent) != 0 || ft.recentBytes != 0 {
		t.Fatalf("after the lateness: %d reads, %d bytes", len(ft.recent), ft.recentBytes)
	}
	e.Close()
	st.Close()
}
