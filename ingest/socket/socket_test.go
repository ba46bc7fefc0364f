package socket

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"auditwatch/config/duration"
	"auditwatch/ingest"
	"auditwatch/ingest/source"
)

type collector struct {
	mu    sync.Mutex
	ids   []string
	block chan struct{} // when set, Publish waits on it
}

func (c *collector) Publish(ctx context.Context, b source.Batch) error {
	if c.block != nil {
		select {
		case <-c.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c.mu.Lock()
	for _, ev := range b.Events {
		c.ids = append(c.ids, ev.ID)
	}
	c.mu.Unlock()
	if b.Done != nil {
		b.Done(nil)
	}
	return nil
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ids)
}

func scenario(t *testing.T) ([]byte, map[string]int) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "openbao-scenario", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	rr := source.AuditParser(ingest.DefaultOptions())(bytes.NewReader(raw), "whole")
	for {
		ev, err := rr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil {
			want[ev.ID]++
		}
	}
	return raw, want
}

func start(t *testing.T, cfg Config, c *collector, reg prometheus.Registerer) (*Socket, string, func()) {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	s, addr, stop := startAt(t, cfg, c, reg)
	return s, addr.String(), stop
}

// TestVaultOverTCP sends a real OpenBao audit log over TCP the way the
// socket audit device does (JSON lines, written in arbitrary pieces) and
// checks every event comes out exactly once and acknowledged segments are
// deleted.
func TestVaultOverTCP(t *testing.T) {
	raw, want := scenario(t)
	c := &collector{}
	s, addr, stop := start(t, Config{IdleFlush: duration.Duration(200 * time.Millisecond), SegmentBytes: 4096}, c, prometheus.NewRegistry())
	defer stop()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	for off, i := 0, 0; off < len(raw); i++ {
		n := 1 + (i*7919)%5000
		if off+n > len(raw) {
			n = len(raw) - off
		}
		if _, err := conn.Write(raw[off : off+n]); err != nil {
			t.Fatal(err)
		}
		off += n
	}
	conn.Close()
	total := 0
	for _, n := range want {
		total += n
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.count() < total && time.Now().Before(deadline) { // a guard only
		time.Sleep(10 * time.Millisecond)
	}
	// Stopped, the source publishes nothing more: any duplicate is in now.
	stop()
	c.mu.Lock()
	got := map[string]int{}
	for _, id := range c.ids {
		got[id]++
	}
	n := len(c.ids)
	c.mu.Unlock()
	if n != total {
		t.Fatalf("got %d events, want %d", n, total)
	}
	for id, k := range want {
		if got[id] != k {
			t.Errorf("event %s seen %d times, want %d", id, got[id], k)
		}
	}
	if sb := s.SpoolBytes(); sb > 4096+int64(len(raw))/4 && sb >= int64(len(raw)) {
		t.Errorf("acknowledged spool not trimmed: %d bytes left of %d", sb, len(raw))
	}
}

// TestFullSpoolNeverBlocksVault: downstream is stuck, the spool fills,
// and the writer still gets every byte accepted promptly; the overflow is
// counted.
func TestFullSpoolNeverBlocksVault(t *testing.T) {
	raw, _ := scenario(t)
	reg := prometheus.NewRegistry()
	c := &collector{block: make(chan struct{})}
	max := int64(len(raw) / 2)
	s, addr, stop := start(t, Config{SpoolMaxBytes: max, SegmentBytes: 8192, BatchSize: 1}, c, reg)
	defer stop()
	defer close(c.block)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	for i := 0; i < 3; i++ {
		if _, err := conn.Write(raw); err != nil {
			t.Fatalf("the listener stalled the writer: %v", err)
		}
	}
	conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(s.dropped) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if d := testutil.ToFloat64(s.dropped); d <= 0 {
		t.Fatal("no dropped bytes counted")
	}
	if sb := s.SpoolBytes(); sb > max {
		t.Fatalf("spool grew to %d bytes, over its bound %d", sb, max)
	}
}
