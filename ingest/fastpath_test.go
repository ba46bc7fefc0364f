package ingest

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"auditwatch/gen"
)

// trace is everything a consumer of a Reader can observe: each event's
// JSON or each error's text, with SafeOffset after it, then the stats.
func trace(in []byte, opts Options, framed, oneByte bool) string {
	return traceWith(in, opts, framed, framed, oneByte)
}

func traceWith(in []byte, opts Options, framed, treeOnly, oneByte bool) string {
	var src io.Reader = bytes.NewReader(in)
	if oneByte {
		src = iotest.OneByteReader(src)
	}
	r := NewReader(src, "in", opts)
	r.framed, r.treeOnly = framed, treeOnly
	var b strings.Builder
	for i := 0; i < 4*len(in)+8; i++ {
		ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintf(&b, "error %v", err)
		} else {
			b.Write(ev.AppendJSON(nil))
		}
		fmt.Fprintf(&b, " @%d\n", r.SafeOffset())
	}
	fmt.Fprintf(&b, "%+v\n", r.Stats())
	return b.String()
}

func fixedOptions() Options {
	opts := DefaultOptions()
	opts.Now = func() time.Time { return time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC) }
	return opts
}

// The one-object-per-line fast path must be invisible: the same events,
// errors, offsets and stats as framing every record.
func TestLineFastPathMatchesFraming(t *testing.T) {
	cases := map[string]string{
		"lines":          goodCT + "\n" + goodCT + "\r\n\n  " + goodCT + "  \n",
		"no final nl":    goodCT + "\n" + goodCT,
		"two per line":   goodCT + goodCT + "\n" + goodCT,
		"trailing comma": goodCT + ",\n" + goodCT,
		"bad json":       `{"eventName":"X",}` + "\n" + `{"eventName" "X"}` + "\n" + goodCT,
		"open object":    `{"eventName":"X","a":{"b":1}` + "\n}\n" + goodCT,
		"pretty":         "{\n  \"eventName\": \"X\",\n  \"eventSource\": \"s3.amazonaws.com\"\n}\n" + goodCT,
		"string nl":      `{"eventName":"X","a":"b` + "\n" + goodCT,
		"deep":           `{"eventName":"X","a":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + "}\n" + goodCT,
		// in-place CloudTrail records at, over and far under the depth
		// limit (64), the last with more brackets than the limit
		"ct at limit":     `{"eventID":"d1","eventName":"X","a":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + "}\n" + goodCT,
		"ct over limit":   `{"eventID":"d2","eventName":"X","a":` + strings.Repeat("[", 64) + strings.Repeat("]", 64) + "}\n" + goodCT,
		"ct many shallow": `{"eventID":"d3","eventName":"X","a":[` + strings.Repeat("[],{},", 40) + `{"b":[{}]}]}` + "\n" + goodCT,
		"brackets in str": `{"eventName":"X","eventSource":"s3.amazonaws.com","a":"` + strings.Repeat("{", 70) + `"}` + "\n",
		"huge":            `{"eventName":"X","a":"` + strings.Repeat("x", 2<<20) + `"}` + "\n" + goodCT,
		"container":       `{"Records":[` + goodCT + `,` + goodCT + `]}` + "\n" + goodCT,
		"vault":           vaultPair("r1", `{"display_name":"root"}`, "[::1]:80", "", "", "") + "\n" + goodCT,
		"syslog":          "<38>Nov 13 h vault[1]: {\"type\":\"request\",\"request\":{\"path\":\"auth/userpass/login/x\"}}\n" + goodCT,
		"server log":      "2019-12-18T20:26:12.000Z [INFO]  core: x\n" + goodCT,
		"bom":             "\xef\xbb\xbf" + goodCT + "\n",
		"scalar":          "{}\n\"x\"\n" + goodCT,
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			for _, oneByte := range []bool{false, true} {
				if oneByte && len(in) > 1<<16 {
					continue
				}
				want := trace([]byte(in), fixedOptions(), true, oneByte)
				got := trace([]byte(in), fixedOptions(), false, oneByte)
				if got != want {
					t.Fatalf("oneByte=%v: fast path differs\n got: %s\nwant: %s", oneByte, got, want)
				}
			}
		})
	}
}

// Same check on the repository's real logs and the benchmark input.
func TestLineFastPathMatchesFramingOnLogs(t *testing.T) {
	root := repoRoot(t)
	var inputs [][]byte
	for _, p := range []string{
		filepath.Join(root, "ingest", "testdata", "cloudtrail-sample.jsonl"),
		filepath.Join(root, "testdata", "openbao-scenario", "audit.log"),
	} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, b)
	}
	mixed, _ := benchInput(t, 4000, true, true)
	inputs = append(inputs, mixed)
	// the generator's traffic: Vault clients whose auth blocks repeat
	// from entry to entry (the Vault parser's auth memo)
	g, err := gen.New(gen.Config{Events: 8000, Anomalies: true, CloudTrailShare: 0.3}.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	var generated []byte
	for ok := true; ok; {
		generated, _, ok = g.Next(generated)
	}
	inputs = append(inputs, generated)
	for i, in := range inputs {
		want := trace(in, fixedOptions(), true, false)
		if got := trace(in, fixedOptions(), false, false); got != want {
			t.Fatalf("input %d: fast path differs from framing", i)
		}
		if got := traceWith(in, fixedOptions(), false, true, false); got != want {
			t.Fatalf("input %d: fast path without in-place Vault reading differs from framing", i)
		}
		if strings.HasPrefix(want, "error ") || strings.Contains(want, "\nerror ") {
			t.Fatalf("input %d: unexpected errors", i)
		}
	}
}

func FuzzLineFastPath(f *testing.F) {
	f.Add([]byte(goodCT + "\n" + vaultPair("r1", `{"display_name":"root"}`, "[::1]:80", "", "", "")))
	f.Add([]byte(`{"eventName":"X","a":{"b":1}` + "\n}\n" + goodCT))
	f.Add([]byte(goodCT + goodCT + "\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		opts := fixedOptions()
		opts.MaxRecordBytes = 4096
		opts.MaxDepth = 16
		opts.MaxPending = 4
		want := trace(in, opts, true, false)
		if got := trace(in, opts, false, false); got != want {
			t.Fatalf("fast path differs\n got: %s\nwant: %s", got, want)
		}
		for _, format := range []string{FormatVault, FormatCloudTrail} {
			opts.Format = format
			if got, want := trace(in, opts, false, false), trace(in, opts, true, false); got != want {
				t.Fatalf("format %s: fast path differs\n got: %s\nwant: %s", format, got, want)
			}
		}
	})
}
