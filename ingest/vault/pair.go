package vault

import "auditwatch/schema"

// DefaultMaxPending bounds the request entries held while waiting for
// their responses.
const DefaultMaxPending = 10000

type pending struct {
	en     Entry
	offset int64
	done   bool
}

// Pairer joins request and response entries into one event per client
// request. A request entry is held until its response (same request.id)
// arrives; at most max are held, the oldest is released as a request-only
// event when the bound is hit (counted in Evicted). Entries without a
// request.id (Vault 0.x, KMIP) pair with the entry right after them when it
// is the matching response.
type Pairer struct {
	max  int
	byID map[string]*pending
	fifo []*pending
	head int
	noID *pending
	free []*pending // recycled slots

	// Evicted counts request entries released early because max were
	// pending; Unpaired counts request-only events emitted (evictions,
	// flushes, requests that never got a response).
	Evicted, Unpaired int64
}

// NewPairer returns a Pairer holding at most max pending requests
// (DefaultMaxPending when max <= 0).
func NewPairer(max int) *Pairer {
	if max <= 0 {
		max = DefaultMaxPending
	}
	return &Pairer{max: max, byID: make(map[string]*pending)}
}

// Add takes the entry that started at stream offset offset and appends the
// events it completes to out.
func (p *Pairer) Add(en Entry, offset int64, out []schema.Event) []schema.Event {
	return p.AddRef(&en, offset, out)
}

// AddRef is Add without copying the entry in (an entry is large); the
// Pairer keeps a copy of what it holds, not en.
func (p *Pairer) AddRef(en *Entry, offset int64, out []schema.Event) []schema.Event {
	if !en.HasID {
		if p.noID != nil {
			prev := p.noID
			p.noID = nil
			if en.Response && prev.en.KMIP == en.KMIP && prev.en.Event.ID == en.Event.ID {
				return append(out, Merge(&prev.en, en))
			}
			p.Unpaired++
			out = append(out, prev.en.Event)
		}
		if en.Response {
			return append(out, en.Event)
		}
		p.noID = &pending{en: *en, offset: offset}
		return out
	}
	if p.noID != nil {
		p.Unpaired++
		out = append(out, p.noID.en.Event)
		p.noID = nil
	}
	id := en.Event.ID
	if !en.Response {
		if prev, ok := p.byID[id]; ok {
			// the same request logged twice: release the first
			prev.done = true
			delete(p.byID, id)
			p.Unpaired++
			out = append(out, prev.en.Event)
		}
		for len(p.byID) >= p.max {
			old := p.popOldest()
			if old == nil {
				break
			}
			p.Evicted++
			p.Unpaired++
			out = append(out, old.en.Event)
		}
		pe := p.newPending()
		pe.en, pe.offset = *en, offset
		p.byID[id] = pe
		p.fifo = append(p.fifo, pe)
		return out
	}
	if req, ok := p.byID[id]; ok {
		req.done = true
		delete(p.byID, id)
		out = append(out, Merge(&req.en, en))
		p.trim() // may recycle req
		return out
	}
	return append(out, en.Event)
}

func (p *Pairer) popOldest() *pending {
	p.trim()
	if p.head >= len(p.fifo) {
		return nil
	}
	pe := p.fifo[p.head]
	p.fifo[p.head] = nil
	p.head++
	pe.done = true
	delete(p.byID, pe.en.Event.ID)
	return pe
}

// newPending returns a recycled or new pending slot.
func (p *Pairer) newPending() *pending {
	if n := len(p.free); n > 0 {
		pe := p.free[n-1]
		p.free = p.free[:n-1]
		return pe
	}
	return &pending{}
}

// trim drops completed entries from the front of the FIFO; nothing else
// refers to them any more, so their slots are recycled.
func (p *Pairer) trim() {
	for p.head < len(p.fifo) && p.fifo[p.head].done {
		if len(p.free) < 64 {
			*p.fifo[p.head] = pending{}
			p.free = append(p.free, p.fifo[p.head])
		}
		p.fifo[p.head] = nil
		p.head++
	}
	if p.head > 1024 && p.head*2 > len(p.fifo) {
		n := copy(p.fifo, p.fifo[p.head:])
		clear(p.fifo[n:])
		p.fifo = p.fifo[:n]
		p.head = 0
	}
}

// Oldest returns the stream offset of the oldest entry still held.
func (p *Pairer) Oldest() (int64, bool) {
	p.trim()
	off, ok := int64(0), false
	if p.head < len(p.fifo) {
		off, ok = p.fifo[p.head].offset, true
	}
	if p.noID != nil && (!ok || p.noID.offset < off) {
		off, ok = p.noID.offset, true
	}
	return off, ok
}

// Len is the number of held request entries.
func (p *Pairer) Len() int {
	n := len(p.byID)
	if p.noID != nil {
		n++
	}
	return n
}

// Flush releases every held request entry, oldest first, as request-only
// events.
func (p *Pairer) Flush(out []schema.Event) []schema.Event {
	var held []*pending
	for pe := p.popOldest(); pe != nil; pe = p.popOldest() {
		held = append(held, pe)
	}
	if p.noID != nil {
		// place it by offset among the others
		i := 0
		for i < len(held) && held[i].offset < p.noID.offset {
			i++
		}
		held = append(held, nil)
		copy(held[i+1:], held[i:])
		held[i] = p.noID
		p.noID = nil
	}
	for _, pe := range held {
		p.Unpaired++
		out = append(out, pe.en.Event)
	}
	p.fifo = p.fifo[:0]
	p.head = 0
	return out
}

// Merge makes one event of a request entry and its response entry: the
// response's view (outcome, identity of a login) at the request's time,
// with anything only the request entry carried filled in.
func Merge(req, resp *Entry) schema.Event {
	ev := resp.Event
	r := &req.Event
	ev.Time = r.Time
	fill := func(dst *string, src string) {
		if *dst == "" {
			*dst = src
		}
	}
	fill(&ev.Principal, r.Principal)
	fill(&ev.PrincipalName, r.PrincipalName)
	if ev.PrincipalType == "" || (ev.PrincipalType == schema.PrincipalTypeAnonymous && r.PrincipalType != schema.PrincipalTypeAnonymous && r.PrincipalType != "") {
		ev.PrincipalType = r.PrincipalType
	}
	if len(ev.Policies) == 0 {
		ev.Policies = r.Policies
	}
	fill(&ev.TokenHMAC, r.TokenHMAC)
	fill(&ev.TokenAccessor, r.TokenAccessor)
	fill(&ev.AuthMethod, r.AuthMethod)
	fill(&ev.Resource, r.Resource)
	fill(&ev.Mount, r.Mount)
	fill(&ev.MountType, r.MountType)
	fill(&ev.Namespace, r.Namespace)
	fill(&ev.SourceIP, r.SourceIP)
	fill(&ev.SourceIPRaw, r.SourceIPRaw)
	fill(&ev.UserAgent, r.UserAgent)
	if ev.Outcome != schema.OutcomeFailure && r.Outcome == schema.OutcomeFailure {
		ev.Outcome, ev.Error, ev.FailureKind = r.Outcome, r.Error, r.FailureKind
	}
	return ev
}
