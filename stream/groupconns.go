package stream

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// A kafka-go consumer group's Close waits for its coordinator loop, which
// takes no context: during a rebalance it sits in a JoinGroup (or
// SyncGroup) request the broker holds open until every member has
// rejoined, up to the rebalance timeout, then syncs and leaves the group.
// A stage stopped at that moment would outlive its shutdown deadline. So
// each group dials through groupConns, which knows the connections the
// group opened: a stop gives Close a short grace (a normal LeaveGroup
// takes milliseconds), then closes them all and refuses new ones, so
// every pending request fails at once and Close returns.

// closeGrace is how long Close may take before the group's connections
// are cut (a variable for the test).
var closeGrace = 2 * time.Second

var errGroupStopping = errors.New("kafka consumer group stopping")

type groupConns struct {
	dial func(ctx context.Context, network, addr string) (net.Conn, error)

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// groupDialer returns a copy of d that dials through a new groupConns.
func groupDialer(d *kafka.Dialer) (*kafka.Dialer, *groupConns) {
	g := &groupConns{dial: d.DialFunc, conns: map[net.Conn]struct{}{}}
	if g.dial == nil {
		// kafka-go's own default (dialer.go; fast fallback is the net
		// default, DualStack is deprecated), TLS and SASL still apply
		// on top of what DialFunc returns
		g.dial = (&net.Dialer{LocalAddr: d.LocalAddr, FallbackDelay: d.FallbackDelay, KeepAlive: d.KeepAlive}).DialContext
	}
	c := *d
	c.DialFunc = g.dialContext
	return &c, g
}

func (g *groupConns) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	g.mu.Lock()
	closed := g.closed
	g.mu.Unlock()
	if closed {
		return nil, errGroupStopping
	}
	c, err := g.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		c.Close()
		return nil, errGroupStopping
	}
	g.conns[c] = struct{}{}
	return &groupConn{Conn: c, g: g}, nil
}

// abort closes every open connection of the group and refuses new ones.
func (g *groupConns) abort() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	for c := range g.conns {
		c.Close()
	}
	clear(g.conns)
}

type groupConn struct {
	net.Conn
	g *groupConns
}

func (c *groupConn) Close() error {
	c.g.mu.Lock()
	delete(c.g.conns, c.Conn)
	c.g.mu.Unlock()
	return c.Conn.Close()
}

// closeGroup closes cg, cutting its connections when that takes longer
// than grace (a request the broker holds during a rebalance); it returns
// once the group's goroutines have ended.
func closeGroup(cg *kafka.ConsumerGroup, g *groupConns, grace time.Duration) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		cg.Close()
	}()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	g.abort()
	<-done
}
