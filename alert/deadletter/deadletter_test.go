package deadletter

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"auditwatch/schema"
)

func TestConcurrentAppendsStayWholeLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dead.jsonl")
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := schema.Finding{ID: string(rune('a'+i%26)) + "\n\x00", Summary: "line\r\nbreak"}
			if err := d.Write(Record{Time: time.Unix(int64(i), 0), Output: "slack", Reason: "rejected", Finding: &f}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopening appends.
	d, _ = Open(path)
	_ = d.Write(Record{Output: "hec", Events: []schema.Event{{ID: "e1"}}})
	_ = d.Close()
	f, _ := os.Open(path)
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %d is not a whole record: %v", n+1, err)
		}
		n++
	}
	if n != 51 {
		t.Errorf("%d records, want 51", n)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
}
