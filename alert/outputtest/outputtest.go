// Package outputtest owns the conformance suite every alert output
// package runs (adding an output means passing it). An output's test
// builds a Target — the output wired to a peer that speaks its protocol,
// with a switch for the peer's behaviour — and calls Run, which checks:
//
//   - bookkeeping: a delivered payload carries the finding id and revision
//     (at-least-once outputs: receivers drop repeats by them);
//   - escaping: a finding whose every attacker-influenced field is hostile
//     reaches the peer with no raw control or invisible character and
//     none of the target's forbidden strings;
//   - retries: a retryable failure is classified retryable, a permanent
//     one permanent, and the shared retry loop (notify.Retry, on a virtual
//     clock) delivers once the peer recovers, exactly once;
//   - cancellation: an attempt against a hung peer returns once its
//     context ends;
//   - redaction: no error of any failure mode contains a secret of the
//     output (token, webhook URL);
//   - batching: raw events sent in one call all arrive, in at most
//     ceil(n/batch) requests when the output batches;
//   - attribution: a Sigma rule's finding reaches the peer with the rule's
//     title and author (the Detection Rule License asks for the author
//     wherever a match is shown), from its attributes, not only from the
//     summary.
//
// A mode a peer cannot produce is named with the reason in Unsupported
// and logged; every other check runs.
package outputtest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"auditwatch/alert/notify"
	"auditwatch/alert/notify/notifytest"
	"auditwatch/internal/escape"
	"auditwatch/schema"
)

// Mode is how the peer behaves.
type Mode int

// Peer modes.
const (
	Accept        Mode = iota
	FailRetryable      // 5xx, 429, broker busy, connection refused
	FailPermanent      // 4xx, invalid auth, rejected
	Hang               // accepts the connection, never answers
)

func (m Mode) String() string {
	return [...]string{"accept", "fail-retryable", "fail-permanent", "hang"}[m]
}

// Output is an alert output.
type Output interface {
	Notify(ctx context.Context, a notify.Alert) error
}

// Target is one output wired to its peer.
type Target struct {
	Output Output
	// Payloads returns what the peer accepted so far, one entry per
	// delivered alert (raw bytes as received).
	Payloads func() [][]byte
	// Decode returns the finding id and revision one payload carries.
	Decode func(p []byte) (id string, revision int, err error)
	// SetMode switches the peer's behaviour for the following requests.
	SetMode func(Mode)
	// Unsupported names the modes the peer cannot produce, and why.
	Unsupported map[Mode]string
	// Secrets are credentials configured on the output.
	Secrets []string
	// Forbidden are strings that must not appear raw in a payload of the
	// hostile finding (e.g. Slack mention syntax).
	Forbidden []string
	// LineBreaks: the output's own format has line breaks (a Slack
	// message's lines), so a raw LF is allowed; a raw CR never is.
	LineBreaks bool
	// SendEvents, when the output forwards raw events, with Events
	// returning how many events and requests the peer took, and Batch the
	// output's batch size (0: no batching bound checked).
	SendEvents func(ctx context.Context, evs []schema.Event) error
	Events     func() (events, requests int)
	Batch      int
}

// Run runs the suite against the target build makes (a fresh one per
// check).
func Run(t *testing.T, build func(t *testing.T) Target) {
	t.Run("bookkeeping", func(t *testing.T) {
		tg := build(t)
		tg.SetMode(Accept)
		a := notifytest.Alert()
		a.Finding.Revision = 3
		if err := tg.Output.Notify(context.Background(), a); err != nil {
			t.Fatal(err)
		}
		ps := waitPayloads(tg, 1)
		if len(ps) != 1 {
			t.Fatalf("peer got %d payloads for one alert", len(ps))
		}
		id, rev, err := tg.Decode(ps[0])
		if err != nil || id != a.Finding.ID || rev != 3 {
			t.Errorf("payload carries id %q revision %d (%v), want %q revision 3", id, rev, err, a.Finding.ID)
		}
	})
	t.Run("escaping", func(t *testing.T) {
		tg := build(t)
		tg.SetMode(Accept)
		a := notifytest.Alert()
		a.Finding = notifytest.HostileFinding()
		a.Finding.Summary += " bidi\u202eevil zw\u200bx\u2060 c1\u0085 bom\ufeff"
		a.Finding.Principal += "\u202e\u200f"
		if err := tg.Output.Notify(context.Background(), a); err != nil {
			t.Fatal(err)
		}
		ps := waitPayloads(tg, 1)
		if len(ps) != 1 {
			t.Fatalf("peer got %d payloads", len(ps))
		}
		CheckInert(t, ps[0], tg.Forbidden, tg.LineBreaks)
	})
	t.Run("retries", func(t *testing.T) {
		tg := build(t)
		for _, m := range []Mode{FailRetryable, FailPermanent} {
			if why, ok := tg.Unsupported[m]; ok {
				t.Logf("mode %s not produced by this peer: %s", m, why)
				continue
			}
			tg.SetMode(m)
			err := tg.Output.Notify(context.Background(), notifytest.Alert())
			d := notify.Classify(err)
			if err == nil || d.Retry != (m == FailRetryable) {
				t.Errorf("%s: err %v classified %+v", m, err, d)
			}
		}
		if why, ok := tg.Unsupported[FailRetryable]; ok {
			t.Logf("recovery not checked: %s", why)
			return
		}
		tg.SetMode(FailRetryable)
		before := len(tg.Payloads())
		clock := notifytest.NewClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
		r := notify.Retry{Backoff: notify.DefaultBackoff(), Clock: clock}
		calls := 0
		n, err := r.Do(context.Background(), func(ctx context.Context) error {
			calls++
			if calls == 3 {
				tg.SetMode(Accept)
			}
			return tg.Output.Notify(ctx, notifytest.Alert())
		}, nil)
		if err != nil || n != 3 {
			t.Fatalf("retry loop: %d attempts, %v; want success on the 3rd", n, err)
		}
		if slept, _ := clock.Slept(); slept <= 0 {
			t.Error("the retry loop did not back off")
		}
		if got := len(waitPayloads(tg, before+1)) - before; got != 1 {
			t.Errorf("after recovery the peer has %d new payloads, want 1", got)
		}
	})
	t.Run("cancellation", func(t *testing.T) {
		tg := build(t)
		if why, ok := tg.Unsupported[Hang]; ok {
			t.Logf("mode hang not produced by this peer: %s", why)
			return
		}
		tg.SetMode(Hang)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- tg.Output.Notify(ctx, notifytest.Alert()) }()
		select {
		case err := <-done:
			// A stream transport may take the bytes into its buffer
			// before the peer reads: nil is then a valid answer.
			if err != nil && !notify.Classify(err).Retry && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("hung peer: %v, want a retryable timeout", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Notify against a hung peer ignored its context")
		}
		tg.SetMode(Accept)
	})
	t.Run("redaction", func(t *testing.T) {
		tg := build(t)
		if len(tg.Secrets) == 0 {
			t.Log("the output has no credential")
			return
		}
		for _, m := range []Mode{FailRetryable, FailPermanent, Hang} {
			if _, ok := tg.Unsupported[m]; ok {
				continue
			}
			tg.SetMode(m)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			err := tg.Output.Notify(ctx, notifytest.Alert())
			cancel()
			if err == nil {
				continue
			}
			for _, s := range tg.Secrets {
				if s != "" && strings.Contains(err.Error(), s) {
					t.Errorf("%s: error shows a secret: %v", m, err)
				}
			}
		}
		tg.SetMode(Accept)
	})
	t.Run("attribution", func(t *testing.T) {
		tg := build(t)
		tg.SetMode(Accept)
		a := notifytest.Alert()
		a.Finding.Detector = "sigma"
		a.Finding.Summary = "a rule matched"
		a.Finding.Attributes = map[string]string{"rule_title": "Secret shared with an outside account",
			"rule_id": "5f0e2c1a", "author": "Jane Q Rulewriter", "license": "DRL-1.1", "techniques": "T1098"}
		if err := tg.Output.Notify(context.Background(), a); err != nil {
			t.Fatal(err)
		}
		ps := waitPayloads(tg, 1)
		if len(ps) != 1 {
			t.Fatalf("peer got %d payloads", len(ps))
		}
		for _, want := range []string{"Secret shared with an outside account", "Jane Q Rulewriter"} {
			if !bytes.Contains(ps[0], []byte(want)) {
				t.Errorf("payload lacks the rule's %q: %.600q", want, ps[0])
			}
		}
	})
	t.Run("batching", func(t *testing.T) {
		tg := build(t)
		if tg.SendEvents == nil {
			t.Log("the output forwards no raw events")
			return
		}
		tg.SetMode(Accept)
		evs := make([]schema.Event, 25)
		for i := range evs {
			evs[i] = notifytest.HostileEvent()
			evs[i].ID = "batch-" + string(rune('a'+i))
		}
		if err := tg.SendEvents(context.Background(), evs); err != nil {
			t.Fatal(err)
		}
		n, reqs := tg.Events()
		for deadline := time.Now().Add(5 * time.Second); n < len(evs) && time.Now().Before(deadline); n, reqs = tg.Events() {
			time.Sleep(5 * time.Millisecond)
		}
		if n != len(evs) {
			t.Errorf("peer got %d of %d events", n, len(evs))
		}
		if tg.Batch > 0 && reqs > (len(evs)+tg.Batch-1)/tg.Batch {
			t.Errorf("%d events took %d requests with batch size %d", len(evs), reqs, tg.Batch)
		}
	})
}

// waitPayloads returns the peer's payloads once it holds n (a stream
// peer reads after the output's write returned), or after 5 s; a little
// longer, so that one too many would show.
func waitPayloads(tg Target, n int) [][]byte {
	deadline := time.Now().Add(5 * time.Second)
	for len(tg.Payloads()) < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	return tg.Payloads()
}

// CheckInert fails t when payload holds a raw control character (other
// than a final line break, or any LF when lineBreaks is set), a raw
// invisible character, or one of the forbidden strings.
func CheckInert(t *testing.T, payload []byte, forbidden []string, lineBreaks bool) {
	t.Helper()
	body := strings.TrimRight(string(payload), "\n")
	for i := 0; i < len(body); {
		r, n := utf8.DecodeRuneInString(body[i:])
		if r == utf8.RuneError && n == 1 {
			t.Errorf("invalid UTF-8 at byte %d: %.80q", i, body[i:])
			return
		}
		if escape.Invisible(r) && !(lineBreaks && r == '\n') {
			t.Errorf("raw %U at byte %d: %.80q", r, i, body[max(i-20, 0):])
			return
		}
		i += n
	}
	for _, f := range forbidden {
		if strings.Contains(body, f) {
			t.Errorf("payload holds %q raw", f)
		}
	}
}
