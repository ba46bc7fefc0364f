package chtest

import (
	"fmt"
	"math/rand/v2"
	"time"

	"auditwatch/schema"
)

// Gen generates deterministic, realistic-looking events for tests and
// benchmarks: a few thousand principals, resources and addresses, both
// sources, about 5% failures.
type Gen struct {
	r     *rand.Rand
	start time.Time
	span  time.Duration
	n     uint64
	total uint64
}

// Sequential makes event times advance through the span over total events
// (as a live stream delivers them) instead of being spread at random.
func (g *Gen) Sequential(total int) *Gen {
	g.total = uint64(total)
	return g
}

// NewGen returns a generator of events spread over [start, start+span).
func NewGen(seed uint64, start time.Time, span time.Duration) *Gen {
	return &Gen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), start: start.UTC(), span: span}
}

var actionsVault = []string{"vault:read", "vault:list", "vault:update", "vault:create"}
var actionsCT = []string{"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret", "kms:Decrypt", "ssm:GetParameter"}

// Event returns the next event.
func (g *Gen) Event() schema.Event {
	g.n++
	r := g.r
	p := r.IntN(2000)
	ev := schema.Event{
		Time:          g.time(),
		ID:            fmt.Sprintf("gen-%016x", g.n),
		PrincipalType: "entity",
		Namespace:     "root",
		UserAgent:     "vault-agent/1.17",
		Outcome:       schema.OutcomeSuccess,
		ReadOnly:      true,
	}
	ip := r.IntN(10000)
	ev.SourceIP = fmt.Sprintf("10.%d.%d.%d", ip/2500, (ip/10)%250, ip%250+1)
	ev.SourceIPRaw = ev.SourceIP
	if r.IntN(3) == 0 {
		ev.Source = schema.SourceCloudTrail
		ev.Principal = fmt.Sprintf("arn:aws:iam::123456789012:role/app-%d", p)
		ev.PrincipalName = fmt.Sprintf("app-%d", p)
		ev.PrincipalType = "AssumedRole"
		ev.AccessKey = fmt.Sprintf("ASIA%016d", p*7+r.IntN(3))
		ev.Account = "123456789012"
		ev.Region = "eu-west-1"
		ev.Action = actionsCT[r.IntN(len(actionsCT))]
		ev.Resource = fmt.Sprintf("arn:aws:secretsmanager:eu-west-1:123456789012:secret:svc-%d", r.IntN(5000))
	} else {
		ev.Source = schema.SourceVault
		ev.Principal = fmt.Sprintf("entity-%08d", p)
		ev.PrincipalName = fmt.Sprintf("user-%d", p)
		ev.TokenHMAC = fmt.Sprintf("hmac-sha256:%x", p*31+r.IntN(5))
		ev.Policies = []string{"default", fmt.Sprintf("team-%d", p%40)}
		ev.Action = actionsVault[r.IntN(len(actionsVault))]
		ev.Mount = "secret/"
		ev.MountType = "kv"
		ev.Resource = fmt.Sprintf("secret/data/team-%d/svc-%d", r.IntN(40), r.IntN(5000))
	}
	if r.IntN(20) == 0 {
		ev.Outcome = schema.OutcomeFailure
		ev.Error = "permission denied"
		ev.FailureKind = schema.FailurePermissionDenied
		ev.HTTPStatus = 403
	}
	return ev
}

func (g *Gen) time() time.Time {
	if g.total > 0 {
		off := time.Duration(float64(g.span) * float64(g.n-1) / float64(g.total))
		return g.start.Add(off + time.Duration(g.r.Int64N(int64(time.Second)))).Truncate(time.Second)
	}
	return g.start.Add(time.Duration(g.r.Int64N(int64(g.span)))).Truncate(time.Second)
}

// Events returns the next n events.
func (g *Gen) Events(n int) []schema.Event {
	out := make([]schema.Event, n)
	for i := range out {
		out[i] = g.Event()
	}
	return out
}
