// Package socket owns the listener for the Vault/OpenBao socket audit
// device (TCP). Vault blocks client requests while an audit device cannot
// write, so this listener never makes Vault wait on auditwatch: every
// connection is read at full speed and its whole lines are appended to an
// on-disk spool (segment files named by their byte offset in the spool
// stream). A separate reader parses the spool and publishes events; a
// segment is deleted once the checkpoint has passed its end. The spool is
// bounded: when it is full, incoming lines are dropped — counted in
// auditwatch_ingest_spool_dropped_bytes_total and logged as an error —
// rather than blocking Vault.
package socket

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/ingest/source"
	"auditwatch/schema"
)

// ErrSpoolFull is logged (and counted) when lines are dropped.
var ErrSpoolFull = errors.New("spool full: audit lines dropped")

// Socket is the socket audit device listener.
type Socket struct {
	cfg   Config
	name  string
	parse source.Parser
	cp    source.Checkpoints
	log   *slog.Logger
	m     *source.Metrics
	rej   *source.Rejector

	spoolBytes prometheus.Gauge
	dropped    prometheus.Counter
	// refused counts connections closed unread, by reason (not_allowed,
	// too_many, tls).
	refused *prometheus.CounterVec
	allow   []netip.Prefix
	tls     *tls.Config

	refusedMu     sync.Mutex
	refusedWindow time.Time
	refusedLogged int

	mu       sync.Mutex
	segs     []segment // ordered by start
	active   *os.File
	end      int64 // spool stream offset after the last appended byte
	size     int64 // bytes on disk
	acked    int64
	newData  chan struct{}
	addr     net.Addr
	addrOnce chan struct{}
}

type segment struct {
	start, size int64
	path        string
}

// New returns a Socket source.
func New(cfg Config, name string, parse source.Parser, cp source.Checkpoints, logger *slog.Logger, m *source.Metrics, reg prometheus.Registerer) (*Socket, error) {
	b, err := source.Prepare("socket", name, &cfg, logger, m)
	if err != nil {
		return nil, err
	}
	s := &Socket{cfg: cfg, name: name, parse: parse, cp: cp, log: b.Log, m: b.M, rej: b.Rej,
		newData: make(chan struct{}, 1), addrOnce: make(chan struct{})}
	sb := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "auditwatch_ingest_spool_bytes",
		Help: "Bytes in a socket source's on-disk spool, by source."}, []string{"source"})
	dr := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_ingest_spool_dropped_bytes_total",
		Help: "Bytes dropped because a socket source's spool was full, by source."}, []string{"source"})
	rf := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_ingest_socket_refused_total",
		Help: "Connections to a socket source closed unread, by source and reason (not_allowed, too_many, tls)."}, []string{"source", "reason"})
	if reg != nil {
		sb = registerVec(reg, sb)
		dr = registerVec(reg, dr)
		rf = registerVec(reg, rf)
	}
	s.spoolBytes, s.dropped, s.refused = sb.WithLabelValues(name), dr.WithLabelValues(name), rf
	for _, r := range []string{"not_allowed", "too_many", "tls"} {
		s.refused.WithLabelValues(name, r)
	}
	if _, unix := unixPath(cfg.Listen); !unix {
		allow, err := parseAllow(cfg.Allow)
		if err != nil {
			return nil, fmt.Errorf("socket %s: %w", name, err)
		}
		s.allow = allow
	}
	if cfg.TLS != nil {
		tc, err := loadTLS(*cfg.TLS)
		if err != nil {
			return nil, fmt.Errorf("socket %s: tls: %w", name, err)
		}
		s.tls = tc
	}
	return s, nil
}

// loadTLS builds the server TLS config (TLS 1.2 or later; client
// certificates required when a client CA is given).
func loadTLS(c TLSConfig) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client_ca_file %s: no certificate", c.ClientCAFile)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// listen opens the TCP or Unix listener, with TLS when configured.
func (s *Socket) listen() (net.Listener, error) {
	var ln net.Listener
	var err error
	if path, ok := unixPath(s.cfg.Listen); ok {
		// a socket file left by a previous run is replaced
		if st, serr := os.Lstat(path); serr == nil && st.Mode()&os.ModeSocket != 0 {
			os.Remove(path)
		}
		if ln, err = net.Listen("unix", path); err != nil {
			return nil, err
		}
		if err := os.Chmod(path, 0o660); err != nil {
			ln.Close()
			return nil, err
		}
	} else if ln, err = net.Listen("tcp", s.cfg.Listen); err != nil {
		return nil, err
	}
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	return ln, nil
}

// allowed reports whether a connection from addr may be read: any Unix
// socket peer (the file mode decides), or a TCP peer inside Allow.
func (s *Socket) allowed(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return s.allow == nil
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	for _, p := range s.allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// refuse counts a refused connection and logs the first few a minute.
func (s *Socket) refuse(c net.Conn, reason string, err error) {
	s.refused.WithLabelValues(s.name, reason).Inc()
	now := time.Now()
	s.refusedMu.Lock()
	if now.Sub(s.refusedWindow) >= time.Minute {
		s.refusedWindow, s.refusedLogged = now, 0
	}
	log := s.refusedLogged < 10
	s.refusedLogged++
	s.refusedMu.Unlock()
	if log {
		attrs := []any{"remote", c.RemoteAddr().String(), "reason", reason, "metric", "auditwatch_ingest_socket_refused_total"}
		if err != nil {
			attrs = append(attrs, "err", err)
		}
		s.log.Warn("connection refused", attrs...)
	}
}

func registerVec[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(C); ok {
				return old
			}
		}
	}
	return c
}

// Name is the source name.
func (s *Socket) Name() string { return s.name }

// Addr returns the listening address once Run listens.
func (s *Socket) Addr(ctx context.Context) (net.Addr, error) {
	select {
	case <-s.addrOnce:
		return s.addr, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// SpoolBytes is the spool's size on disk.
func (s *Socket) SpoolBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// loadSpool finds the segments left by a previous run.
func (s *Socket) loadSpool() error {
	if err := os.MkdirAll(s.cfg.SpoolDir, 0o750); err != nil {
		return err
	}
	ents, err := os.ReadDir(s.cfg.SpoolDir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		start, err := strconv.ParseInt(filepath.Ext(e.Name())[min(1, len(filepath.Ext(e.Name()))):], 10, 64)
		if err != nil || filepath.Ext(e.Name()) == "" {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		s.segs = append(s.segs, segment{start: start, size: fi.Size(), path: filepath.Join(s.cfg.SpoolDir, e.Name())})
	}
	sort.Slice(s.segs, func(i, j int) bool { return s.segs[i].start < s.segs[j].start })
	for _, sg := range s.segs {
		s.size += sg.size
		s.end = sg.start + sg.size
	}
	s.spoolBytes.Set(float64(s.size))
	return nil
}

// appendLines appends whole lines to the spool, or drops them when full.
func (s *Socket) appendLines(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.size+int64(len(b)) > s.cfg.SpoolMaxBytes {
		s.dropped.Add(float64(len(b)))
		s.log.Error("spool full; dropping audit lines", "bytes", len(b), "spool_bytes", s.size, "err", ErrSpoolFull)
		return
	}
	if s.active == nil || s.segs[len(s.segs)-1].size >= s.cfg.SegmentBytes {
		if s.active != nil {
			s.active.Close()
		}
		p := filepath.Join(s.cfg.SpoolDir, fmt.Sprintf("spool.%020d", s.end))
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			s.dropped.Add(float64(len(b)))
			s.log.Error("spool segment", "path", p, "err", err)
			s.active = nil
			return
		}
		s.active = f
		s.segs = append(s.segs, segment{start: s.end, path: p})
	}
	n, err := s.active.Write(b)
	s.segs[len(s.segs)-1].size += int64(n)
	s.end += int64(n)
	s.size += int64(n)
	s.spoolBytes.Set(float64(s.size))
	if err != nil {
		s.m.Errors.WithLabelValues(s.name).Inc()
		s.log.Error("spool write", "err", err)
	}
	select {
	case s.newData <- struct{}{}:
	default:
	}
}

// ack deletes the segments wholly before off.
func (s *Socket) ack(off int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off > s.acked {
		s.acked = off
	}
	for len(s.segs) > 1 && s.segs[0].start+s.segs[0].size <= s.acked {
		os.Remove(s.segs[0].path)
		s.size -= s.segs[0].size
		s.segs = s.segs[1:]
	}
	s.spoolBytes.Set(float64(s.size))
}

// Run listens and parses the spool until ctx ends.
func (s *Socket) Run(ctx context.Context, pub source.Publisher) error {
	defer s.rej.Close()
	if err := s.loadSpool(); err != nil {
		return fmt.Errorf("socket %s: spool: %w", s.name, err)
	}
	ln, err := s.listen()
	if err != nil {
		return fmt.Errorf("socket %s: %w", s.name, err)
	}
	s.addr = ln.Addr()
	close(s.addrOnce)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.accept(ctx, ln)
	}()
	context.AfterFunc(ctx, func() { ln.Close() })
	err = s.read(ctx, pub)
	ln.Close()
	wg.Wait()
	s.mu.Lock()
	if s.active != nil {
		s.active.Close()
	}
	s.mu.Unlock()
	return err
}

func (s *Socket) accept(ctx context.Context, ln net.Listener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, s.cfg.MaxConns)
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if !s.allowed(c.RemoteAddr()) {
			s.refuse(c, "not_allowed", nil)
			c.Close()
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			s.refuse(c, "too_many", fmt.Errorf("max_conns %d reached", s.cfg.MaxConns))
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			if tc, ok := c.(*tls.Conn); ok {
				hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := tc.HandshakeContext(hctx)
				cancel()
				if err != nil {
					s.refuse(c, "tls", err)
					c.Close()
					return
				}
			}
			s.conn(c)
		}()
	}
}

// conn reads one connection at full speed, appending whole lines.
func (s *Socket) conn(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 0, 256<<10)
	chunk := make([]byte, 128<<10)
	for {
		n, err := c.Read(chunk)
		if n > 0 {
			buf = append(buf, chunk[:n]...)
			if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
				s.appendLines(buf[:i+1])
				buf = append(buf[:0], buf[i+1:]...)
			}
			if len(buf) > 16<<20 {
				s.rej.Input(c.RemoteAddr().String(), fmt.Errorf("over-long line without newline dropped (%d bytes)", len(buf)))
				buf = buf[:0]
			}
		}
		if err != nil {
			if len(buf) > 0 {
				// A last entry without its newline is still an entry.
				s.appendLines(append(buf, '\n'))
			}
			return
		}
	}
}

// spoolReader reads the spool stream from off, waiting for more data at
// its end until the spool is idle for IdleFlush (then io.EOF, so the
// parser releases requests still waiting for a response) or ctx ends.
type spoolReader struct {
	s       *Socket
	ctx     context.Context
	off     int64
	f       *os.File
	waiting func() error
	err     error
	ended   bool
}

func (r *spoolReader) close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

func (r *spoolReader) Read(p []byte) (int, error) {
	idleSince := time.Now()
	for {
		if r.ended {
			return 0, io.EOF
		}
		if r.f == nil {
			r.s.mu.Lock()
			var sg *segment
			for i := range r.s.segs {
				g := &r.s.segs[i]
				if r.off < g.start {
					r.off = g.start // data before it is gone
				}
				if r.off < g.start+g.size || i == len(r.s.segs)-1 {
					sg = g
					break
				}
			}
			var seg segment
			if sg != nil {
				seg = *sg
			}
			r.s.mu.Unlock()
			if sg != nil && r.off >= seg.start && r.off <= seg.start+seg.size {
				f, err := os.Open(seg.path)
				if err == nil {
					if _, err = f.Seek(r.off-seg.start, io.SeekStart); err == nil {
						r.f = f
					} else {
						f.Close()
					}
				}
				if err != nil {
					r.s.m.Errors.WithLabelValues(r.s.name).Inc()
					r.s.log.Error("open spool segment", "path", seg.path, "err", err)
				}
			}
		}
		if r.f != nil {
			n, err := r.f.Read(p)
			if n > 0 {
				r.off += int64(n)
				return n, nil
			}
			if err != nil && !errors.Is(err, io.EOF) {
				r.s.m.Errors.WithLabelValues(r.s.name).Inc()
			}
			// End of this segment file: move on when a later one exists.
			r.s.mu.Lock()
			later := len(r.s.segs) > 0 && r.s.segs[len(r.s.segs)-1].start >= r.off && r.s.end > r.off
			r.s.mu.Unlock()
			if later {
				r.close()
				continue
			}
		}
		if r.waiting != nil {
			if err := r.waiting(); err != nil {
				r.err, r.ended = err, true
				continue
			}
		}
		if r.ctx.Err() != nil || time.Since(idleSince) >= r.s.cfg.IdleFlush.D() {
			r.ended = true
			continue
		}
		select {
		case <-r.ctx.Done():
		case <-r.s.newData:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *Socket) read(ctx context.Context, pub source.Publisher) error {
	var cur source.Cursor
	if s.cp != nil {
		b, err := s.cp.Load(s.name)
		if err != nil {
			return err
		}
		if err := source.DecodePosition(b, &cur); err != nil {
			return fmt.Errorf("socket %s: %w", s.name, err)
		}
	}
	s.mu.Lock()
	if len(s.segs) == 0 && cur.Offset > s.end {
		// The spool was emptied: keep offsets growing past the checkpoint.
		s.end = cur.Offset
	}
	s.mu.Unlock()
	for ctx.Err() == nil {
		var batch []schema.Event
		dirty := false
		var tr *source.Tracked
		flush := func() error {
			if (len(batch) == 0 && !dirty) || ctx.Err() != nil || tr == nil {
				return nil
			}
			pos := tr.Cursor()
			s.m.Events.WithLabelValues(s.name).Add(float64(len(batch)))
			err := pub.Publish(ctx, source.Batch{Source: s.name, Events: batch, Position: source.EncodeCursor(pos),
				Done: func(err error) {
					if err == nil {
						s.ack(pos.Offset)
					}
				}})
			batch, dirty = nil, false
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("socket %s: %w", s.name, err)
			}
			return nil
		}
		sr := &spoolReader{s: s, ctx: ctx, off: cur.Offset, waiting: flush}
		tr = source.Track(s.parse, sr, s.name, cur)
		for {
			ev, err := tr.Next()
			if err == nil {
				s.m.Records.WithLabelValues(s.name).Inc()
				batch = append(batch, ev)
				if len(batch) >= s.cfg.BatchSize {
					if err := flush(); err != nil {
						sr.close()
						return err
					}
				}
				continue
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if source.IsRecordError(err) {
				s.m.Records.WithLabelValues(s.name).Inc()
				s.rej.Record(err)
				dirty = true
				continue
			}
			s.m.Errors.WithLabelValues(s.name).Inc()
			s.log.Error("read spool", "err", err)
		}
		sr.close()
		if sr.err != nil {
			return sr.err
		}
		if ctx.Err() != nil {
			return nil
		}
		dirty = true
		if err := flush(); err != nil {
			return err
		}
		cur = tr.Cursor()
		s.m.Lag.WithLabelValues(s.name).Set(float64(s.SpoolBytes()))
	}
	return nil
}
