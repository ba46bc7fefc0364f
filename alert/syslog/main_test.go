package syslog

import (
	"testing"

	"go.uber.org/goleak"
)

// No goroutine of the syslog output (nor rsyslogd's reaper) outlives its test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
