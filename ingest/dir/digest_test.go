package dir

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"auditwatch/ingest"
	"auditwatch/ingest/hostiletest"
	"auditwatch/ingest/source"
)

// digests records what the dir source hands to the integrity hook.
type digests struct {
	mu   sync.Mutex
	seen []string // name + " sig=" + signature
}

func (d *digests) LogFile(string, string) {}

func (d *digests) Digest(_ context.Context, name string, _ []byte, sig string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seen = append(d.seen, filepath.Base(name)+" sig="+sig)
}

// TestDigestSignatureBeforeDigest: a digest's .sig file that is listed
// before the digest itself (written first, or seen between the two
// writes) waits for it: no error is logged or counted, and once the
// digest is there it is handed over with the signature, and again for the
// signature, as when the .sig comes after.
func TestDigestSignatureBeforeDigest(t *testing.T) {
	folder := t.TempDir()
	rel := filepath.Join("AWSLogs", "111122223333", "CloudTrail-Digest", "eu-west-1", "2026", "11", "03")
	if err := os.MkdirAll(filepath.Join(folder, rel), 0o755); err != nil {
		t.Fatal(err)
	}
	digest := filepath.Join(folder, rel, "111122223333_CloudTrail-Digest_eu-west-1_t_eu-west-1_20261103T110000Z.json")
	if err := os.WriteFile(digest+".sig", []byte("abcd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := hostiletest.NewEnv(t, filepath.Join(folder, ".quarantine", "rejected.jsonl"))
	run := func() *digests {
		t.Helper()
		d, err := New(Config{Path: folder, Once: true}, "ctdir", source.AuditParser(ingest.DefaultOptions()), nil, env.Log, env.Metrics)
		if err != nil {
			t.Fatal(err)
		}
		got := &digests{}
		d.SetIntegrity(got)
		if err := d.Run(context.Background(), &collector{ids: map[string]int{}, cp: source.NewMemCheckpoints(nil)}); err != nil {
			t.Fatal(err)
		}
		return got
	}

	// Only the signature is there: nothing is handed over, nothing fails.
	if got := run(); len(got.seen) != 0 {
		t.Errorf("signature without its digest handed over %v", got.seen)
	}
	if n := testutil.ToFloat64(env.Metrics.Errors.WithLabelValues("ctdir")); n != 0 {
		t.Errorf("signature without its digest counted %v errors", n)
	}
	if strings.Contains(env.Logs.Head(), "level=ERROR") {
		t.Errorf("signature without its digest logged an error:\n%s", env.Logs.Head())
	}

	// The digest arrives: handed over with the signature, then again for
	// the signature file.
	if err := os.WriteFile(digest, []byte(`{"awsAccountId":"111122223333","logFiles":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	got := run()
	name := filepath.Base(digest) + " sig=abcd"
	if len(got.seen) != 2 || got.seen[0] != name || got.seen[1] != name {
		t.Errorf("handed over %q, want %q twice", got.seen, name)
	}
	if n := testutil.ToFloat64(env.Metrics.Errors.WithLabelValues("ctdir")); n != 0 {
		t.Errorf("counted %v errors", n)
	}
}
