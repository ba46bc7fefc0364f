package alert

import (
	"cmp"
	"strconv"
	"sync"
	"time"

	"auditwatch/alert/notify"
	"auditwatch/schema"
)

// groupKey is the incident a finding belongs to: the correlation stage's
// incident id when set (findings of one attack across detectors), else its
// dedupe key (repeats and revisions of one detector incident), else its
// id. Slack threads and Kafka keys follow it.
func groupKey(f schema.Finding) string {
	if f.IncidentID != "" {
		return "incident:" + f.IncidentID
	}
	if f.DedupeKey != "" {
		return f.DedupeKey
	}
	return f.ID
}

// grouper numbers the findings of each incident within the group window:
// the first is a new alert, the ones after it updates (Slack thread
// replies with running counts). The table is bounded; the oldest group is
// evicted first.
type grouper struct {
	window time.Duration
	max    int
	m      *metrics

	mu     sync.Mutex
	groups map[string]*group
	order  []string // insertion order for eviction (lazy)
}

type group struct {
	start  time.Time
	repeat int
	count  int
	seen   map[string]struct{} // id/revision already counted (bounded)
}

func newGrouper(window time.Duration, max int, m *metrics) *grouper {
	return &grouper{window: window, max: max, m: m, groups: map[string]*group{}}
}

// alert advances the group of f and describes f's place in it. A finding
// id and revision seen before (a redelivery) is not counted again.
func (g *grouper) alert(f schema.Finding, now time.Time) notify.Alert {
	key := groupKey(f)
	g.mu.Lock()
	defer g.mu.Unlock()
	gr := g.groups[key]
	if gr != nil && g.window > 0 && now.Sub(gr.start) >= g.window {
		delete(g.groups, key)
		gr = nil
	}
	if gr == nil {
		g.evict(now)
		gr = &group{start: now, seen: map[string]struct{}{}}
		g.groups[key] = gr
		g.order = append(g.order, key)
	}
	id := f.ID + "\x00" + strconv.Itoa(f.Revision)
	if _, dup := gr.seen[id]; !dup {
		if len(gr.seen) < 1024 {
			gr.seen[id] = struct{}{}
		}
		gr.repeat++
		gr.count += cmp.Or(f.Count, 1)
	}
	g.m.groupsAlive.Set(float64(len(g.groups)))
	return notify.Alert{Key: key, Update: gr.repeat > 1, Repeat: gr.repeat, GroupCount: gr.count, GroupStart: gr.start}
}

// evict drops expired groups and, when the table is full, the oldest.
func (g *grouper) evict(now time.Time) {
	if len(g.order) < 2*g.max && len(g.groups) < g.max {
		return
	}
	kept := g.order[:0]
	for _, k := range g.order {
		gr, ok := g.groups[k]
		if !ok {
			continue
		}
		if g.window > 0 && now.Sub(gr.start) >= g.window {
			delete(g.groups, k)
			continue
		}
		kept = append(kept, k)
	}
	for len(g.groups) >= g.max && len(kept) > 0 {
		k := kept[0]
		kept = kept[1:]
		if _, ok := g.groups[k]; ok {
			delete(g.groups, k)
			g.m.evictions.Inc()
		}
	}
	g.order = append([]string(nil), kept...)
}
