package ingest

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"auditwatch/schema"
)

type labelEntry struct {
	RequestID     string `json:"request_id"`
	RequestTime   string `json:"request_time"`
	Path          string `json:"path"`
	RemoteAddress string `json:"remote_address"`
	Error         string `json:"error"`
	Failed        bool   `json:"failed"`
	Note          string `json:"note"`
	DisplayName   string `json:"display_name"`
}

type incident struct {
	ID      string       `json:"incident_id"`
	Kind    string       `json:"kind"`
	Entries []labelEntry `json:"entries"`
}

func readJSONLines[T any](t *testing.T, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, v)
	}
	return out
}

// TestOpenBaoScenarioOutcomes checks every labelled request of the OpenBao
// scenario (bundled in the repository) against its normalized event:
// outcome, failure kind, identity of failed logins, address and time.
func TestOpenBaoScenarioOutcomes(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "testdata", "openbao-scenario")
	res := readFile(t, filepath.Join(dir, "audit.log"), testOptions())
	if len(res.errs) != 0 || len(res.events) != 743 {
		t.Fatalf("audit.log: %d events, %d errors; want 743, 0", len(res.events), len(res.errs))
	}
	byID := map[string]schema.Event{}
	for _, ev := range res.events {
		byID[ev.ID] = ev
	}
	check := func(where string, e labelEntry, wantKind string) schema.Event {
		t.Helper()
		ev, ok := byID[e.RequestID]
		if !ok {
			t.Fatalf("%s: request %s has no event", where, e.RequestID)
		}
		if got := ev.Outcome == schema.OutcomeFailure; got != e.Failed {
			t.Errorf("%s %s: outcome %s, labelled failed=%v", where, e.RequestID, ev.Outcome, e.Failed)
		}
		if ev.FailureKind != wantKind {
			t.Errorf("%s %s (%s, error %q): failure_kind %q, want %q", where, e.RequestID, e.Path, e.Error, ev.FailureKind, wantKind)
		}
		if ev.SourceIP != e.RemoteAddress || ev.Resource != e.Path {
			t.Errorf("%s %s: source_ip %q resource %q, want %q %q", where, e.RequestID, ev.SourceIP, ev.Resource, e.RemoteAddress, e.Path)
		}
		if want, err := time.Parse(time.RFC3339Nano, e.RequestTime); err != nil || !ev.Time.Equal(want) {
			t.Errorf("%s %s: time %v, want request time %s", where, e.RequestID, ev.Time, e.RequestTime)
		}
		return ev
	}
	incidents := readJSONLines[incident](t, filepath.Join(dir, "labels.jsonl"))
	if len(incidents) != 8 {
		t.Fatalf("labels.jsonl: %d incidents, want 8", len(incidents))
	}
	failures := 0
	for _, inc := range incidents {
		for _, e := range inc.Entries {
			want := ""
			switch inc.ID {
			case "A3":
				switch e.Error {
				case "invalid credentials", "":
					// "": a login of an unknown user, failed only in
					// response.data.error
					want = schema.FailureInvalidCredentials
				case "permission denied":
					want = schema.FailureLockedOut
				default:
					t.Fatalf("A3: unexpected labelled error %q", e.Error)
				}
			case "A3b":
				want = schema.FailureInvalidToken
			case "A3c":
				want = schema.FailurePermissionDenied
			}
			ev := check(inc.ID, e, want)
			if e.Failed {
				failures++
			}
			switch inc.ID {
			case "A3":
				user := strings.TrimPrefix(e.Path, "auth/userpass/login/")
				if !ev.Auth || ev.PrincipalType != schema.PrincipalTypeAnonymous || ev.PrincipalName != user || ev.Principal != "" || ev.AuthMethod != "userpass" {
					t.Errorf("A3 %s: failed login identity %q/%q/%q auth=%v method %q; want anonymous, name %q", e.RequestID, ev.Principal, ev.PrincipalName, ev.PrincipalType, ev.Auth, ev.AuthMethod, user)
				}
			case "A3b":
				if ev.PrincipalType != schema.PrincipalTypeAnonymous || ev.TokenHMAC == "" {
					t.Errorf("A3b %s: invalid token event %q/%q token %q", e.RequestID, ev.Principal, ev.PrincipalType, ev.TokenHMAC)
				}
			case "A3c":
				if ev.PrincipalName != "web-frontend" || ev.PrincipalType != "entity" || ev.Principal != "9ae36f90-7867-cd9e-f86b-20985a1540ab" {
					t.Errorf("A3c %s: denied request identity %q/%q/%q", e.RequestID, ev.Principal, ev.PrincipalName, ev.PrincipalType)
				}
			case "A2":
				if ev.Auth && (ev.Principal != "a10f7920-d048-a142-3ba2-7d56371134e5" || ev.PrincipalName != "reporting-etl") {
					t.Errorf("A2 %s: successful login identity %q/%q, want reporting-etl's entity from response.auth", e.RequestID, ev.Principal, ev.PrincipalName)
				}
			}
		}
	}
	if failures != 48+8+7 {
		t.Errorf("labelled failing requests: %d, want 63", failures)
	}

	benign := readJSONLines[labelEntry](t, filepath.Join(dir, "benign-failures.jsonl"))
	if len(benign) != 6 {
		t.Fatalf("benign-failures.jsonl: %d rows, want 6", len(benign))
	}
	for _, b := range benign {
		var want string
		switch {
		case b.Note == "typo":
			want = schema.FailureInvalidCredentials
		case b.Note == "benign-denied":
			want = schema.FailurePermissionDenied
		case strings.Contains(b.Note, "locked out"):
			want = schema.FailureLockedOut
		default:
			t.Fatalf("benign failure with unexpected note %q", b.Note)
		}
		check("benign "+b.Note, b, want)
	}

	// every failure in the log is one of the labelled or benign ones
	total := 0
	for _, ev := range res.events {
		if ev.Failed() {
			total++
		}
	}
	if total != failures+len(benign) {
		t.Errorf("%d failed events in the log, labelled+benign %d", total, failures+len(benign))
	}
}
