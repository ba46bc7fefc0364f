package detect

import (
	"fmt"
	"testing"
	"time"

	"auditwatch/schema"
)

// Listing many distinct folders in a short window is enumeration (low
// severity, one burst); a client listing the same few folders all day is
// not, and neither counts as secret access.
func TestSecretEnumeration(t *testing.T) {
	var evs []schema.Event
	// History and after: a sync job lists 12 folders every few minutes.
	for r := 0; r < 40; r++ {
		for f := 0; f < 12; f++ {
			evs = append(evs, vev(fmt.Sprintf("s%d-%d", r, f), time.Duration(r)*5*time.Minute+time.Duration(f)*time.Second, "sync", "10.0.0.2", "list", fmt.Sprintf("secret/metadata/team%d/", f)))
		}
	}
	// After learning: a principal walks 60 folders and metadata entries in 2 minutes.
	for i := 0; i < 60; i++ {
		op, p := "list", fmt.Sprintf("secret/metadata/walk/%d/", i)
		if i%2 == 1 {
			op, p = "read", fmt.Sprintf("secret/metadata/walk/%d", i)
		}
		evs = append(evs, vev(fmt.Sprint("w", i), 3*time.Hour+time.Duration(i)*2*time.Second, "walker", "10.0.0.3", op, p))
	}
	cfg := testConfig(learnEnd)
	fs, _ := run(t, cfg, evs)
	var enum []schema.Finding
	for _, f := range fs {
		switch f.Detector {
		case schema.DetectorSecretEnumeration:
			enum = append(enum, f)
		case schema.DetectorFirstTimeAccess, schema.DetectorAccessVolumeSpike:
			t.Errorf("a list or metadata read counted as access: %s %s", f.Detector, f.Summary)
		}
	}
	if len(enum) == 0 {
		t.Fatal("no enumeration finding for 60 distinct paths in 2 minutes")
	}
	for _, f := range enum {
		if f.Principal != "walker" || f.Severity != schema.SeverityLow || f.DedupeKey != enum[0].DedupeKey {
			t.Errorf("finding %s %s %s key %s", f.Principal, f.Severity, f.Summary, f.DedupeKey)
		}
	}
	if enum[0].Count != 40 {
		t.Errorf("opened at %d distinct paths, want the threshold 40", enum[0].Count)
	}
}
