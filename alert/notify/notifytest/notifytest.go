// Package notifytest owns the test doubles the alert outputs share: a
// virtual clock whose Sleep advances time instantly, and the rule for
// integration tests whose real peer is missing.
package notifytest

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"
)

// Clock is a virtual clock: Sleep advances Now by d and returns at once, so
// minutes of backoff run in microseconds through the production code path.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	slept  time.Duration
	sleeps int
}

// NewClock starts a virtual clock at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the virtual time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Sleep advances the virtual time by d.
func (c *Clock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	if d > 0 {
		c.now = c.now.Add(d)
		c.slept += d
	}
	c.sleeps++
	c.mu.Unlock()
	return nil
}

// Advance moves the virtual time forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Slept reports the total virtual time slept and the number of sleeps.
func (c *Clock) Slept() (time.Duration, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slept, c.sleeps
}

// RequireIntegration reports whether AUDITWATCH_REQUIRE_INTEGRATION is set.
func RequireIntegration() bool { return os.Getenv("AUDITWATCH_REQUIRE_INTEGRATION") != "" }

// MissingPeer fails the test when integration tests are required and skips
// it with the reason otherwise.
func MissingPeer(t testing.TB, format string, args ...any) {
	t.Helper()
	if RequireIntegration() {
		t.Fatalf("integration peer missing (AUDITWATCH_REQUIRE_INTEGRATION is set): "+format, args...)
	}
	t.Skipf("integration peer missing (set AUDITWATCH_REQUIRE_INTEGRATION=1 to make this fail): "+format, args...)
}
