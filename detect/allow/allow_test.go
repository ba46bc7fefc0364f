package allow

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"auditwatch/schema"
)

var t0 = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)

var prefixes = Prefixes{IPv4: 24, IPv6: 64}

func finding(det, principal, ip, resource string) schema.Finding {
	return schema.Finding{ID: "f-" + det, Detector: det, Principal: principal, SourceIP: ip, Resource: resource}
}

// Each detector's entry keeps the evidence that made its finding, so the
// identical finding is allowed and a different one is not.
func TestFromFindingPerDetector(t *testing.T) {
	for _, tc := range []struct {
		f             schema.Finding
		network, res  string
		same, differs schema.Finding
	}{
		{f: finding(schema.DetectorUnexpectedIP, "arn:aws:iam::1:user/a", "203.0.113.9", "secret/x"), network: "203.0.113.0/24",
			same:    finding(schema.DetectorUnexpectedIP, "arn:aws:iam::1:user/a", "203.0.113.77", "secret/other"),
			differs: finding(schema.DetectorUnexpectedIP, "arn:aws:iam::1:user/a", "198.51.100.1", "secret/x")},
		{f: finding(schema.DetectorNewLocation, "u", "2001:db8:1:2::5", ""), network: "2001:db8:1:2::/64",
			same:    finding(schema.DetectorNewLocation, "u", "2001:db8:1:2::9", ""),
			differs: finding(schema.DetectorNewLocation, "u", "2001:db8:1:3::5", "")},
		{f: finding(schema.DetectorFirstTimeAccess, "role/payments", "10.0.0.1", "secret/payments/db"), res: "secret/payments/db",
			same:    finding(schema.DetectorFirstTimeAccess, "role/payments", "192.0.2.1", "secret/payments/db"),
			differs: finding(schema.DetectorFirstTimeAccess, "role/payments", "10.0.0.1", "secret/hr/db")},
		{f: finding(schema.DetectorAuthFailureSpike, "", "203.0.113.200", "auth/userpass/login/x"), network: "203.0.113.0/24",
			same:    finding(schema.DetectorAuthFailureSpike, "", "203.0.113.201", "auth/userpass/login/y"),
			differs: finding(schema.DetectorAuthFailureSpike, "bob", "203.0.113.200", "auth/userpass/login/x")},
		{f: finding(schema.DetectorAccessVolumeSpike, "u", "10.0.0.1", "secret/a"),
			same:    finding(schema.DetectorAccessVolumeSpike, "u", "10.9.0.1", "secret/b"),
			differs: finding(schema.DetectorAccessVolumeSpike, "v", "10.0.0.1", "secret/a")},
		{f: finding(schema.DetectorPrivilegedUse, "root", "10.0.0.1", "sys/mounts"), network: "10.0.0.0/24", res: "sys/mounts",
			same:    finding(schema.DetectorPrivilegedUse, "root", "10.0.0.2", "sys/mounts"),
			differs: finding(schema.DetectorPrivilegedUse, "root", "10.0.0.2", "sys/audit/file")},
	} {
		e, err := FromFinding(tc.f, prefixes, t0, 30*24*time.Hour)
		if err != nil {
			t.Fatalf("%s: %v", tc.f.Detector, err)
		}
		if e.Network != tc.network || e.Resource != tc.res || e.Principal != tc.f.Principal || e.Finding != tc.f.ID {
			t.Errorf("%s: entry %+v, want network %q resource %q", tc.f.Detector, e, tc.network, tc.res)
		}
		now := t0.Add(time.Hour)
		if !e.Matches(&tc.f, now) || !e.Matches(&tc.same, now) {
			t.Errorf("%s: the identical finding is not allowed", tc.f.Detector)
		}
		if e.Matches(&tc.differs, now) {
			t.Errorf("%s: %+v allowed by %+v", tc.f.Detector, tc.differs, e)
		}
		other := tc.same
		other.Detector = "sigma"
		if e.Matches(&other, now) {
			t.Errorf("%s: another detector's finding allowed", tc.f.Detector)
		}
	}
	if _, err := FromFinding(schema.Finding{ID: "x", Detector: schema.DetectorAccessVolumeSpike}, prefixes, t0, 0); err == nil {
		t.Error("an entry that would allow everything was made")
	}
	if _, err := FromFinding(finding(schema.DetectorUnexpectedIP, "u", "not-an-ip", ""), prefixes, t0, 0); err == nil {
		t.Error("a bad address was accepted")
	}
}

// Expiry follows the injected clock: allowed before, alerting again from
// the expiry on; no ttl never expires.
func TestExpiry(t *testing.T) {
	f := finding(schema.DetectorFirstTimeAccess, "u", "", "secret/a")
	path := filepath.Join(t.TempDir(), "allow", FileName)
	now := t0
	l := Open(path, func() time.Time { return now })
	l.CheckEvery = 0
	e, err := FromFinding(f, prefixes, t0, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := Append(path, e); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at   time.Duration
		kept int
	}{{0, 0}, {29 * 24 * time.Hour, 0}, {30*24*time.Hour - time.Nanosecond, 0}, {30 * 24 * time.Hour, 1}, {40 * 24 * time.Hour, 1}} {
		now = t0.Add(tc.at)
		if got := l.Filter([]schema.Finding{f}); len(got) != tc.kept {
			t.Errorf("at +%v: %d findings kept, want %d", tc.at, len(got), tc.kept)
		}
	}
	forever, _ := FromFinding(f, prefixes, t0, 0)
	if !forever.Expires.IsZero() || !forever.Active(t0.Add(10*365*24*time.Hour)) {
		t.Errorf("an entry without ttl expires: %+v", forever)
	}
	if l.Allowed() != 3 {
		t.Errorf("Allowed %d, want 3", l.Allowed())
	}
}

// A list notices entries appended while it is in use, skips a bad line
// (reporting it once, with its line number) and a torn last line, and
// keeps the other findings in order.
func TestListReloadsAndSurvivesBadLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	l := Open(path, func() time.Time { return t0 })
	l.CheckEvery = 0
	var errs []string
	l.OnError = func(err error) { errs = append(errs, err.Error()) }
	a := finding(schema.DetectorFirstTimeAccess, "u", "", "secret/a")
	b := finding(schema.DetectorFirstTimeAccess, "u", "", "secret/b")
	b.ID = "f-b"
	if got := l.Filter([]schema.Finding{a, b}); len(got) != 2 {
		t.Fatalf("no file: %d kept", len(got))
	}
	ea, _ := FromFinding(a, prefixes, t0, time.Hour)
	if err := Append(path, ea); err != nil {
		t.Fatal(err)
	}
	got := l.Filter([]schema.Finding{a, b})
	if len(got) != 1 || got[0].ID != "f-b" {
		t.Fatalf("after the entry: kept %+v", got)
	}
	fh, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteString("{not json\n")
	fh.WriteString(`{"id":"x","detector":"first_time_access","principal":"u","resource":"secret/b"`) // torn
	fh.Close()
	for range 2 {
		if got := l.Filter([]schema.Finding{a, b}); len(got) != 1 {
			t.Fatalf("after a bad line: kept %d, want 1", len(got))
		}
	}
	if len(errs) != 1 || !strings.Contains(errs[0], FileName+":2:") {
		t.Errorf("errors %q, want one naming line 2", errs)
	}
	es, err := Load(path)
	if len(es) != 1 || err == nil {
		t.Errorf("Load: %d entries, err %v", len(es), err)
	}
}

// Concurrent appenders (several `allow` commands) never interleave lines.
func TestConcurrentAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := finding(schema.DetectorFirstTimeAccess, "u", "", strings.Repeat("x", 3000)+string(rune('a'+i)))
			e, err := FromFinding(f, prefixes, t0, 0)
			if err == nil {
				err = Append(path, e)
			}
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	es, err := Load(path)
	if err != nil || len(es) != 20 {
		t.Fatalf("%d entries, err %v", len(es), err)
	}
}

// An entry whose secret path is longer than a default read buffer (paths
// come from the logs) loads and allows; one over the line limit is
// refused when appended rather than written and then ignored.
func TestLongEntries(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	long := finding(schema.DetectorFirstTimeAccess, "u", "", "secret/"+strings.Repeat("p", 10000))
	e, err := FromFinding(long, prefixes, t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := Append(path, e); err != nil {
		t.Fatal(err)
	}
	es, err := Load(path)
	if err != nil || len(es) != 1 || es[0].Resource != long.Resource {
		t.Fatalf("Load: %d entries, err %v", len(es), err)
	}
	l := Open(path, func() time.Time { return t0 })
	if got := l.Filter([]schema.Finding{long}); len(got) != 0 {
		t.Errorf("the long entry does not allow its finding: kept %d", len(got))
	}
	huge := finding(schema.DetectorFirstTimeAccess, "u", "", strings.Repeat("q", maxLine))
	he, err := FromFinding(huge, prefixes, t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := Append(path, he); err == nil || !strings.Contains(err.Error(), "line limit") {
		t.Errorf("Append of a %d-byte resource: %v, want the line limit named", maxLine, err)
	}
	if es, err := Load(path); err != nil || len(es) != 1 {
		t.Errorf("after the refused append: %d entries, err %v", len(es), err)
	}
}

// A file of bad lines reports the first maxLineErrors with file and line,
// each clipped, then a count of the rest; the good entries still load.
func TestLoadBoundsLineErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	a := finding(schema.DetectorFirstTimeAccess, "u", "", "secret/a")
	ea, err := FromFinding(a, prefixes, t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := Append(path, ea); err != nil {
		t.Fatal(err)
	}
	fh, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	const bad = 5000
	for i := range bad {
		if i%2 == 0 {
			fh.WriteString("{not json\n")
		} else { // a network the entry quotes back: 30 KB
			fh.WriteString(`{"detector":"unexpected_ip","principal":"u","network":"` + strings.Repeat("9", 30000) + "\"}\n")
		}
	}
	fh.Close()
	es, err := Load(path)
	if len(es) != 1 || es[0].Resource != "secret/a" {
		t.Fatalf("Load kept %d entries, want the good one", len(es))
	}
	if err == nil {
		t.Fatal("no error for 5000 bad lines")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != maxLineErrors+1 {
		t.Fatalf("%d error lines, want %d then a count", len(lines), maxLineErrors+1)
	}
	for i, l := range lines[:maxLineErrors] {
		if want := fmt.Sprintf("%s:%d: ", path, i+2); !strings.HasPrefix(l, want) {
			t.Errorf("error %d %.80q: want it to start with %q", i, l, want)
		}
		if len(l) > len(path)+10+maxErrText+len("…") {
			t.Errorf("error %d is %d bytes", i, len(l))
		}
	}
	if want := fmt.Sprintf("%s: %d more bad lines", path, bad-maxLineErrors); lines[maxLineErrors] != want {
		t.Errorf("last line %q, want %q", lines[maxLineErrors], want)
	}
	if len(err.Error()) > 8<<10 {
		t.Errorf("error text %d bytes for %d bad lines", len(err.Error()), bad)
	}
}
