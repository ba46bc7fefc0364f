// Package hostiletest owns the hostile inputs the source tests feed beside
// good files (gzip bombs, a 100 MB line, deep nesting, a million invalid
// records), generated as streams so the test itself holds none of them in
// memory, and the subprocess harness that measures a test's peak memory
// (VmHWM) and log volume.
package hostiletest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// zeroMember is one gzip member of 1 MiB of zeros (about 1 KB).
func zeroMember() []byte {
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	zw.Write(make([]byte, 1<<20))
	zw.Close()
	return b.Bytes()
}

// FlatBomb returns a multi-member gzip file that decompresses to gib GiB
// of zeros (about 1 MB compressed per GiB).
func FlatBomb(gib int) []byte {
	m := zeroMember()
	return bytes.Repeat(m, gib<<10)
}

// NestedBomb returns a gzip of a gzip of FlatBomb(10): a file of a few KB
// that unpacks, layer by layer, to 10 GiB.
func NestedBomb() []byte {
	l := FlatBomb(10)
	for range 2 {
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
		zw.Write(l)
		zw.Close()
		l = b.Bytes()
	}
	return l
}

// LongLine streams one line of n bytes (the start of a JSON string that
// never closes within the limits), then a newline.
func LongLine(n int64) io.Reader {
	return io.MultiReader(strings.NewReader(`{"Records":[{"eventID":"`), io.LimitReader(repeatByte('a'), n-25), strings.NewReader("\n"))
}

type repeatByte byte

func (r repeatByte) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

// Deep returns a record nested depth levels deep.
func Deep(depth int) []byte {
	return []byte(`{"type":"request","x":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + "}\n")
}

// Invalid streams n invalid records, one per line: JSON that is neither a
// CloudTrail record nor a Vault entry, alternating with lines that are not
// JSON at all.
func Invalid(n int) io.Reader {
	return &invalid{n: n}
}

type invalid struct {
	n, i int
	buf  []byte
}

func (v *invalid) Read(p []byte) (int, error) {
	for len(v.buf) < len(p) && v.i < v.n {
		if v.i%2 == 0 {
			v.buf = fmt.Appendf(v.buf, "{\"not\":\"an audit record\",\"n\":%d}\n", v.i)
		} else {
			v.buf = fmt.Appendf(v.buf, "garbage line %d \x1b[31m\u202e\n", v.i)
		}
		v.i++
	}
	if len(v.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, v.buf)
	v.buf = v.buf[n:]
	return n, nil
}

// CountingWriter counts bytes written (the log volume) and keeps the
// first 16 KiB for the test to show.
type CountingWriter struct {
	N    atomic.Int64
	mu   sync.Mutex
	head []byte
}

func (c *CountingWriter) Write(p []byte) (int, error) {
	c.N.Add(int64(len(p)))
	c.mu.Lock()
	if room := 16<<10 - len(c.head); room > 0 {
		c.head = append(c.head, p[:min(room, len(p))]...)
	}
	c.mu.Unlock()
	return len(p), nil
}

// Head is the start of what was written.
func (c *CountingWriter) Head() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.head)
}

const childEnv = "AUDITWATCH_HOSTILE_CHILD"

// Child reports whether this process is the subprocess for test name.
func Child(name string) bool { return os.Getenv(childEnv) == name }

// ReportChild prints the child's peak memory (VmHWM) and the given log
// volume for the parent to read.
func ReportChild(t testing.TB, logBytes int64) {
	t.Helper()
	hwm, err := vmHWM()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("HOSTILE_HWM_KB=%d HOSTILE_LOG_BYTES=%d\n", hwm, logBytes)
}

func vmHWM() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/self/status")
}

var reportRE = regexp.MustCompile(`HOSTILE_HWM_KB=(\d+) HOSTILE_LOG_BYTES=(\d+)`)

// RunChild runs test name of this test binary in a subprocess (so its
// peak memory is its own; under the race detector, of the package built
// without it) and returns the child's peak resident memory
// and log volume, failing when the child fails.
func RunChild(t *testing.T, name string) (hwmBytes, logBytes int64) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.v", "-test.count=1")
	if raceEnabled {
		// the race detector's shadow memory is not the source's: measure a
		// child built without it (the test's directory is its package's)
		cmd = exec.Command("go", "test", "-run=^"+name+"$", "-v", "-count=1", ".")
	}
	cmd.Env = append(os.Environ(), childEnv+"="+name)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child %s: %v\n%s", name, err, tail(out))
	}
	m := reportRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("child %s reported nothing:\n%s", name, tail(out))
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	logBytes, _ = strconv.ParseInt(string(m[2]), 10, 64)
	t.Logf("child %s: peak RSS %.1f MiB, log %d bytes\n%s", name, float64(kb)/1024, logBytes, tail(out))
	return kb << 10, logBytes
}

func tail(b []byte) []byte {
	if len(b) > 4000 {
		return b[len(b)-4000:]
	}
	return b
}
