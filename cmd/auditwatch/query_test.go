package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"auditwatch/store/chtest"
)

func TestMain(m *testing.M) {
	code := chtest.Main(m)
	cleanupBenchData()
	removeSharedBinary()
	os.Exit(code)
}

// load then query, in process, on embedded chDB: the quickstart path.
func TestLoadThenQuery(t *testing.T) {
	path := chtest.CHDBPath(t)
	now := time.Now().UTC().Truncate(time.Second)
	ev := func(id, principal, ip, outcome string, ago time.Duration) string {
		b, _ := json.Marshal(map[string]any{"time": now.Add(-ago), "source": "vault", "id": id, "principal": principal,
			"action": "vault:read", "resource": "secret/data/prod/db", "source_ip": ip, "outcome": outcome})
		return string(b)
	}
	input := strings.Join([]string{
		ev("e1", "entity-a", "10.1.1.1", "success", time.Hour),
		`{"time": broken`,
		ev("e2", "entity-a", "10.1.1.1", "failure", 30*time.Minute),
		ev("e3", "entity-\x1b]0;owned\x07", "10.1.1.2", "success", 2*time.Hour),
	}, "\n")
	var out, errb bytes.Buffer
	code := run([]string{"load", "--chdb-path", path, "--database", "cmdtest"}, strings.NewReader(input), &out, &errb)
	if code != 1 || !strings.Contains(out.String(), "stored 3 events (1 rejected)") || !strings.Contains(errb.String(), "stdin:2:") {
		t.Fatalf("load: exit %d\nstdout %s\nstderr %s", code, out.String(), errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"query", "who-accessed", "--chdb-path", path, "--database", "cmdtest", "--resource", "secret/data/prod/db", "--format", "json"}, nil, &out, &errb); code != 0 {
		t.Fatalf("query: exit %d: %s", code, errb.String())
	}
	var rows []map[string]any
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatalf("json output: %v\n%s", err, out.String())
	}
	if len(rows) != 2 || rows[0]["principal"] != "entity-a" || rows[0]["events"] != float64(2) || rows[0]["failures"] != float64(1) {
		t.Fatalf("who-accessed rows = %v", rows)
	}
	out.Reset()
	if code := run([]string{"query", "who-accessed", "--chdb-path", path, "--database", "cmdtest", "--resource", "secret/data/prod/db"}, nil, &out, &errb); code != 0 {
		t.Fatalf("query table: exit %d: %s", code, errb.String())
	}
	if strings.ContainsAny(out.String(), "\x1b\x07") || !strings.Contains(out.String(), `entity-\x1B]0;owned\x07`) {
		t.Errorf("table output not terminal-safe:\n%q", out.String())
	}
	for _, bad := range [][]string{
		{"query", "who-accessed"},
		{"query", "ip", "--ip", "10.0.0.0/99"},
		{"query", "nope"},
		{"query", "failures", "--since", "yesterday"},
		{"query", "failures", "--format", "xml"},
	} {
		errb.Reset()
		if code := run(bad, nil, &out, &errb); code != 2 || errb.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q; want usage error 2", bad, code, errb.String())
		}
	}
}
