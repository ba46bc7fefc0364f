// Package gen owns auditwatch's generator of realistic audit records: raw
// AWS CloudTrail records and Vault/OpenBao file-audit entries (a request and
// a response line per client request), written exactly as those systems
// write them, from a fixed population of principals with routine habits,
// with labelled injected anomalies. Output is deterministic by seed.
//
// Normal traffic never triggers a detector by construction: during the
// learning period (the leading LearningFraction of the time span) every
// principal shows its whole routine (every usual source IP, every usual
// secret), afterwards it only repeats that routine, and normal failures are
// at least FailureGap apart per principal. Anomalies happen only after the
// learning period and are spaced out.
package gen

import (
	"fmt"
	"sort"
	"time"
)

// op is one client request waiting to be rendered.
type op struct {
	t    time.Time
	p    *principal // nil for an anonymous caller
	kind opKind
	fail failKind
	res  string // resource as the log writes it
	aux  string // secondary resource (secret ARN behind a KMS call)
	ip   string
	user string // login name of an attempt (Vault userpass path, ConsoleLogin userName)
	id   string // pre-chosen event id (anomalies); empty: drawn at render time
	// root marks Vault root-token use and AWS root-account activity.
	root bool
	// viaService renders a call AWS made on the principal's behalf.
	viaService bool
}

// Generator produces the records of one Config. It is not safe for
// concurrent use.
type Generator struct {
	cfg      Config
	pop      *population
	r        *rng
	tc       timeCache
	labels   []Label
	anoms    []op // sorted by time
	nNormal  int
	step     time.Duration
	learnEnd time.Time
	warmup   []op
	wStride  int

	emitted     int // normal slots used
	pendingT    time.Time
	havePending bool
	ai          int // next anomaly op
	count       int // requests rendered
	cur         op
	// vault root token (display_name root)
	rootToken, rootAccessor, rootClientID string
	hmacs                                 vaultHMACs
}

// New builds a Generator: the population, the warm-up routine and the
// anomalies with their labels are fixed here.
func New(cfg Config) (*Generator, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Generator{cfg: cfg, r: newRNG(cfg.Seed, 1)}
	g.pop = newPopulation(cfg, newRNG(cfg.Seed, 2))
	ar := newRNG(cfg.Seed, 3)
	g.rootToken, g.rootAccessor = hmacOf(ar), hmacOf(ar)
	g.rootClientID = string(ar.appendAlnum(nil, 43)) + "="
	g.hmacs = vaultHMACs{permDenied: hmacOf(ar), invalidToken: hmacOf(ar), invalidUser: hmacOf(ar), empty: hmacOf(ar)}
	g.learnEnd = cfg.Start.Add(time.Duration(float64(cfg.Duration) * cfg.LearningFraction))
	if cfg.Anomalies && cfg.AnomalyCount > 0 {
		if err := g.planAnomalies(ar); err != nil {
			return nil, err
		}
	}
	g.nNormal = cfg.Events - len(g.anoms)
	if g.nNormal < 1 {
		return nil, fmt.Errorf("%w: generate.events: %d events leave no room for normal traffic next to %d anomaly events", ErrInvalidConfig, cfg.Events, len(g.anoms))
	}
	g.step = cfg.Duration / time.Duration(g.nNormal)
	if g.step <= 0 {
		g.step = 1
	}
	g.planWarmup(newRNG(cfg.Seed, 4))
	learnSlots := int(float64(g.nNormal) * cfg.LearningFraction)
	if len(g.warmup) > learnSlots/2 {
		return nil, fmt.Errorf("%w: generate.events: %d events are too few for a population whose routine takes %d requests to show in the first half of the learning period (need at least %d events, or fewer machines/humans)",
			ErrInvalidConfig, cfg.Events, len(g.warmup), int(float64(2*len(g.warmup))/cfg.LearningFraction)+len(g.anoms)+1)
	}
	g.wStride = 1
	if len(g.warmup) > 0 {
		g.wStride = learnSlots / 2 / len(g.warmup)
	}
	return g, nil
}

// Config returns the defaulted configuration in use.
func (g *Generator) Config() Config { return g.cfg }

// LearningEnd is the event time at which the learning period ends.
func (g *Generator) LearningEnd() time.Time { return g.learnEnd }

// Labels returns the injected anomalies, in time order.
func (g *Generator) Labels() []Label { return g.labels }

// Count is the number of requests rendered so far.
func (g *Generator) Count() int { return g.count }

// planWarmup lists, for every principal, requests covering each routine item
// and each usual IP, shuffled across principals.
func (g *Generator) planWarmup(r *rng) {
	for _, pr := range g.pop.all {
		n := len(pr.routine)
		if len(pr.ips) > n {
			n = len(pr.ips)
		}
		for j := 0; j < n; j++ {
			it := &pr.routine[j%len(pr.routine)]
			g.warmup = append(g.warmup, op{p: pr, kind: it.kind, res: it.res, aux: it.extra, ip: pr.ips[j%len(pr.ips)]})
		}
		// Humans mistype their password now and then, always from their
		// first address: show that once too.
		if pr.human {
			k := ctConsoleLogin
			if pr.src == srcVault {
				k = vLoginUserpass
			}
			g.warmup = append(g.warmup, op{p: pr, kind: k, fail: failCredentials, user: pr.login, ip: pr.ips[0]})
		}
	}
	for i := len(g.warmup) - 1; i > 0; i-- {
		j := r.intn(i + 1)
		g.warmup[i], g.warmup[j] = g.warmup[j], g.warmup[i]
	}
}

// nextOp fills g.cur with the next request in time order and reports
// whether there is one.
func (g *Generator) nextOp() bool {
	if g.count >= g.cfg.Events {
		return false
	}
	// The next normal request's time is drawn ahead so that anomalies merge
	// in strict time order.
	if g.emitted < g.nNormal && !g.havePending {
		slotT := g.cfg.Start.Add(time.Duration(g.emitted) * g.step)
		g.pendingT = slotT.Add(time.Duration(g.r.pcg.Uint64() % uint64(g.step)))
		g.havePending = true
	}
	if g.ai < len(g.anoms) && (g.emitted >= g.nNormal || !g.anoms[g.ai].t.After(g.pendingT)) {
		g.cur = g.anoms[g.ai]
		g.ai++
		return true
	}
	if g.emitted >= g.nNormal {
		return false
	}
	t := g.pendingT
	g.havePending = false
	k := g.emitted
	g.emitted++
	if k%g.wStride == 0 && k/g.wStride < len(g.warmup) {
		g.cur = g.warmup[k/g.wStride]
		g.cur.t = t
		if g.cur.fail != failNone {
			g.cur.p.lastFail = t
		}
		return true
	}
	g.normalOp(t, k >= len(g.warmup)*g.wStride)
	return true
}

// normalOp picks a principal by rate and one of its routine requests.
// Normal failures happen only once the warm-up routine is done
// (mayFail), never two within FailureGap for one principal, and a failed
// login always comes from the principal's first address.
func (g *Generator) normalOp(t time.Time, mayFail bool) {
	pop := g.pop
	x := g.r.float() * pop.cum[len(pop.cum)-1]
	i := sort.SearchFloat64s(pop.cum, x)
	if i >= len(pop.all) {
		i = len(pop.all) - 1
	}
	pr := pop.all[i]
	it := pr.pick(g.r)
	g.cur = op{t: t, p: pr, kind: it.kind, res: it.res, aux: it.extra, ip: pr.ips[g.r.intn(len(pr.ips))]}
	if g.r.intn(200) == 0 && mayFail && (pr.lastFail.IsZero() || t.Sub(pr.lastFail) >= g.cfg.FailureGap) {
		switch it.kind {
		case ctConsoleLogin, vLoginUserpass:
			g.cur.fail = failCredentials
			g.cur.user = pr.login
			g.cur.ip = pr.ips[0]
		case ctGetSecretValue:
			g.cur.fail = failThrottled
		case ctAssumeRole:
			g.cur.fail = failDenied
		default:
			return
		}
		pr.lastFail = t
	}
}
