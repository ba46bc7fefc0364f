package syslog

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"auditwatch/alert/outputtest"
	"auditwatch/config/duration"
)

// tcpPeer is an in-process RFC 6587 octet-counting receiver the suite can
// take down (connection refused: retryable) or hang (accepts, never
// reads). Integration against a real rsyslogd is TestRsyslog.
type tcpPeer struct {
	t    *testing.T
	addr string

	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
	mode   outputtest.Mode
	frames [][]byte
	wg     sync.WaitGroup
}

func newTCPPeer(t *testing.T) *tcpPeer {
	p := &tcpPeer{t: t}
	p.listen("127.0.0.1:0")
	t.Cleanup(func() { p.down(); p.wg.Wait() })
	return p
}

func (p *tcpPeer) listen(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.ln, p.addr = ln, ln.Addr().String()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, c)
			hang := p.mode == outputtest.Hang
			p.mu.Unlock()
			if hang {
				continue // never read
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.read(c)
			}()
		}
	}()
}

func (p *tcpPeer) read(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		lenStr, err := br.ReadString(' ')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(lenStr[:len(lenStr)-1])
		if err != nil || n <= 0 || n > 1<<20 {
			return
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return
		}
		p.mu.Lock()
		p.frames = append(p.frames, b)
		p.mu.Unlock()
	}
}

// down closes the listener and every connection.
func (p *tcpPeer) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *tcpPeer) set(m outputtest.Mode) {
	p.down()
	p.mu.Lock()
	p.mode = m
	p.mu.Unlock()
	if m == outputtest.FailRetryable {
		return
	}
	for i := 0; ; i++ { // the same address again
		ln, err := net.Listen("tcp", p.addr)
		if err == nil {
			ln.Close()
			break
		}
		if i > 50 {
			p.t.Fatalf("cannot listen on %s again: %v", p.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.listen(p.addr)
}

func (p *tcpPeer) payloads(kind string) [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out [][]byte
	for _, f := range p.frames {
		if kindRE.FindSubmatch(f) != nil && string(kindRE.FindSubmatch(f)[1]) == kind {
			out = append(out, f)
		}
	}
	return out
}

var (
	kindRE = regexp.MustCompile(`^<\d+>1 \S+ \S+ \S+ \S+ (\S+) `)
	sdRE   = regexp.MustCompile(`\[auditwatch@\d+ id="([^"]*)".*? revision="(\d+)"`)
)

func TestConformance(t *testing.T) {
	for _, format := range []string{FormatCEF, FormatJSON} {
		t.Run(format, func(t *testing.T) {
			outputtest.Run(t, func(t *testing.T) outputtest.Target {
				p := newTCPPeer(t)
				n, err := New(Config{Address: p.addr, Format: format, DialTimeout: duration.Duration(time.Second)}, nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { n.Close() })
				return outputtest.Target{
					Output:   n,
					Payloads: func() [][]byte { return p.payloads("finding") },
					Decode: func(b []byte) (string, int, error) {
						m := sdRE.FindSubmatch(b)
						if m == nil {
							return "", 0, fmt.Errorf("no id and revision in %.200q", b)
						}
						rev, err := strconv.Atoi(string(m[2]))
						return string(m[1]), rev, err
					},
					SetMode: p.set,
					Unsupported: map[outputtest.Mode]string{
						outputtest.FailPermanent: "a syslog receiver over TCP cannot reject a message, only drop the connection",
					},
					SendEvents: n.SendEvents,
					Events:     func() (int, int) { return len(p.payloads("event")), 1 },
				}
			})
		})
	}
}
