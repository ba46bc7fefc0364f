package alert

import (
	"testing"

	"go.uber.org/goleak"
)

// No goroutine of the router or its outputs outlives Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
