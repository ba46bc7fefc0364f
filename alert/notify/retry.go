package notify

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"auditwatch/config/duration"
)

// Clock is the time source of the retry loop and of rate limiters. Tests
// inject a clock whose Sleep advances virtual time so that minutes of
// outage run in milliseconds through the same code path.
type Clock interface {
	Now() time.Time
	// Sleep waits d or until ctx ends (returning ctx.Err()).
	Sleep(ctx context.Context, d time.Duration) error
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// Sleep waits d or until ctx ends.
func (RealClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Backoff configures the retry loop.
type Backoff struct {
	// Initial is the first wait; each later wait is Multiplier times the
	// previous, capped at Max.
	Initial    duration.Duration `yaml:"initial"`
	Max        duration.Duration `yaml:"max"`
	Multiplier float64           `yaml:"multiplier"`
	// Jitter is the fraction (0..1) of each wait that is randomised:
	// the wait is drawn uniformly from [w*(1-Jitter), w].
	Jitter float64 `yaml:"jitter"`
	// MaxAttempts bounds the attempts (the first included); 0 means no bound.
	MaxAttempts int `yaml:"max_attempts"`
	// MaxElapsed bounds the time spent retrying; 0 means no bound.
	MaxElapsed duration.Duration `yaml:"max_elapsed"`
	// MaxRetryAfter caps how long a server's Retry-After may hold us.
	MaxRetryAfter duration.Duration `yaml:"max_retry_after"`
	// AttemptTimeout bounds one attempt.
	AttemptTimeout duration.Duration `yaml:"attempt_timeout"`
}

// DefaultBackoff is the retry policy outputs start from.
func DefaultBackoff() Backoff {
	return Backoff{
		Initial:        duration.Duration(500 * time.Millisecond),
		Max:            duration.Duration(30 * time.Second),
		Multiplier:     2,
		Jitter:         0.2,
		MaxAttempts:    12,
		MaxElapsed:     duration.Duration(10 * time.Minute),
		MaxRetryAfter:  duration.Duration(5 * time.Minute),
		AttemptTimeout: duration.Duration(15 * time.Second),
	}
}

// Validate reports every bad field, each prefixed by path.
func (b Backoff) Validate(path string) error {
	var errs []error
	if b.Initial <= 0 {
		errs = append(errs, fmt.Errorf("%s.initial: must be positive, got %s", path, b.Initial))
	}
	if b.Max < b.Initial {
		errs = append(errs, fmt.Errorf("%s.max: must be at least initial (%s), got %s", path, b.Initial, b.Max))
	}
	if b.Multiplier < 1 {
		errs = append(errs, fmt.Errorf("%s.multiplier: must be at least 1, got %g", path, b.Multiplier))
	}
	if b.Jitter < 0 || b.Jitter > 1 {
		errs = append(errs, fmt.Errorf("%s.jitter: must be within 0..1, got %g", path, b.Jitter))
	}
	if b.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("%s.max_attempts: must not be negative, got %d", path, b.MaxAttempts))
	}
	if b.MaxElapsed < 0 {
		errs = append(errs, fmt.Errorf("%s.max_elapsed: must not be negative, got %s", path, b.MaxElapsed))
	}
	if b.MaxAttempts == 0 && b.MaxElapsed == 0 {
		errs = append(errs, fmt.Errorf("%s: one of max_attempts and max_elapsed must bound the retries", path))
	}
	if b.MaxRetryAfter < 0 {
		errs = append(errs, fmt.Errorf("%s.max_retry_after: must not be negative, got %s", path, b.MaxRetryAfter))
	}
	if b.AttemptTimeout <= 0 {
		errs = append(errs, fmt.Errorf("%s.attempt_timeout: must be positive, got %s", path, b.AttemptTimeout))
	}
	return errors.Join(errs...)
}

// ErrExhausted is wrapped by Retry's error when retries ran out.
var ErrExhausted = errors.New("retries exhausted")

// Attempt is reported to Retry's observer after every failed attempt.
type Attempt struct {
	N        int
	Err      error
	Decision Decision
	Wait     time.Duration // the wait before the next attempt; 0 when none follows
}

// Retry is the one retry loop every output goes through.
type Retry struct {
	Backoff Backoff
	Clock   Clock
	// Rand returns a float in [0,1); nil uses math/rand/v2.
	Rand func() float64
}

// Do calls fn until it succeeds, fails permanently, or the policy runs out.
// Each attempt gets its own AttemptTimeout. onFail (may be nil) sees every
// failed attempt. The returned error wraps the last attempt's error and,
// when retries ran out, ErrExhausted.
func (r Retry) Do(ctx context.Context, fn func(ctx context.Context) error, onFail func(Attempt)) (attempts int, err error) {
	clock := r.Clock
	if clock == nil {
		clock = RealClock{}
	}
	rnd := r.Rand
	if rnd == nil {
		rnd = rand.Float64
	}
	b := r.Backoff
	maxWait, maxElapsed, maxRetryAfter := b.Max.D(), b.MaxElapsed.D(), b.MaxRetryAfter.D()
	start := clock.Now()
	wait := b.Initial.D()
	for n := 1; ; n++ {
		actx, cancel := context.WithTimeout(ctx, b.AttemptTimeout.D())
		err = fn(actx)
		cancel()
		if err == nil {
			return n, nil
		}
		d := Classify(err)
		if ctx.Err() != nil {
			// The caller gave up: not the peer's fault, not a timeout.
			d = Decision{Reason: ReasonCanceled}
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		a := Attempt{N: n, Err: err, Decision: d}
		if !d.Retry {
			if onFail != nil {
				onFail(a)
			}
			return n, err
		}
		next := wait
		if b.Jitter > 0 {
			next = time.Duration(float64(wait) * (1 - b.Jitter*rnd()))
		}
		if d.RetryAfter > 0 {
			ra := d.RetryAfter
			if maxRetryAfter > 0 && ra > maxRetryAfter {
				ra = maxRetryAfter
			}
			if ra > next {
				next = ra
			}
		}
		out := (b.MaxAttempts > 0 && n >= b.MaxAttempts) ||
			(maxElapsed > 0 && clock.Now().Add(next).Sub(start) > maxElapsed)
		if out {
			if onFail != nil {
				onFail(a)
			}
			return n, fmt.Errorf("%w after %d attempts: %w", ErrExhausted, n, err)
		}
		a.Wait = next
		if onFail != nil {
			onFail(a)
		}
		if serr := clock.Sleep(ctx, next); serr != nil {
			return n, fmt.Errorf("%w (%w)", err, serr)
		}
		wait = time.Duration(float64(wait) * b.Multiplier)
		if wait > maxWait {
			wait = maxWait
		}
	}
}
