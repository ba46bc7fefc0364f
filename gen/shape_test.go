package gen

import (
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// keyPaths flattens the object keys of a JSON value into dotted paths,
// not descending into the members listed in opaque (free-form payloads).
func keyPaths(v any, prefix string, opaque map[string]bool, out map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			out[p] = true
			if !opaque[p] {
				keyPaths(c, p, opaque, out)
			}
		}
	case []any:
		for _, c := range x {
			keyPaths(c, prefix+"[]", opaque, out)
		}
	}
}

type shapeClass struct {
	union, inter map[string]bool
	n            int
}

func (s *shapeClass) add(keys map[string]bool) {
	if s.union == nil {
		s.union, s.inter = map[string]bool{}, map[string]bool{}
		for k := range keys {
			s.inter[k] = true
		}
	}
	for k := range keys {
		s.union[k] = true
	}
	for k := range s.inter {
		if !keys[k] {
			delete(s.inter, k)
		}
	}
	s.n++
}

// compareShapes checks every generated class against the real class of the
// same name: generated records use only keys real records of that class
// use, and carry every key all real records of that class carry.
func compareShapes(t *testing.T, real, got map[string]*shapeClass, minCompared int) {
	t.Helper()
	var names []string
	for n := range got {
		names = append(names, n)
	}
	sort.Strings(names)
	compared := 0
	for _, name := range names {
		g, r := got[name], real[name]
		if r == nil {
			t.Logf("class %s (%d generated records): no real sample to compare with", name, g.n)
			continue
		}
		compared++
		for k := range g.union {
			if !r.union[k] {
				t.Errorf("class %s: generated key %q never appears in the %d real records", name, k, r.n)
			}
		}
		for k := range r.inter {
			if !g.inter[k] {
				t.Errorf("class %s: real records always have %q, some generated ones do not", name, k)
			}
		}
	}
	if compared < minCompared {
		t.Fatalf("only %d classes compared with real records, want at least %d", compared, minCompared)
	}
}

// ctShapes splits a CloudTrail record into two shape classes: the record
// by event name and outcome (userIdentity opaque), and userIdentity by type.
func ctShapes(m map[string]any) map[string]map[string]bool {
	c := str(m, "eventName")
	if _, ok := m["errorCode"]; ok {
		c += "/error"
	}
	if str(m, "userIdentity", "invokedBy") != "" {
		c += "/invoked"
	}
	rec := map[string]bool{}
	keyPaths(m, "", ctOpaque, rec)
	ui := map[string]bool{}
	if u, ok := m["userIdentity"].(map[string]any); ok {
		keyPaths(u, "", nil, ui)
	}
	uc := "userIdentity/" + str(m, "userIdentity", "type")
	if str(m, "userIdentity", "invokedBy") != "" {
		uc += "/invoked"
	}
	if str(m, "userIdentity", "userName") == "HIDDEN_DUE_TO_SECURITY_REASONS" {
		uc += "/hidden"
	}
	return map[string]map[string]bool{c: rec, uc: ui}
}

var ctOpaque = map[string]bool{"requestParameters": true, "responseElements": true, "additionalEventData": true, "userIdentity": true}

func TestCloudTrailShapeMatchesRealRecords(t *testing.T) {
	dir := filepath.Join(sharedTestdata(t), "cloudtrail")
	real := map[string]*shapeClass{}
	add := func(classes map[string]*shapeClass, m map[string]any) {
		for c, keys := range ctShapes(m) {
			if classes[c] == nil {
				classes[c] = &shapeClass{}
			}
			classes[c].add(keys)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "s3-delivery", "*", "*.json.gz"))
	if len(files) == 0 {
		t.Fatalf("no S3 delivery samples under %s", dir)
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(fh)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var doc struct{ Records []map[string]any }
		if err := json.NewDecoder(zr).Decode(&doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		fh.Close()
		for _, r := range doc.Records {
			add(real, r)
		}
	}
	arrays, _ := filepath.Glob(filepath.Join(dir, "json-array", "*", "*.json"))
	for _, f := range arrays {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var recs []map[string]any
		if json.Unmarshal(b, &recs) == nil {
			for _, r := range recs {
				add(real, r)
			}
		}
	}
	ndjson, _ := filepath.Glob(filepath.Join(dir, "ndjson", "*", "*.log"))
	for _, f := range ndjson {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines(b) {
			var r map[string]any
			if json.Unmarshal(l, &r) == nil && r["eventName"] != nil {
				add(real, r)
			}
		}
	}
	lookups, _ := filepath.Glob(filepath.Join(dir, "lookup-events", "*", "*.json"))
	for _, f := range lookups {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Events []struct{ CloudTrailEvent string }
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, e := range doc.Events {
			var r map[string]any
			if json.Unmarshal([]byte(e.CloudTrailEvent), &r) == nil {
				add(real, r)
			}
		}
	}
	cfg := small(13)
	cfg.CloudTrailShare = 1
	out := generate(t, cfg)
	got := map[string]*shapeClass{}
	for _, l := range lines(out.ct) {
		add(got, mustJSON(t, l))
	}
	compareShapes(t, real, got, 12)
}

func vaultClass(m map[string]any) string {
	mt := str(m, "request", "mount_type")
	if mt == "aws" || mt == "database" {
		// Dynamic credentials render like KV reads; the real sample has
		// no such engine to compare with.
		mt = "kv"
	}
	c := str(m, "type") + "/" + mt + "/" + str(m, "request", "operation")
	p := str(m, "request", "path")
	switch {
	case strings.HasSuffix(p, "/login") || strings.Contains(p, "/login/"):
		c += "/login"
	case strings.HasPrefix(p, "auth/token/"):
		c += "/" + p[len("auth/token/"):]
	}
	if str(m, "auth", "display_name") == "root" {
		c += "/root"
	}
	if str(m, "error") != "" || str(m, "response", "data", "error") != "" {
		c += "/failed"
		if str(m, "auth", "display_name") == "" {
			c += "/anonymous"
		}
	}
	return c
}

var vaultOpaque = map[string]bool{"request.data": true, "response.data": true, "auth.metadata": true, "response.auth.metadata": true}

func TestVaultShapeMatchesRealOpenBao(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "testdata", "openbao-scenario", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	real := map[string]*shapeClass{}
	for _, l := range lines(b) {
		m := mustJSON(t, l)
		c := vaultClass(m)
		if real[c] == nil {
			real[c] = &shapeClass{}
		}
		keys := map[string]bool{}
		keyPaths(m, "", vaultOpaque, keys)
		real[c].add(keys)
	}
	cfg := small(17)
	cfg.CloudTrailShare = 0
	out := generate(t, cfg)
	got := map[string]*shapeClass{}
	for _, l := range lines(out.vault) {
		m := mustJSON(t, l)
		c := vaultClass(m)
		if got[c] == nil {
			got[c] = &shapeClass{}
		}
		keys := map[string]bool{}
		keyPaths(m, "", vaultOpaque, keys)
		got[c].add(keys)
	}
	compareShapes(t, real, got, 12)
}
