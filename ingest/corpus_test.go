package ingest

import (
	"auditwatch/internal/testenv"
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"auditwatch/schema"
)

func repoRoot(t testing.TB) string { return testenv.RepoRoot(t) }

func sharedTestdata(t testing.TB) string { return testenv.SharedTestdata(t) }

var fixedNow = func() time.Time { return time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC) }

func testOptions() Options {
	o := DefaultOptions()
	o.Now = fixedNow
	return o
}

type result struct {
	events []schema.Event
	errs   []error
	stats  Stats
}

func readAll(t testing.TB, r *Reader) result {
	t.Helper()
	var res result
	for {
		ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			var re *RecordError
			if !errors.As(err, &re) {
				t.Fatalf("Next returned a non-RecordError: %v", err)
			}
			res.errs = append(res.errs, err)
			continue
		}
		res.events = append(res.events, ev)
	}
	res.stats = r.Stats()
	return res
}

func readFile(t testing.TB, path string, opts Options) result {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return readAll(t, NewReader(f, path, opts))
}

type manifestEntry struct {
	File   string         `json:"file"`
	Format string         `json:"format"`
	Events int            `json:"events"`
	Types  map[string]int `json:"types"`
}

func readManifest(t *testing.T, path string) []manifestEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []manifestEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m manifestEntry
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, m)
	}
	return out
}

// vaultRequests is the number of distinct client requests a Vault file
// holds according to its manifest types: a request and its response are
// one request, KMIP likewise.
func vaultRequests(types map[string]int) int {
	return max(types["request"], types["response"]) + max(types["kmip-request"], types["kmip-response"])
}

func TestCorpusCloudTrailCounts(t *testing.T) {
	root := filepath.Join(sharedTestdata(t), "cloudtrail")
	man := readManifest(t, filepath.Join(root, "manifest.jsonl"))
	if len(man) < 90 {
		t.Fatalf("manifest lists %d files, want about 100", len(man))
	}
	total := 0
	for _, m := range man {
		res := readFile(t, filepath.Join(root, m.File), testOptions())
		if len(res.errs) > 0 {
			t.Errorf("%s: %d rejected records, first: %v", m.File, len(res.errs), res.errs[0])
		}
		if len(res.events) != m.Events {
			t.Errorf("%s (%s): %d events, manifest says %d", m.File, m.Format, len(res.events), m.Events)
		}
		if m.Format == "digest" && res.stats.Skipped != 1 {
			t.Errorf("%s: digest not counted as skipped: %+v", m.File, res.stats)
		}
		for _, ev := range res.events {
			if ev.Source != schema.SourceCloudTrail || ev.ID == "" || ev.Action == "" || ev.Outcome == "" {
				t.Errorf("%s: incomplete event %+v", m.File, ev)
				break
			}
		}
		total += len(res.events)
	}
	if total != 3424 {
		t.Errorf("cloudtrail corpus: %d events, want 3424", total)
	}
}

func TestCorpusVaultCounts(t *testing.T) {
	root := filepath.Join(sharedTestdata(t), "vault")
	man := readManifest(t, filepath.Join(root, "manifest.jsonl"))
	files := map[string]int{}
	for _, m := range man {
		files[m.File] = vaultRequests(m.Types)
		res := readFile(t, filepath.Join(root, m.File), testOptions())
		if m.Format == "vault-server-log(text)" {
			if len(res.events) != 0 || len(res.errs) == 0 {
				t.Errorf("%s: server log gave %d events, %d errors; want 0 events and rejections", m.File, len(res.events), len(res.errs))
			}
			for _, err := range res.errs {
				if !errors.Is(err, ErrServerLog) {
					t.Errorf("%s: rejected with %v, want ErrServerLog", m.File, err)
				}
			}
			continue
		}
		if len(res.errs) > 0 {
			t.Errorf("%s: %d rejected records, first: %v", m.File, len(res.errs), res.errs[0])
		}
		if want := vaultRequests(m.Types); len(res.events) != want {
			t.Errorf("%s: %d events, want %d (manifest types %v)", m.File, len(res.events), want, m.Types)
		}
		ids := map[string]bool{}
		for _, ev := range res.events {
			if ids[ev.ID] {
				t.Errorf("%s: request %s yielded two events", m.File, ev.ID)
			}
			ids[ev.ID] = true
		}
	}
	for _, f := range []string{"openbao-scenario/audit.log", "openbao-scenario/audit-raw.log"} {
		res := readFile(t, filepath.Join(root, f), testOptions())
		if len(res.errs) > 0 {
			t.Errorf("%s: %d rejected, first: %v", f, len(res.errs), res.errs[0])
		}
		if len(res.events) != 743 {
			t.Errorf("%s: %d events, want 743", f, len(res.events))
		}
		if res.stats.Unpaired != 1 {
			t.Errorf("%s: %d request-only events, want 1 (the sys/audit/test entry)", f, res.stats.Unpaired)
		}
	}
}
