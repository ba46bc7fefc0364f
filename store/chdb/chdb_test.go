package chdb

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// requireLib loads libchdb or fails/skips per AUDITWATCH_REQUIRE_INTEGRATION.
func requireLib(t testing.TB) {
	t.Helper()
	if err := Load(""); err != nil {
		if os.Getenv("AUDITWATCH_REQUIRE_INTEGRATION") != "" {
			t.Fatalf("libchdb is required: %v", err)
		}
		t.Skipf("libchdb not available (set AUDITWATCH_REQUIRE_INTEGRATION=1 to require it): %v", err)
	}
}

func TestQueryWithParams(t *testing.T) {
	requireLib(t)
	c, err := Connect("--path=" + filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	nasty := "a'b\\c\td\ne\x00f\r\"); DROP TABLE x; --\u00e9\xff"
	out, err := c.Query("SELECT {s:String} = unhex({h:String}), length({s:String})", "TabSeparated",
		map[string]string{"s": EscapeParam(nasty), "h": hex.EncodeToString([]byte(nasty))})
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("1\t%d\n", len(nasty)); string(out) != want {
		t.Fatalf("bound value did not arrive intact: got %q, want %q", out, want)
	}
	if _, err := c.Query("SELEC nonsense", "TabSeparated", nil); err == nil {
		t.Fatal("want a syntax error")
	}
}
