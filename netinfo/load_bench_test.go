package netinfo_test

import (
	"os"
	"testing"

	"auditwatch/netinfo"
)

// BenchmarkOpenReal loads the databases `make geo` fetched
// ($AUDITWATCH_GEO_DIR): the fixed start-up cost of network context.
func BenchmarkOpenReal(b *testing.B) {
	dir := os.Getenv(netinfo.DirEnv)
	if dir == "" {
		b.Skip("AUDITWATCH_GEO_DIR not set (make geo)")
	}
	c := netinfo.Config{Dir: dir}
	c.SetDefaults()
	for i := 0; i < b.N; i++ {
		db, err := netinfo.Open(c)
		if err != nil {
			b.Fatal(err)
		}
		db.Close()
	}
}
