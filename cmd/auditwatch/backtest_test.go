package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"auditwatch/schema"
)

const btRuleA = `title: Redis secret read
id: 33333333-0000-4000-8000-00000000000a
author: test
logsource: {product: vault}
detection:
  sel:
    request.operation: read
    request.path|contains: redis
  condition: sel
level: %s
`

const btRuleB = `title: Vault login
id: 33333333-0000-4000-8000-00000000000b
author: test
logsource: {product: vault}
detection:
  sel:
    request.path|endswith: /login
  condition: sel
level: informational
`

const btRuleC = `title: Worker reads a secret
id: 33333333-0000-4000-8000-00000000000c
author: test
logsource: {product: aws, service: cloudtrail}
detection:
  sel:
    eventName: GetSecretValue
    userIdentity.arn|contains: -api
  condition: sel
level: medium
`

// TestBacktestRuleChange backtests a rule change (one rule's level raised,
// one rule removed, one added, detector settings unchanged) over a
// generated week of events, and checks the reported difference against
// the findings of two separate replays of the same week.
func TestBacktestRuleChange(t *testing.T) {
	work := t.TempDir()
	data := filepath.Join(work, "week.log")
	f, err := os.Create(data)
	if err != nil {
		t.Fatal(err)
	}
	var genErr bytes.Buffer
	if code := run([]string{"generate", "--format", "mixed", "--seed", "5", "--events", "12000", "--machines", "20",
		"--humans", "8", "--duration", "168h"}, nil, f, &genErr); code != 0 {
		t.Fatalf("generate: %s", genErr.String())
	}
	f.Close()
	write := func(name, body string) string {
		p := filepath.Join(work, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("v1/a.yml", fmt.Sprintf(btRuleA, "low"))
	write("v1/b.yml", btRuleB)
	write("v2/a.yml", fmt.Sprintf(btRuleA, "high"))
	write("v2/c.yml", btRuleC)
	oldCfg := write("old.yaml", fmt.Sprintf("rules: {paths: [%q]}\n", filepath.Join(work, "v1")))
	newCfg := write("new.yaml", fmt.Sprintf("rules: {paths: [%q]}\n", filepath.Join(work, "v2")))

	since := "2026-01-01T00:00:00Z"
	var out, errb bytes.Buffer
	if code := run([]string{"backtest", "--config", newCfg, "--against", oldCfg, "--since", since, "--format", "json", data}, nil, &out, &errb); code != 0 {
		t.Fatalf("backtest: exit %d: %s", code, errb.String())
	}
	var rep backtestReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}

	// the reference: two separate replays, compared here by finding id
	oldF, stderr, code := replayBin(t, "--config", oldCfg, data)
	if code != 0 {
		t.Fatal(stderr)
	}
	newF, stderr, code := replayBin(t, "--config", newCfg, data)
	if code != 0 {
		t.Fatal(stderr)
	}
	from, _ := time.Parse(time.RFC3339, since)
	byID := func(fs []schema.Finding) map[string]schema.Finding {
		m := map[string]schema.Finding{}
		for _, f := range fs {
			if !f.Time.Before(from) {
				m[f.ID] = f
			}
		}
		return m
	}
	o, n := byID(oldF), byID(newF)
	type counts struct{ new, gone, changed int }
	want := map[string]*counts{}
	get := func(f schema.Finding) *counts {
		k := f.Detector
		if f.Detector == schema.DetectorSigma {
			k = "sigma: " + f.Attributes["rule_title"]
		}
		if want[k] == nil {
			want[k] = &counts{}
		}
		return want[k]
	}
	unchanged := 0
	for id, f := range n {
		if of, ok := o[id]; !ok {
			get(f).new++
		} else if of.Severity != f.Severity {
			get(f).changed++
		} else {
			unchanged++
		}
	}
	for id, f := range o {
		if _, ok := n[id]; !ok {
			get(f).gone++
		}
	}
	// the change must show in all three ways, and nowhere else
	if c := want["sigma: Redis secret read"]; c == nil || c.changed == 0 || c.new+c.gone != 0 {
		t.Fatalf("reference: the raised level shows as %+v", c)
	}
	if c := want["sigma: Vault login"]; c == nil || c.gone == 0 {
		t.Fatalf("reference: the removed rule shows as %+v", c)
	}
	if c := want["sigma: Worker reads a secret"]; c == nil || c.new == 0 {
		t.Fatalf("reference: the added rule shows as %+v", c)
	}
	if len(want) != 3 {
		t.Errorf("reference: differences beyond the rules: %v", want)
	}
	if rep.Old != len(o) || rep.New != len(n) || rep.Unchange != unchanged {
		t.Errorf("totals: backtest %d/%d/%d, replays %d/%d/%d", rep.Old, rep.New, rep.Unchange, len(o), len(n), unchanged)
	}
	if len(rep.Groups) != len(want) {
		t.Errorf("backtest groups %+v, want %d", rep.Groups, len(want))
	}
	for _, g := range rep.Groups {
		c := want[g.Key]
		if c == nil || g.New != c.new || g.Gone != c.gone || g.Changed != c.changed {
			t.Errorf("%s: backtest new %d gone %d changed %d, replays %+v", g.Key, g.New, g.Gone, g.Changed, c)
		}
		if len(g.Examples) == 0 {
			t.Errorf("%s: no examples", g.Key)
		}
	}
	// the text form names each rule
	out.Reset()
	if code := run([]string{"backtest", "--config", newCfg, "--against", oldCfg, data}, nil, &out, &errb); code != 0 {
		t.Fatal(errb.String())
	}
	for _, k := range []string{"Redis secret read", "Vault login", "Worker reads a secret", "low→high"} {
		if !bytes.Contains(out.Bytes(), []byte(k)) {
			t.Errorf("text report lacks %q:\n%s", k, out.String())
		}
	}
}
