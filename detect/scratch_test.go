package detect

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"auditwatch/schema"
)

func TestScratch(t *testing.T) {
	p := os.Getenv("SCRATCH")
	if p == "" {
		t.Skip()
	}
	f, _ := os.Open(p)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	var evs []schema.Event
	for sc.Scan() {
		var ev schema.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	lu, _ := time.Parse(time.RFC3339Nano, os.Getenv("LU"))
	st := openStore(t, t.TempDir())
	defer st.Close()
	var c Config
	c.LearnUntil = lu
	for _, f := range runAll(newEngine(t, c, st, nil), evs) {
		fmt.Printf("%s %-20s %-12s %-38s %-15s n=%-3d r=%d %s | %s\n", f.Time.Format("15:04:05.000"), f.Detector, f.PrincipalName, f.Principal, f.SourceIP, f.Count, f.Revision, f.Resource, f.Reason)
	}
}
