package notify

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"
)

// Sentinel errors outputs wrap.
var (
	// ErrPermanent marks a failure that retrying cannot fix (a 4xx, a
	// rejected token, an unencodable payload).
	ErrPermanent = errors.New("permanent delivery failure")
	// ErrRetryable marks a failure worth retrying (a timeout, a 5xx, a
	// throttle).
	ErrRetryable = errors.New("retryable delivery failure")
)

// Reason is a bounded metric label describing why a delivery failed.
type Reason string

// Reasons returned by Classify. The set is closed: metric labels stay bounded.
const (
	ReasonTimeout     Reason = "timeout"
	ReasonNetwork     Reason = "network"
	ReasonThrottled   Reason = "throttled"   // 429 or a provider's rate-limit error
	ReasonServer      Reason = "server"      // 5xx or a provider's internal error
	ReasonAuth        Reason = "auth"        // 401/403 or a rejected token
	ReasonRejected    Reason = "rejected"    // any other 4xx or a provider's permanent error
	ReasonEncode      Reason = "encode"      // the payload could not be built
	ReasonTLS         Reason = "tls"         // certificate verification failed
	ReasonCanceled    Reason = "canceled"    // the caller's context ended
	ReasonUnavailable Reason = "unavailable" // a retryable error not otherwise named
	ReasonOther       Reason = "other"       // a permanent error not otherwise named
)

// StatusError is an HTTP-style failure: a status code, the server's
// Retry-After when it sent one, and a short description. Outputs that speak
// other protocols map their errors onto it (Slack's {"ok":false} errors,
// Kafka's error codes).
type StatusError struct {
	Code       int
	RetryAfter time.Duration
	// Reason overrides the classification derived from Code when set.
	Reason Reason
	// Retry overrides the retry decision derived from Code when non-nil.
	Retry *bool
	Msg   string
}

func (e *StatusError) Error() string {
	s := "status " + strconv.Itoa(e.Code)
	if e.Code == 0 {
		s = "error"
	}
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	return s
}

// Permanent wraps err so that Classify treats it as permanent with reason.
func Permanent(reason Reason, err error) error {
	return &classified{reason: reason, retry: false, err: err}
}

// Retryable wraps err so that Classify treats it as retryable with reason
// and waits at least after (when positive) before the next attempt.
func Retryable(reason Reason, after time.Duration, err error) error {
	return &classified{reason: reason, retry: true, after: after, err: err}
}

type classified struct {
	reason Reason
	retry  bool
	after  time.Duration
	err    error
}

func (c *classified) Error() string { return c.err.Error() }
func (c *classified) Unwrap() []error {
	if c.retry {
		return []error{c.err, ErrRetryable}
	}
	return []error{c.err, ErrPermanent}
}

// FromHTTP builds the StatusError for a non-2xx response, reading
// Retry-After (seconds or an HTTP date, relative to now) and up to 512
// bytes of the body. It returns nil for a 2xx.
func FromHTTP(resp *http.Response, now time.Time) error {
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return &StatusError{
		Code:       resp.StatusCode,
		RetryAfter: ParseRetryAfter(resp.Header.Get("Retry-After"), now),
		Msg:        http.StatusText(resp.StatusCode) + bodySuffix(body),
	}
}

func bodySuffix(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return " (" + SanitizeLine(string(b), 200) + ")"
}

// ParseRetryAfter reads a Retry-After header value: delay seconds or an
// HTTP date. Bad or past values give 0.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > 24*3600 {
			n = 24 * 3600
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// Decision is the classifier's verdict on one failed attempt.
type Decision struct {
	Retry      bool
	Reason     Reason
	RetryAfter time.Duration
}

// Classify is the one status classifier every output shares: timeouts,
// network errors, 5xx and 429 are retryable (429 and 503 honour
// Retry-After); other 4xx, TLS verification failures and encoding errors
// are permanent. A cancelled caller context is reported as ReasonCanceled
// and not retried.
func Classify(err error) Decision {
	if err == nil {
		return Decision{}
	}
	var c *classified
	if errors.As(err, &c) {
		return Decision{Retry: c.retry, Reason: c.reason, RetryAfter: c.after}
	}
	var se *StatusError
	if errors.As(err, &se) {
		d := classifyCode(se.Code)
		if se.Reason != "" {
			d.Reason = se.Reason
		}
		if se.Retry != nil {
			d.Retry = *se.Retry
		}
		d.RetryAfter = se.RetryAfter
		return d
	}
	if errors.Is(err, context.Canceled) {
		return Decision{Reason: ReasonCanceled}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ETIMEDOUT) {
		return Decision{Retry: true, Reason: ReasonTimeout}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return Decision{Retry: true, Reason: ReasonTimeout}
	}
	var ue x509.UnknownAuthorityError
	var he x509.HostnameError
	var ce x509.CertificateInvalidError
	if errors.As(err, &ue) || errors.As(err, &he) || errors.As(err, &ce) {
		return Decision{Reason: ReasonTLS}
	}
	if errors.Is(err, ErrPermanent) {
		return Decision{Reason: ReasonOther}
	}
	if errors.Is(err, ErrRetryable) {
		return Decision{Retry: true, Reason: ReasonUnavailable}
	}
	var oe *net.OpError
	if errors.As(err, &oe) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.EPIPE) {
		return Decision{Retry: true, Reason: ReasonNetwork}
	}
	// Unknown errors are retried: dropping an alert on an unfamiliar
	// transport error is worse than a bounded number of extra attempts.
	return Decision{Retry: true, Reason: ReasonUnavailable}
}

func classifyCode(code int) Decision {
	switch {
	case code == http.StatusTooManyRequests:
		return Decision{Retry: true, Reason: ReasonThrottled}
	case code == http.StatusRequestTimeout:
		return Decision{Retry: true, Reason: ReasonTimeout}
	case code >= 500:
		return Decision{Retry: true, Reason: ReasonServer}
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return Decision{Reason: ReasonAuth}
	case code >= 400:
		return Decision{Reason: ReasonRejected}
	case code == 0:
		return Decision{Retry: true, Reason: ReasonUnavailable}
	}
	return Decision{Reason: ReasonOther}
}
