package detect

import "sync/atomic"

// Pool is the detector-state budget of one process, shared equally by the
// engines open in it. A Kafka detect process holds one engine per owned
// partition of each events topic (12 for one process of the shipped
// compose deployment); with a budget of its own, each engine could hold
// the whole state budget, the process that many times the
// detectors.memory_budget its Go memory limit is drawn from. With a pool
// the process holds at most Config.StateBudget, however many partitions a
// rebalance gives it.
//
// An engine takes its share when it joins (Engine.SharePool) and follows
// changes at its next event: a table above its new share evicts on its
// next insert, so an engine that receives nothing keeps its excess until
// it does.
type Pool struct {
	total   int64
	engines atomic.Int64
	ver     atomic.Uint64 // changes whenever engines does
}

// NewPool returns a pool of total bytes.
func NewPool(total int64) *Pool { return &Pool{total: total} }

func (p *Pool) join() {
	p.engines.Add(1)
	p.ver.Add(1)
}

func (p *Pool) leave() {
	p.engines.Add(-1)
	p.ver.Add(1)
}

// share is each engine's part now.
func (p *Pool) share() int64 {
	return p.total / max(p.engines.Load(), 1)
}

// Engines reports how many engines share the pool.
func (p *Pool) Engines() int { return int(p.engines.Load()) }

// SharePool makes the engine's state budget its share of p instead of
// its Config.StateBudget, now and whenever an engine joins or leaves p.
// Call it once, before the first event; Close leaves the pool.
func (e *Engine) SharePool(p *Pool) {
	p.join()
	e.pool = p
	e.reshare()
}

// reshare applies the engine's current share of its pool.
func (e *Engine) reshare() {
	v := e.pool.ver.Load()
	lim := e.pool.share()
	e.poolVer = v
	e.m.mem.limit, e.m.mem.spillLimit = lim, lim/8
	shareBudget(lim, e.tabs)
}
