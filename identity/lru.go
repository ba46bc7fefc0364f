package identity

import (
	"container/list"
	"slices"
	"time"
)

// lru remembers key -> HMAC answers of the audit-hash endpoint (bounded),
// and the reverse, so an HMAC'd issue logged after its key was first
// hashed resolves without another call.
type lru struct {
	max int
	ll  *list.List
	m   map[string]*list.Element
	rev map[string]string
}

type lruEntry struct{ k, v string }

func newLRU(max int) *lru {
	return &lru{max: max, ll: list.New(), m: map[string]*list.Element{}, rev: map[string]string{}}
}

func (c *lru) get(k string) (string, bool) {
	e, ok := c.m[k]
	if !ok {
		return "", false
	}
	c.ll.MoveToFront(e)
	return e.Value.(*lruEntry).v, true
}

func (c *lru) reverse(v string) (string, bool) {
	k, ok := c.rev[v]
	return k, ok
}

func (c *lru) put(k, v string) {
	if e, ok := c.m[k]; ok {
		c.ll.MoveToFront(e)
		return
	}
	c.m[k] = c.ll.PushFront(&lruEntry{k, v})
	c.rev[v] = k
	for c.max > 0 && c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		en := old.Value.(*lruEntry)
		delete(c.m, en.k)
		delete(c.rev, en.v)
	}
}

// limiter is a token bucket: rate tokens a second, up to burst.
type limiter struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
	now    func() time.Time
	sleep  func(time.Duration)
}

func newLimiter(rate float64, burst int, now func() time.Time) *limiter {
	return &limiter{rate: rate, burst: float64(burst), tokens: float64(burst), now: now, sleep: time.Sleep}
}

// take takes a token, waiting up to wait for one; false when none came.
func (l *limiter) take(wait time.Duration) bool {
	if l.rate <= 0 {
		return true
	}
	now := l.now()
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		return true
	}
	need := time.Duration((1 - l.tokens) / l.rate * float64(time.Second))
	if need > wait {
		return false
	}
	l.sleep(need)
	l.tokens = 0
	l.last = now.Add(need)
	return true
}

func sortByTime(is []*Issue) {
	slices.SortStableFunc(is, func(a, b *Issue) int { return a.At.Compare(b.At) })
}
