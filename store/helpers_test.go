package store

import (
	"testing"

	"auditwatch/store/chdb"
	"auditwatch/store/chtest"
)

func chdbConfig(t *testing.T) chdb.Config { return chdb.Config{Path: chtest.CHDBPath(t)} }
