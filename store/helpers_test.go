package store

import (
	"testing"

	"auditwatch/store/chdb"
	"auditwatch/store/chtest"
)

func chdbConfig(t *testing.T) chdb.Config { return chdb.Config{Path: chtest.CHDBPath(t)} }

func chdbConfigAt(path string) chdb.Config { return chdb.Config{Path: path} }
