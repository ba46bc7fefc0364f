package pipeline

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"auditwatch/internal/escape"
	"auditwatch/schema"
)

// Console is a FindingSink printing one readable line per finding for a
// person watching a terminal. Every field taken from a log is escaped
// (internal/escape, terminal context), so a hostile principal name or user agent cannot move the
// cursor, retitle the window or forge lines.
type Console struct {
	mu sync.Mutex
	w  io.Writer
}

// NewConsole returns a Console writing to w.
func NewConsole(w io.Writer) *Console { return &Console{w: w} }

// WriteFindings prints fs; an error means w failed.
func (c *Console) WriteFindings(_ context.Context, fs []schema.Finding) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for i := range fs {
		b.Reset()
		FormatFinding(&b, &fs[i])
		b.WriteByte('\n')
		if _, err := io.WriteString(c.w, b.String()); err != nil {
			return fmt.Errorf("console: %w", err)
		}
	}
	return nil
}

// FormatFinding writes f as one line: event time, severity, detector, who
// and from where, the summary, and for an update of an incident its
// revision and running count.
func FormatFinding(b *strings.Builder, f *schema.Finding) {
	b.WriteString(f.Time.UTC().Format("2006-01-02 15:04:05Z"))
	fmt.Fprintf(b, "  %-8s %-20s ", strings.ToUpper(string(f.Severity)), f.Detector)
	who := f.PrincipalName
	if who == "" {
		who = f.Principal
	}
	if who == "" {
		who = "(anonymous)"
	}
	b.WriteString(escape.String(escape.Terminal, who))
	if f.SourceIP != "" {
		b.WriteString(" from ")
		b.WriteString(escape.String(escape.Terminal, f.SourceIP))
	}
	b.WriteString(": ")
	b.WriteString(escape.String(escape.Terminal, f.Summary))
	if f.Revision > 0 {
		fmt.Fprintf(b, " [update %d, %d events]", f.Revision, f.Count)
	}
	if f.Late {
		b.WriteString(" [late]")
	}
}
