package s3sqs

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"auditwatch/ingest"
	"auditwatch/ingest/hostiletest"
	"auditwatch/ingest/source"
)

// TestHostileInput announces, on the local SQS queue, S3 objects holding a
// nested gzip bomb (a few hundred bytes → 10 GiB), a flat one (10 MB →
// 10 GiB), a 100 MB single line, 10,000-deep nesting and 1,000,000
// invalid records, with good records around them and good objects beside
// them, and runs the source in a subprocess: its peak memory stays under
// 256 MiB, its logs under 1 MB, every good event arrives, the good objects
// before the slowest bad object is done (read beside it, not behind it),
// and every message is deleted (a bad object is rejected, not redelivered
// forever).
func TestHostileInput(t *testing.T) {
	if hostiletest.Parent(t) {
		return
	}
	h := newHarness(t, 5*time.Second)
	good, _ := hostiletest.Good(t)
	goodIDs := wantIDs(t, good)
	around := func(bad func() io.Reader, badSize int64) stream {
		return stream{size: 2*int64(len(good)) + badSize, open: func() io.Reader {
			return io.MultiReader(bytes.NewReader(good), bad(), bytes.NewReader(good))
		}}
	}
	invalidSize, _ := io.Copy(io.Discard, hostiletest.Invalid(1_000_000))
	deep := hostiletest.Deep(10000)
	prefix := "AWSLogs/123456789012/CloudTrail/eu-west-1/2026/12/06/"
	h.s3.objects["trail/"+prefix+"00-nested.json.gz"] = hostiletest.NestedBomb()
	h.s3.objects["trail/"+prefix+"01-flat.json.gz"] = hostiletest.FlatBomb(10)
	h.s3.streams = map[string]stream{
		"trail/" + prefix + "02-long-line.json": around(func() io.Reader { return hostiletest.LongLine(100 << 20) }, 100<<20),
		"trail/" + prefix + "03-deep.json":      around(func() io.Reader { return bytes.NewReader(deep) }, int64(len(deep))),
		"trail/" + prefix + "04-invalid.json":   around(func() io.Reader { return hostiletest.Invalid(1_000_000) }, invalidSize),
	}
	// the good objects beside the bad ones carry ids of their own, so the
	// test sees when they arrive
	beside := bytes.ReplaceAll(good, []byte(`"eventID":"`), []byte(`"eventID":"beside-`))
	besideIDs := wantIDs(t, beside)
	if len(besideIDs) != len(goodIDs) {
		t.Fatalf("%d ids beside, %d good", len(besideIDs), len(goodIDs))
	}
	h.s3.objects["trail/"+prefix+"05-good.json"] = beside
	h.s3.objects["trail/"+prefix+"06-good.json.gz"] = hostiletest.Gzip(beside)
	for _, k := range []string{"00-nested.json.gz", "01-flat.json.gz", "02-long-line.json", "03-deep.json", "04-invalid.json", "05-good.json", "06-good.json.gz"} {
		h.q.add(`{"Records":[` + s3event("trail", prefix+k, k) + `]}`)
	}

	env := hostiletest.NewEnv(t, filepath.Join(t.TempDir(), "rejected.jsonl"))
	src, err := New(h.cfg, "ct", source.AuditParser(ingest.DefaultOptions()), env.Log, env.Metrics, env.Reg)
	if err != nil {
		t.Fatal(err)
	}
	h.src = src
	h.guard = 5 * time.Minute
	pub := &ackPublisher{ids: map[string]int{}}
	start := time.Now()
	tp := &timedPublisher{next: pub, start: start}
	h.run(t, tp, func() bool { return h.q.left() == 0 })
	pub.wg.Wait()
	t.Logf("all objects handled in %v; the good objects' events were in after %v, the last events around a bad part after %v",
		time.Since(start), tp.beside, tp.around)
	// 3 objects carry the good records twice (around the bad part): every
	// such event 6 times; the 2 good objects once each: 2 times; never
	// more (no redelivery).
	for id := range goodIDs {
		if pub.ids[id] != 6 {
			t.Errorf("good event %s published %d times, want 6", id, pub.ids[id])
		}
	}
	for id := range besideIDs {
		if pub.ids[id] != 2 {
			t.Errorf("good event %s published %d times, want 2", id, pub.ids[id])
		}
	}
	// A bad object never delays the good ones beside it: they are in
	// before the slowest bad object (a million invalid records) is done.
	if tp.beside == 0 || tp.beside >= tp.around {
		t.Errorf("the good objects' events came after %v, not before the last events around a bad part (%v): a bad object held them", tp.beside, tp.around)
	}
	if r := env.Rejected("ct"); r < 1_000_000+4 {
		t.Errorf("rejected = %v, want >= 1,000,004", r)
	}
	env.Report(t)
}

// timedPublisher notes when the last batch of the good objects' events
// (ids "beside-…") and of the events around the bad parts was published.
type timedPublisher struct {
	next           source.Publisher
	start          time.Time
	mu             sync.Mutex
	beside, around time.Duration
}

func (p *timedPublisher) Publish(ctx context.Context, b source.Batch) error {
	at := time.Since(p.start)
	p.mu.Lock()
	for _, ev := range b.Events {
		if strings.HasPrefix(ev.ID, "beside-") {
			p.beside = at
		} else {
			p.around = at
		}
	}
	p.mu.Unlock()
	return p.next.Publish(ctx, b)
}
