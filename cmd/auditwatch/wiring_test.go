package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"auditwatch/pipeline"
)

// configuredDaemon writes cfg to path and loads it as command name does.
func configuredDaemon(t *testing.T, name, path, cfg string) (*daemon, string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	d, code := newDaemon(name, []string{"--config", path}, &errb)
	if d == nil {
		t.Fatalf("config %s: exit %d: %s", path, code, errb.String())
	}
	return d, path
}

// A detect process holds one engine per owned partition of each events
// topic; they share the detectors' state budget (detect.Pool) instead of
// each taking all of it, and closing an engine through the wrappers the
// stage sees (incident correlation, allow rules) gives its share back.
func TestDetectEnginesShareOneBudget(t *testing.T) {
	work := t.TempDir()
	d, _ := configuredDaemon(t, "detect", filepath.Join(work, "detect.yaml"),
		fmt.Sprintf("%sstate: {dir: %q}\n", kafkaStreamYAML("127.0.0.1:1", "1s"), filepath.Join(work, "state")))
	dcfg := d.conf.Detectors
	var dets []pipeline.Detector
	for _, role := range []string{rolePrincipal, roleByIP} {
		c, ok := detectConfigFor(dcfg, role)
		if !ok {
			t.Fatalf("role %s has no detectors under the defaults", role)
		}
		open := d.detectorOpenerFor(role, c)
		for p := 0; p < 3; p++ {
			det, err := open(p, false)
			if err != nil {
				t.Fatal(err)
			}
			dets = append(dets, det)
		}
	}
	if d.statePool == nil || d.statePool.Engines() != len(dets) {
		t.Fatalf("pool %v, want %d engines in it", d.statePool, len(dets))
	}
	for i, det := range dets {
		if err := det.Close(); err != nil {
			t.Fatal(err)
		}
		if got, want := d.statePool.Engines(), len(dets)-i-1; got != want {
			t.Fatalf("after closing %d engines the pool counts %d, want %d", i+1, got, want)
		}
	}
}
