package notify

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"auditwatch/config/duration"
	"auditwatch/schema"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		retry  bool
		reason Reason
		after  time.Duration
	}{
		{"429", &StatusError{Code: 429, RetryAfter: 7 * time.Second}, true, ReasonThrottled, 7 * time.Second},
		{"500", &StatusError{Code: 500}, true, ReasonServer, 0},
		{"502 wrapped", fmt.Errorf("post: %w", &StatusError{Code: 502}), true, ReasonServer, 0},
		{"503 retry-after", &StatusError{Code: 503, RetryAfter: time.Minute}, true, ReasonServer, time.Minute},
		{"408", &StatusError{Code: 408}, true, ReasonTimeout, 0},
		{"400", &StatusError{Code: 400}, false, ReasonRejected, 0},
		{"401", &StatusError{Code: 401}, false, ReasonAuth, 0},
		{"403", &StatusError{Code: 403}, false, ReasonAuth, 0},
		{"404", &StatusError{Code: 404}, false, ReasonRejected, 0},
		{"413", &StatusError{Code: 413}, false, ReasonRejected, 0},
		{"deadline", context.DeadlineExceeded, true, ReasonTimeout, 0},
		{"net timeout", &net.OpError{Op: "dial", Err: timeoutErr{}}, true, ReasonTimeout, 0},
		{"refused", fmt.Errorf("dial: %w", syscall.ECONNREFUSED), true, ReasonNetwork, 0},
		{"reset", &net.OpError{Op: "read", Err: syscall.ECONNRESET}, true, ReasonNetwork, 0},
		{"eof", io.ErrUnexpectedEOF, true, ReasonNetwork, 0},
		{"canceled", context.Canceled, false, ReasonCanceled, 0},
		{"tls", fmt.Errorf("x: %w", x509.UnknownAuthorityError{}), false, ReasonTLS, 0},
		{"permanent", Permanent(ReasonEncode, errors.New("x")), false, ReasonEncode, 0},
		{"retryable", Retryable(ReasonThrottled, time.Second, errors.New("x")), true, ReasonThrottled, time.Second},
		{"unknown", errors.New("mystery"), true, ReasonUnavailable, 0},
		{"override", &StatusError{Code: 400, Retry: ptr(true), Reason: ReasonServer}, true, ReasonServer, 0},
	}
	for _, tt := range tests {
		d := Classify(tt.err)
		if d.Retry != tt.retry || d.Reason != tt.reason || d.RetryAfter != tt.after {
			t.Errorf("%s: Classify(%v) = %+v, want retry=%v reason=%s after=%s", tt.name, tt.err, d, tt.retry, tt.reason, tt.after)
		}
	}
	if !errors.Is(Permanent(ReasonAuth, io.EOF), io.EOF) || !errors.Is(Permanent(ReasonAuth, io.EOF), ErrPermanent) {
		t.Error("Permanent does not wrap its error and ErrPermanent")
	}
}

func ptr[T any](v T) *T { return &v }

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"": 0, "5": 5 * time.Second, "0": 0, "-3": 0, "soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):     0,
		"99999999": 24 * time.Hour,
	} {
		if got := ParseRetryAfter(in, now); got != want {
			t.Errorf("ParseRetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}

type fakeClock struct {
	now   time.Time
	waits []time.Duration
}

func (c *fakeClock) Now() time.Time { return c.now }
func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.waits = append(c.waits, d)
	c.now = c.now.Add(d)
	return ctx.Err()
}

func TestRetryBackoffJitterAndRetryAfter(t *testing.T) {
	b := Backoff{Initial: duration.Duration(time.Second), Max: duration.Duration(8 * time.Second), Multiplier: 2, Jitter: 0.5, MaxAttempts: 7, AttemptTimeout: duration.Duration(time.Second), MaxRetryAfter: duration.Duration(20 * time.Second)}
	clock := &fakeClock{now: time.Unix(0, 0)}
	r := Retry{Backoff: b, Clock: clock, Rand: func() float64 { return 1 }} // maximal jitter: half of each wait
	errs := []error{&StatusError{Code: 500}, &StatusError{Code: 500}, &StatusError{Code: 429, RetryAfter: 10 * time.Second},
		&StatusError{Code: 503}, &StatusError{Code: 429, RetryAfter: time.Hour}, &StatusError{Code: 500}}
	var observed []Attempt
	n, err := r.Do(context.Background(), func(context.Context) error {
		if len(errs) == 0 {
			return nil
		}
		e := errs[0]
		errs = errs[1:]
		return e
	}, func(a Attempt) { observed = append(observed, a) })
	if err != nil || n != 7 {
		t.Fatalf("Do = %d, %v", n, err)
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 10 * time.Second, 4 * time.Second, 20 * time.Second, 4 * time.Second}
	if fmt.Sprint(clock.waits) != fmt.Sprint(want) {
		t.Errorf("waits = %v, want %v (jittered backoff, Retry-After honoured and capped)", clock.waits, want)
	}
	if len(observed) != 6 || observed[2].Decision.Reason != ReasonThrottled {
		t.Errorf("observer saw %+v", observed)
	}
	// Jitter keeps waits within [w*(1-j), w].
	r.Rand = nil
	for range 100 {
		clock.waits = nil
		errs = []error{&StatusError{Code: 500}}
		_, _ = r.Do(context.Background(), func(context.Context) error {
			if len(errs) == 0 {
				return nil
			}
			errs = errs[1:]
			return &StatusError{Code: 500}
		}, nil)
		if w := clock.waits[0]; w < 500*time.Millisecond || w > time.Second {
			t.Fatalf("jittered wait %s outside [0.5s, 1s]", w)
		}
	}
}

func TestRetryStops(t *testing.T) {
	clock := &fakeClock{now: time.Unix(0, 0)}
	b := Backoff{Initial: duration.Duration(time.Second), Max: duration.Duration(time.Minute), Multiplier: 2, MaxAttempts: 4, AttemptTimeout: duration.Duration(time.Second)}
	calls := 0
	n, err := Retry{Backoff: b, Clock: clock}.Do(context.Background(), func(context.Context) error { calls++; return &StatusError{Code: 503} }, nil)
	if n != 4 || calls != 4 || !errors.Is(err, ErrExhausted) || Classify(err).Reason != ReasonServer {
		t.Errorf("max attempts: n=%d calls=%d err=%v", n, calls, err)
	}
	calls = 0
	n, err = Retry{Backoff: b, Clock: clock}.Do(context.Background(), func(context.Context) error { calls++; return &StatusError{Code: 404} }, nil)
	if n != 1 || errors.Is(err, ErrExhausted) {
		t.Errorf("permanent error retried: n=%d err=%v", n, err)
	}
	b.MaxAttempts, b.MaxElapsed = 0, duration.Duration(10*time.Second)
	clock.waits = nil
	n, err = Retry{Backoff: b, Clock: clock}.Do(context.Background(), func(context.Context) error { return &StatusError{Code: 500} }, nil)
	if !errors.Is(err, ErrExhausted) || n != 4 { // waits 1+2+4 = 7s; the next (8s) would pass 10s
		t.Errorf("max elapsed: n=%d waits=%v err=%v", n, clock.waits, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Retry{Backoff: b, Clock: clock}.Do(ctx, func(ctx context.Context) error { return ctx.Err() }, nil)
	if Classify(err).Reason != ReasonCanceled {
		t.Errorf("cancelled: %v -> %+v", err, Classify(err))
	}
}

func TestBackoffValidate(t *testing.T) {
	err := Backoff{Multiplier: 0.5, Jitter: 3, MaxAttempts: -1}.Validate("alerts.retry")
	for _, want := range []string{"alerts.retry.initial", "alerts.retry.multiplier", "alerts.retry.jitter", "alerts.retry.max_attempts", "alerts.retry.attempt_timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error lacks %s: %v", want, err)
		}
	}
	if err := DefaultBackoff().Validate("r"); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
}

func TestTruncateAndBound(t *testing.T) {
	s := strings.Repeat("é", 100) // 200 bytes
	for _, max := range []int{1, 3, 4, 5, 50, 199, 200} {
		got := Truncate(s, max)
		if len(got) > max && max >= len(Ellipsis) || !utf8.ValidString(got) {
			t.Errorf("Truncate(%d) = %d bytes, valid=%v", max, len(got), utf8.ValidString(got))
		}
	}
	if Truncate("abc", 10) != "abc" {
		t.Error("short string changed")
	}
	f := schema.Finding{Principal: strings.Repeat("p", 5000), EventIDs: make([]string, 50), Attributes: map[string]string{}}
	for i := range 40 {
		f.Attributes[fmt.Sprint("k", i)] = strings.Repeat("v", 3000)
	}
	b := BoundFinding(f, 100, 10, 5)
	if len(b.Principal) > 100 || len(b.EventIDs) != 10 || len(b.Attributes) != 5 || len(f.EventIDs) != 50 || len(f.Attributes) != 40 {
		t.Errorf("BoundFinding: principal %d ids %d attrs %d (input ids %d attrs %d)", len(b.Principal), len(b.EventIDs), len(b.Attributes), len(f.EventIDs), len(f.Attributes))
	}
	if got := SanitizeLine("a\x00b\r\nc\x7f\xff", 100); got != "a␀b␍␊c␡\uFFFD" {
		t.Errorf("SanitizeLine = %q", got)
	}
}
