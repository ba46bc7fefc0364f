package bench

import (
	"testing"

	"go.uber.org/goleak"
)

// No goroutine started by a test outlives it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
