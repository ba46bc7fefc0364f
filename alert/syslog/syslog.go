// Package syslog owns the syslog output: RFC 5424 messages with RFC 6587
// octet-counting framing over TCP or TLS (RFC 5425), with a CEF or JSON
// body, for findings and for raw events. CEF header fields escape \ and |,
// extension values \ and =, and CR/LF are escaped as \r and \n everywhere,
// so an attacker-controlled value can neither add CEF fields nor split a
// record.
//
// TCP syslog has no application acknowledgement: a message counts as
// delivered once the kernel accepted the write. A write error closes the
// connection and the next attempt redials.
package syslog

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"auditwatch/alert/notify"
	"auditwatch/schema"
)

// SDID is the structured-data element auditwatch writes (32473 is the
// example enterprise number of RFC 5612, as auditwatch has no number).
const SDID = "auditwatch@32473"

// ErrTooLarge is returned when an alert cannot fit MaxMessageBytes even
// with its fields shortened.
var ErrTooLarge = errors.New("syslog message too large")

// Notifier writes to one syslog receiver. Safe for concurrent use.
type Notifier struct {
	cfg  Config
	log  *slog.Logger
	tls  *tls.Config
	host string
	pid  string

	mu   sync.Mutex
	conn net.Conn
}

// New builds the output; it connects lazily on the first message.
func New(cfg Config, logger *slog.Logger) (*Notifier, error) {
	cfg.SetDefaults()
	if err := cfg.Validate("syslog"); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{cfg: cfg, log: logger, host: cfg.Hostname, pid: strconv.Itoa(os.Getpid())}
	if n.host == "" {
		n.host, _ = os.Hostname()
	}
	if cfg.TLS != nil {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.TLS.ServerName}
		if tc.ServerName == "" {
			tc.ServerName, _, _ = net.SplitHostPort(cfg.Address)
		}
		if cfg.TLS.CAFile != "" {
			pem, err := os.ReadFile(cfg.TLS.CAFile)
			if err != nil {
				return nil, fmt.Errorf("syslog tls ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("syslog tls ca_file %s: no PEM certificates", cfg.TLS.CAFile)
			}
			tc.RootCAs = pool
		}
		if cfg.TLS.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("syslog tls client certificate: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		n.tls = tc
	}
	return n, nil
}

// syslog severities of finding severities.
func syslogSeverity(s schema.Severity) int {
	switch s {
	case schema.SeverityCritical:
		return 2
	case schema.SeverityHigh:
		return 3
	case schema.SeverityMedium:
		return 4
	case schema.SeverityLow:
		return 5
	}
	return 6
}

// EncodeFinding returns the framed message for a.
func (n *Notifier) EncodeFinding(a notify.Alert) ([]byte, error) {
	for limit := 4096; limit >= 16; limit /= 2 {
		b, err := n.encodeFinding(a)
		if err != nil {
			return nil, err
		}
		if len(b) <= n.cfg.MaxMessageBytes {
			return AppendFrame(nil, b), nil
		}
		a.Finding = notify.BoundFinding(a.Finding, limit, 10, 16)
	}
	return nil, notify.Permanent(notify.ReasonEncode, fmt.Errorf("%w: finding %s", ErrTooLarge, a.Finding.ID))
}

func (n *Notifier) encodeFinding(a notify.Alert) ([]byte, error) {
	f := a.Finding
	h := Header{Facility: *n.cfg.Facility, Severity: syslogSeverity(f.Severity), Timestamp: f.Time,
		Hostname: n.host, AppName: n.cfg.AppName, ProcID: n.pid, MsgID: "finding"}
	params := []SDParam{{"id", f.ID}, {"detector", f.Detector}, {"severity", string(f.Severity)},
		{"revision", strconv.Itoa(f.Revision)}, {"repeat", strconv.Itoa(a.Repeat)}}
	var body string
	switch n.cfg.Format {
	case FormatJSON:
		j, err := json.Marshal(jsonFinding{Kind: "finding", Finding: f, Repeat: a.Repeat, GroupCount: a.GroupCount})
		if err != nil {
			return nil, notify.Permanent(notify.ReasonEncode, fmt.Errorf("syslog json: %w", err))
		}
		body = string(notify.InertJSON(j))
	default:
		body = FindingCEF(a, n.cfg.ProductVersion)
	}
	return AppendMessage(nil, h, SDID, params, body), nil
}

type jsonFinding struct {
	Kind       string         `json:"kind"`
	Finding    schema.Finding `json:"finding"`
	Repeat     int            `json:"repeat"`
	GroupCount int            `json:"group_count"`
}

type jsonEvent struct {
	Kind  string       `json:"kind"`
	Event schema.Event `json:"event"`
}

// EncodeEvent returns the framed message for ev.
func (n *Notifier) EncodeEvent(ev schema.Event) ([]byte, error) {
	for limit := 4096; limit >= 16; limit /= 2 {
		sev := 6
		if ev.Failed() {
			sev = 5
		}
		h := Header{Facility: *n.cfg.Facility, Severity: sev, Timestamp: ev.Time,
			Hostname: n.host, AppName: n.cfg.AppName, ProcID: n.pid, MsgID: "event"}
		var body string
		switch n.cfg.Format {
		case FormatJSON:
			j, err := json.Marshal(jsonEvent{Kind: "event", Event: ev})
			if err != nil {
				return nil, notify.Permanent(notify.ReasonEncode, fmt.Errorf("syslog json: %w", err))
			}
			body = string(notify.InertJSON(j))
		default:
			body = EventCEF(ev, n.cfg.ProductVersion)
		}
		b := AppendMessage(nil, h, SDID, []SDParam{{"id", ev.ID}, {"source", ev.Source}}, body)
		if len(b) <= n.cfg.MaxMessageBytes {
			return AppendFrame(nil, b), nil
		}
		ev = notify.BoundEvent(ev, limit)
	}
	return nil, notify.Permanent(notify.ReasonEncode, fmt.Errorf("%w: event %s", ErrTooLarge, ev.ID))
}

// Notify writes one alert.
func (n *Notifier) Notify(ctx context.Context, a notify.Alert) error {
	b, err := n.EncodeFinding(a)
	if err != nil {
		return err
	}
	return n.write(ctx, b)
}

// SendEvents writes a batch of events in one write.
func (n *Notifier) SendEvents(ctx context.Context, evs []schema.Event) error {
	var buf []byte
	for _, ev := range evs {
		b, err := n.EncodeEvent(ev)
		if err != nil {
			n.log.Warn("event not encodable for syslog; skipped", "event", notify.SanitizeLine(ev.ID, 80), "err", err)
			continue
		}
		buf = append(buf, b...)
	}
	if len(buf) == 0 {
		return nil
	}
	return n.write(ctx, buf)
}

func (n *Notifier) write(ctx context.Context, b []byte) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conn != nil && !alive(n.conn) {
		// The receiver closed the connection (restart, idle timeout): a
		// write now would be accepted by the kernel and lost.
		_ = n.conn.Close()
		n.conn = nil
	}
	if n.conn == nil {
		c, err := n.dial(ctx)
		if err != nil {
			return err
		}
		n.conn = c
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Second)
	}
	_ = n.conn.SetWriteDeadline(deadline)
	if _, err := n.conn.Write(b); err != nil {
		_ = n.conn.Close()
		n.conn = nil
		return fmt.Errorf("syslog write %s: %w", n.cfg.Address, err)
	}
	return nil
}

// alive reports whether the receiver still holds c open. A syslog
// receiver never sends, so a read that does not time out at once means
// the connection is closed (EOF, reset) or broken.
func alive(c net.Conn) bool {
	raw := c
	if tc, ok := c.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	if err := raw.SetReadDeadline(time.Now()); err != nil {
		return false
	}
	var b [1]byte
	_, err := raw.Read(b[:])
	_ = raw.SetReadDeadline(time.Time{})
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (n *Notifier) dial(ctx context.Context) (net.Conn, error) {
	d := &net.Dialer{Timeout: n.cfg.DialTimeout.D(), KeepAlive: 30 * time.Second}
	if n.tls == nil {
		c, err := d.DialContext(ctx, "tcp", n.cfg.Address)
		if err != nil {
			return nil, fmt.Errorf("syslog dial %s: %w", n.cfg.Address, err)
		}
		return c, nil
	}
	td := &tls.Dialer{NetDialer: d, Config: n.tls}
	c, err := td.DialContext(ctx, "tcp", n.cfg.Address)
	if err != nil {
		var verr *tls.CertificateVerificationError
		if errors.As(err, &verr) {
			return nil, notify.Permanent(notify.ReasonTLS, fmt.Errorf("syslog tls %s: %w", n.cfg.Address, err))
		}
		return nil, fmt.Errorf("syslog dial tls %s: %w", n.cfg.Address, err)
	}
	return c, nil
}

// Close closes the connection.
func (n *Notifier) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conn == nil {
		return nil
	}
	err := n.conn.Close()
	n.conn = nil
	return err
}
