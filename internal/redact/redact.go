// Package redact owns keeping the pipeline's own secrets out of every log,
// error, dead letter and metric: one layer every HTTP client's errors and
// every log line pass through.
//
//   - Known values: every secret the pipeline reads (internal/secret calls
//     Register) is replaced wherever it appears, whatever carries it.
//   - URLs: user info, query values and token-like path segments are
//     replaced (a Slack incoming-webhook URL is a credential: its path is
//     the secret).
//   - Credentials by shape: Authorization/"Bearer"/"Splunk" header values,
//     Slack tokens (xox…), and key=value pairs whose key names a secret.
//
// String applies all three; Error wraps an error so its text is redacted;
// Header redacts a header set; Handler wraps a slog.Handler so every
// message and attribute is redacted before it is written.
package redact

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// Mask replaces what is redacted.
const Mask = "REDACTED"

// minRegistered is the shortest value Register keeps: shorter ones would
// mask ordinary words.
const minRegistered = 6

var (
	mu     sync.RWMutex
	values []string // longest first
)

// Register adds secret values to replace wherever they appear. The
// pipeline's secret loader calls it for every value it reads.
func Register(vs ...string) {
	mu.Lock()
	defer mu.Unlock()
	for _, v := range vs {
		v = strings.TrimSpace(v)
		if len(v) < minRegistered || slices.Contains(values, v) {
			continue
		}
		values = append(values, v)
		// a URL secret is also matched in its escaped and unescaped forms
		if u, err := url.PathUnescape(v); err == nil && u != v && len(u) >= minRegistered {
			values = append(values, u)
		}
	}
	slices.SortFunc(values, func(a, b string) int { return len(b) - len(a) })
}

var (
	urlRE = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>` + "`" + `]+`)
	// Authorization schemes followed by a credential.
	authRE = regexp.MustCompile(`(?i)\b(bearer|splunk|basic|token)(\s+)[A-Za-z0-9._~+/=:-]{6,}`)
	// Slack tokens and similar prefixed credentials.
	tokenRE = regexp.MustCompile(`\bxox[abposr]-[A-Za-z0-9-]{6,}|\bxapp-[A-Za-z0-9-]{6,}`)
	// key=value or "key": "value" where the key names a secret.
	kvRE = regexp.MustCompile(`(?i)(\b(?:token|secret|password|passwd|api[_-]?key|access[_-]?key|authorization|signature|sig|credential)s?["']?\s*[:=]\s*["']?)([^\s"'&,;]{4,})`)
)

// String returns s with every registered secret, URL credential and
// credential-shaped value replaced by REDACTED.
func String(s string) string {
	s = knownAndURLs(s)
	s = authRE.ReplaceAllString(s, "${1}${2}"+Mask)
	s = tokenRE.ReplaceAllString(s, Mask)
	s = kvRE.ReplaceAllString(s, "${1}"+Mask)
	return s
}

// knownAndURLs replaces registered secrets and URL credentials only: what
// Writer applies to a command's stderr, whose help and messages use words
// like "token" in prose.
func knownAndURLs(s string) string {
	mu.RLock()
	for _, v := range values {
		if strings.Contains(s, v) {
			s = strings.ReplaceAll(s, v, Mask)
		}
	}
	mu.RUnlock()
	if strings.Contains(s, "://") {
		s = urlRE.ReplaceAllStringFunc(s, URL)
	}
	return s
}

// URL returns raw with its user info, query values, fragment and
// token-like path segments replaced. Text that does not parse as a URL is
// returned with only its query string cut.
func URL(raw string) string {
	trail := ""
	// a URL quoted in an error message ends before a closing quote or colon
	for strings.HasSuffix(raw, ":") || strings.HasSuffix(raw, ")") || strings.HasSuffix(raw, ".") || strings.HasSuffix(raw, ",") {
		trail = raw[len(raw)-1:] + trail
		raw = raw[:len(raw)-1]
	}
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.IndexAny(raw, "?#"); i >= 0 {
			return raw[:i] + "?" + Mask + trail
		}
		return raw + trail
	}
	if u.User != nil {
		u.User = url.User(Mask)
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{Mask}
		}
		u.RawQuery = q.Encode()
	}
	if u.Fragment != "" {
		u.Fragment = Mask
	}
	if u.Path != "" {
		segs := strings.Split(u.Path, "/")
		webhook := strings.HasSuffix(strings.ToLower(u.Hostname()), "hooks.slack.com")
		for i, s := range segs {
			if webhook && i >= 2 || tokenLike(s) {
				segs[i] = Mask
			}
		}
		u.Path = strings.Join(segs, "/")
		u.RawPath = ""
	}
	out := u.String()
	// url.String escapes nothing in REDACTED; keep the mask readable
	out = strings.ReplaceAll(out, "%20", " ")
	return out + trail
}

// URLParts returns the parts of a URL that carry a credential, for
// Register when the URL comes from the config: its query (whole, and each
// value), its user info, and its path when the path is one (a Slack
// incoming webhook's) or has a token-like segment. An output registers
// them so that they are masked even where they appear without the URL
// around them (a server echoing its request line back).
func URLParts(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil {
		return nil
	}
	var out []string
	if u.RawQuery != "" {
		out = append(out, u.RawQuery)
		for _, vs := range u.Query() {
			out = append(out, vs...)
		}
	}
	if u.User != nil {
		out = append(out, u.User.String())
		if p, ok := u.User.Password(); ok {
			out = append(out, p)
		}
	}
	secretPath := strings.HasSuffix(strings.ToLower(u.Hostname()), "hooks.slack.com") || strings.Contains(u.Path, "/services/")
	for _, seg := range strings.Split(u.Path, "/") {
		if tokenLike(seg) {
			out = append(out, seg)
			secretPath = true
		}
	}
	if secretPath && len(u.Path) >= 8 {
		out = append(out, u.Path, strings.TrimPrefix(u.Path, "/"))
	}
	return out
}

// tokenLike: a path segment of 16 or more characters mixing letters and
// digits (a webhook id or token), as opposed to words and short ids.
func tokenLike(s string) bool {
	if len(s) < 16 {
		return false
	}
	var letters, digits bool
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits = true
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
			letters = true
		case r == '-' || r == '_' || r == '.' || r == '~' || r == '=' || r == '+':
		default:
			return false
		}
	}
	return letters && digits
}

// sensitiveHeaders are redacted whole.
var sensitiveHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Api-Key", "X-Auth-Token", "X-Splunk-Token"}

// Header returns a copy of h with credential headers (Authorization,
// cookies, any header whose name contains token, secret, key or auth)
// replaced.
func Header(h http.Header) http.Header {
	out := h.Clone()
	for k, vs := range out {
		lk := strings.ToLower(k)
		sensitive := slices.ContainsFunc(sensitiveHeaders, func(s string) bool { return strings.EqualFold(s, k) }) ||
			strings.Contains(lk, "token") || strings.Contains(lk, "secret") || strings.Contains(lk, "key") || strings.Contains(lk, "auth")
		for i := range vs {
			if sensitive {
				vs[i] = Mask
			} else {
				vs[i] = String(vs[i])
			}
		}
	}
	return out
}

// Error wraps err so that its text is redacted; errors.Is and errors.As
// still see the original chain. A nil err stays nil.
func Error(err error) error {
	if err == nil {
		return nil
	}
	var r *redacted
	if errors.As(err, &r) && r == err {
		return err
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// net/http puts the request URL in its errors
		ue.URL = URL(ue.URL)
	}
	return &redacted{err: err}
}

type redacted struct{ err error }

func (r *redacted) Error() string { return String(r.err.Error()) }
func (r *redacted) Unwrap() error { return r.err }

// Handler wraps h so every message and string attribute (errors, values
// formatted with %v, grouped attributes) is redacted before h writes it.
func Handler(h slog.Handler) slog.Handler { return &handler{h: h} }

type handler struct{ h slog.Handler }

func (x *handler) Enabled(ctx context.Context, l slog.Level) bool { return x.h.Enabled(ctx, l) }

func (x *handler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, String(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(attr(a))
		return true
	})
	return x.h.Handle(ctx, out)
}

func (x *handler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = attr(a)
	}
	return &handler{h: x.h.WithAttrs(red)}
}

func (x *handler) WithGroup(name string) slog.Handler { return &handler{h: x.h.WithGroup(name)} }

func attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, String(v.String()))
	case slog.KindGroup:
		gs := v.Group()
		red := make([]any, len(gs))
		for i, g := range gs {
			red[i] = attr(g)
		}
		return slog.Group(a.Key, red...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, String(x.Error()))
		case interface{ String() string }:
			return slog.String(a.Key, String(x.String()))
		case []byte:
			return slog.String(a.Key, String(string(x)))
		}
		return slog.String(a.Key, String(fmt.Sprint(v.Any())))
	}
	return slog.Attr{Key: a.Key, Value: v}
}
