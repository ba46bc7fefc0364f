package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"auditwatch/schema"
)

const normCT = `{"eventVersion":"1.08","eventTime":"2023-07-10T11:42:00Z","eventSource":"secretsmanager.amazonaws.com","eventName":"GetSecretValue","eventID":"@@","sourceIPAddress":"10.0.0.1"}`

func TestNormalizeExitCodesAndOrder(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "a.json")
	os.WriteFile(good, []byte(strings.Replace(normCT, "@@", "a", 1)+"\n"+strings.Replace(normCT, "@@", "b", 1)+"\n"), 0o644)
	bad := filepath.Join(dir, "b.json")
	os.WriteFile(bad, []byte("not json \x1b[31m\n"+strings.Replace(normCT, "@@", "c", 1)+"\n"), 0o644)

	var out, errb bytes.Buffer
	stdin := strings.NewReader(strings.Replace(normCT, "@@", "d", 1))
	code := runNormalize(context.Background(), []string{good, bad, "-"}, stdin, &out, &errb)
	if code != 2 {
		t.Fatalf("exit %d with a rejected record, want 2; stderr %s", code, errb.String())
	}
	var ids []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var ev schema.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("bad output line %q: %v", l, err)
		}
		ids = append(ids, ev.ID)
	}
	if strings.Join(ids, ",") != "a,b,c,d" {
		t.Fatalf("events %v, want a,b,c,d in input order", ids)
	}
	e := errb.String()
	if !strings.Contains(e, bad+":1: record 1: not a JSON record") || strings.Contains(e, "\x1b") {
		t.Fatalf("stderr does not name the bad record safely: %q", e)
	}
	if !strings.Contains(e, "3 inputs, 5 records, 4 events, 1 rejected") {
		t.Fatalf("summary missing: %q", e)
	}

	out.Reset()
	errb.Reset()
	if code := runNormalize(context.Background(), []string{good}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d for clean input, want 0: %s", code, errb.String())
	}
	if code := runNormalize(context.Background(), []string{"--format", "xml", good}, nil, &out, &errb); code != 2 {
		t.Fatalf("bad --format accepted")
	}
}
