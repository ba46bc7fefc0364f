package slack

import (
	"testing"

	"go.uber.org/goleak"
)

// No goroutine of the Slack output outlives its test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
