package outbox

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"auditwatch/alert/notify"
	"auditwatch/schema"
)

func alert(id string) notify.Alert {
	return notify.Alert{Finding: schema.Finding{ID: id, Revision: 1}, Key: "k-" + id, Repeat: 1}
}

func TestQueuesAreIndependent(t *testing.T) {
	for _, path := range []string{"", filepath.Join(t.TempDir(), FileName)} {
		o, err := Open(path, []string{"slack", "syslog"})
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		if err := o.Append(map[string][]notify.Alert{"slack": {alert("a"), alert("b")}, "syslog": {alert("a")}}, t0); err != nil {
			t.Fatal(err)
		}
		if err := o.Append(map[string][]notify.Alert{"syslog": {alert("c")}}, t0.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-o.Wake("syslog"):
		default:
			t.Error("no wake-up after an append")
		}
		es, err := o.Peek("syslog", 10)
		if err != nil || len(es) != 2 || es[0].Alert.Finding.ID != "a" || es[1].Alert.Finding.ID != "c" || es[0].Alert.Key != "k-a" {
			t.Fatalf("%q: syslog queue = %+v, %v", path, es, err)
		}
		if err := o.Ack("syslog", es[0].Seq); err != nil {
			t.Fatal(err)
		}
		if n, oldest := o.Backlog("syslog"); n != 1 || !oldest.Equal(t0.Add(time.Second)) {
			t.Errorf("%q: syslog backlog %d oldest %s, want 1 at t0+1s", path, n, oldest)
		}
		if n, oldest := o.Backlog("slack"); n != 2 || !oldest.Equal(t0) {
			t.Errorf("%q: slack backlog %d oldest %s: acking syslog changed it", path, n, oldest)
		}
		if err := o.Append(map[string][]notify.Alert{"nope": {alert("x")}}, t0); err == nil {
			t.Errorf("%q: append to an unknown output succeeded", path)
		}
		if err := o.Append(map[string][]notify.Alert{"syslog": {alert("d")}, "nope": {alert("x")}}, t0); err == nil {
			t.Errorf("%q: a partly unknown batch was appended", path)
		}
		if n, _ := o.Backlog("syslog"); n != 1 {
			t.Errorf("%q: failed batch left %d entries", path, n)
		}
		o.Close()
	}
}

func TestReopenKeepsQueuesAndOrphans(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	o, err := Open(path, []string{"a", "old"})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Append(map[string][]notify.Alert{"a": {alert("1"), alert("2")}, "old": {alert("3")}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	o.Close()
	o, err = Open(path, []string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if n, _ := o.Backlog("a"); n != 2 {
		t.Errorf("backlog after reopen = %d, want 2", n)
	}
	if orph, err := o.Orphans(); err != nil || orph["old"] != 1 {
		t.Errorf("orphans = %v, %v", orph, err)
	}
}

func TestCommitHookFailsWholeBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	fail := true
	o, err := Open(path, []string{"a", "b"}, WithCommitHook(func() error {
		if fail {
			return syscall.ENOSPC
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := o.Append(map[string][]notify.Alert{"a": {alert("1")}, "b": {alert("1")}}, time.Now()); err == nil {
		t.Fatal("append succeeded on a full disk")
	}
	for _, q := range []string{"a", "b"} {
		if es, _ := o.Peek(q, 10); len(es) != 0 {
			t.Errorf("queue %s holds %d entries of a failed append", q, len(es))
		}
	}
	fail = false
	if err := o.Append(map[string][]notify.Alert{"a": {alert("1")}}, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// TestSurvivesSIGKILL appends in a child process that reports each
// returned Append on stdout and is SIGKILLed mid-stream: every append it
// reported is in the file afterwards, in order.
func TestSurvivesSIGKILL(t *testing.T) {
	if os.Getenv("OUTBOX_CHILD") != "" {
		o, err := Open(os.Getenv("OUTBOX_CHILD"), []string{"a"})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		for i := 0; ; i++ {
			if err := o.Append(map[string][]notify.Alert{"a": {alert(strconv.Itoa(i))}}, time.Now()); err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
			fmt.Println(i)
		}
	}
	path := filepath.Join(t.TempDir(), FileName)
	cmd := exec.Command(os.Args[0], "-test.run=^TestSurvivesSIGKILL$")
	cmd.Env = append(os.Environ(), "OUTBOX_CHILD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 1<<16)
	tmp := make([]byte, 4096)
	deadline := time.Now().Add(20 * time.Second)
	last := -1
	for last < 50 && time.Now().Before(deadline) {
		n, err := out.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if err != nil {
			break
		}
		lines := splitLines(buf)
		if len(lines) > 0 {
			last, _ = strconv.Atoi(lines[len(lines)-1])
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	lines := splitLines(buf)
	acked := -1
	for _, l := range lines {
		if v, err := strconv.Atoi(l); err == nil {
			acked = v
		}
	}
	if acked < 10 {
		t.Fatalf("child acknowledged only %d appends: %q", acked, buf)
	}
	o, err := Open(path, []string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	es, err := o.Peek("a", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) < acked+1 {
		t.Fatalf("after SIGKILL the outbox holds %d entries; %d appends had returned", len(es), acked+1)
	}
	for i := 0; i <= acked; i++ {
		if es[i].Alert.Finding.ID != strconv.Itoa(i) {
			t.Fatalf("entry %d is %q", i, es[i].Alert.Finding.ID)
		}
	}
}

// splitLines returns the complete lines of b.
func splitLines(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == '\n' {
			out = append(out, string(b[start:i]))
			start = i + 1
		}
	}
	return out
}
