package gen

import (
	"auditwatch/internal/testenv"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func repoRoot(t testing.TB) string { return testenv.RepoRoot(t) }

func sharedTestdata(t testing.TB) string { return testenv.SharedTestdata(t) }

// small is a quick configuration with both sources.
func small(seed int64) Config {
	return Config{Seed: seed, Events: 8_000, Machines: 24, Humans: 10, CloudTrailShare: 0.5, Anomalies: true, Duration: 6 * time.Hour}
}

type output struct {
	vault, ct []byte
	g         *Generator
	stats     Stats
}

func generate(t testing.TB, cfg Config) output {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	var v, c bytes.Buffer
	st, err := g.Run(context.Background(), Output{Vault: &v, CloudTrail: &c})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return output{vault: v.Bytes(), ct: c.Bytes(), g: g, stats: st}
}

func lines(b []byte) [][]byte {
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out = append(out, append([]byte(nil), sc.Bytes()...))
	}
	return out
}

// ev is what a test needs of one request, extracted independently of the
// project's parsers.
type ev struct {
	id, source, principal, ip, resource, action string
	login                                       string // user named by a login attempt
	t                                           time.Time
	failed, privileged                          bool
}

func mustJSON(t testing.TB, line []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, line)
	}
	return m
}

func str(m map[string]any, path ...string) string {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = mm[p]
	}
	s, _ := cur.(string)
	return s
}

func ctEv(t testing.TB, line []byte) ev {
	m := mustJSON(t, line)
	e := ev{id: str(m, "eventID"), source: "cloudtrail", ip: str(m, "sourceIPAddress"), action: str(m, "eventName")}
	e.t, _ = time.Parse(time.RFC3339, str(m, "eventTime"))
	switch str(m, "userIdentity", "type") {
	case "AssumedRole":
		e.principal = str(m, "userIdentity", "sessionContext", "sessionIssuer", "arn")
	case "Root":
		e.principal = str(m, "userIdentity", "arn")
		e.privileged = true
	default:
		e.principal = str(m, "userIdentity", "arn")
		if e.principal == "" && str(m, "userIdentity", "userName") != "HIDDEN_DUE_TO_SECURITY_REASONS" {
			e.principal = "arn:aws:iam::" + str(m, "userIdentity", "accountId") + ":user/" + str(m, "userIdentity", "userName")
		}
	}
	e.failed = str(m, "errorCode") != "" || str(m, "responseElements", "ConsoleLogin") == "Failure"
	if e.action == "ConsoleLogin" {
		e.login = str(m, "userIdentity", "userName")
	}
	if rp, ok := m["requestParameters"].(map[string]any); ok {
		if s, _ := rp["secretId"].(string); s != "" {
			e.resource = s
		}
	}
	if e.resource == "" {
		if rs, ok := m["resources"].([]any); ok && len(rs) > 0 {
			e.resource, _ = rs[0].(map[string]any)["ARN"].(string)
		}
	}
	if e.action == "StopLogging" || e.action == "DeleteTrail" {
		e.privileged = true
	}
	return e
}

// vaultEvs pairs request and response entries into one ev per request.
func vaultEvs(t testing.TB, b []byte) []ev {
	var out []ev
	idx := map[string]int{}
	for _, line := range lines(b) {
		m := mustJSON(t, line)
		id := str(m, "request", "id")
		if str(m, "type") == "request" {
			idx[id] = len(out)
			e := ev{id: id, source: "vault", ip: str(m, "request", "remote_address"), resource: str(m, "request", "path"),
				action: str(m, "request", "operation")}
			e.t, _ = time.Parse(time.RFC3339Nano, str(m, "time"))
			out = append(out, e)
			continue
		}
		i, ok := idx[id]
		if !ok {
			t.Fatalf("response entry without request entry: %s", id)
		}
		delete(idx, id)
		e := &out[i]
		e.principal = str(m, "auth", "entity_id")
		if e.principal == "" && str(m, "auth", "display_name") != "" {
			e.principal = str(m, "auth", "display_name")
		}
		e.failed = str(m, "error") != "" || str(m, "response", "data", "error") != ""
		e.privileged = e.principal == "root" || strings.HasPrefix(e.resource, "sys/audit")
		if strings.HasPrefix(e.resource, "auth/") && strings.Contains(e.resource, "/login") {
			if i := strings.Index(e.resource, "/login/"); i >= 0 {
				e.login = e.resource[i+len("/login/"):]
			}
			e.resource = ""
		}
	}
	if len(idx) != 0 {
		t.Fatalf("%d request entries without a response entry", len(idx))
	}
	return out
}
