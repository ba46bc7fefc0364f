package detect

import (
	"encoding/binary"
	"errors"
	"slices"
	"sort"
	"time"

	"auditwatch/schema"
)

// heapEnt is what the heap orders: small, so sifting moves 24 bytes, not
// whole events. Events live in a slab and are reused through a free list.
type heapEnt struct {
	t    int64
	seq  uint64
	slot int32
}

func (a heapEnt) less(b heapEnt) bool {
	if a.t != b.t {
		return a.t < b.t
	}
	return a.seq < b.seq
}

// evHeap is a binary min-heap by (event time, seq).
type evHeap struct {
	ents []heapEnt
	slab []schema.Event
	free []int32
	// encSize estimates the encoded bytes of an event (appendSince)
	encSize int
}

func (h *evHeap) len() int { return len(h.ents) }

// peekTime is the event time of the next event to release.
func (h *evHeap) peekTime() int64 { return h.ents[0].t }

func (h *evHeap) push(seq uint64, ev *schema.Event) {
	var slot int32
	if n := len(h.free); n > 0 {
		slot = h.free[n-1]
		h.free = h.free[:n-1]
		h.slab[slot] = *ev
	} else {
		slot = int32(len(h.slab))
		h.slab = append(h.slab, *ev)
	}
	h.ents = append(h.ents, heapEnt{t: ev.Time.UnixNano(), seq: seq, slot: slot})
	i := len(h.ents) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h.ents[i].less(h.ents[p]) {
			break
		}
		h.ents[i], h.ents[p] = h.ents[p], h.ents[i]
		i = p
	}
}

// pop removes the first event into ev and returns its seq.
func (h *evHeap) pop(ev *schema.Event) uint64 {
	top := h.ents[0]
	n := len(h.ents) - 1
	h.ents[0] = h.ents[n]
	h.ents = h.ents[:n]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && h.ents[l].less(h.ents[m]) {
			m = l
		}
		if r < n && h.ents[r].less(h.ents[m]) {
			m = r
		}
		if m == i {
			break
		}
		h.ents[i], h.ents[m] = h.ents[m], h.ents[i]
		i = m
	}
	*ev = h.slab[top.slot]
	h.slab[top.slot] = schema.Event{}
	h.free = append(h.free, top.slot)
	return top.seq
}

// appendSince encodes the buffered events with seq > after, in seq order,
// and returns the first and last seq encoded (0, 0 when none).
func (h *evHeap) appendSince(b []byte, after uint64) ([]byte, uint64, uint64) {
	var sel []heapEnt
	for _, e := range h.ents {
		if e.seq > after {
			sel = append(sel, e)
		}
	}
	if len(sel) == 0 {
		return b, 0, 0
	}
	sort.Slice(sel, func(i, j int) bool { return sel[i].seq < sel[j].seq })
	// size the blob from the last one's bytes per event: one allocation
	// instead of a doubling series (checkpoints write 100,000s of events)
	start := len(b)
	b = slices.Grow(b, len(sel)*max(h.encSize, 128))
	for _, e := range sel {
		b = appendEvent(b, e.seq, &h.slab[e.slot])
	}
	h.encSize = (len(b)-start)/len(sel) + 16
	return b, sel[0].seq, sel[len(sel)-1].seq
}

// seqs returns every buffered seq.
func (h *evHeap) seqs() []uint64 {
	out := make([]uint64, len(h.ents))
	for i, e := range h.ents {
		out[i] = e.seq
	}
	return out
}

var errShortVarint = errors.New("truncated varint record")

func encodeVarints(xs ...int64) []byte {
	b := make([]byte, 0, 10*len(xs))
	for _, x := range xs {
		b = binary.AppendVarint(b, x)
	}
	return b
}

func decodeVarints(b []byte, n int) ([]int64, error) {
	out := make([]int64, n)
	for i := range out {
		x, k := binary.Varint(b)
		if k <= 0 {
			return nil, errShortVarint
		}
		out[i] = x
		b = b[k:]
	}
	return out, nil
}

// eventStrings lists the string fields of schema.Event in codec order.
// TestEventCodecCoversSchema fails when schema.Event gains a field the
// codec does not carry.
func eventStrings(ev *schema.Event) [29]*string {
	return [29]*string{&ev.Source, &ev.ID, &ev.Principal, &ev.PrincipalName, &ev.PrincipalType, &ev.Session,
		&ev.Account, &ev.AccessKey, &ev.TokenHMAC, &ev.AuthMethod, &ev.Action, &ev.Resource, &ev.Mount,
		&ev.MountType, &ev.Namespace, &ev.Region, &ev.SourceIP, &ev.SourceIPRaw, &ev.UserAgent, &ev.Outcome,
		&ev.Error, &ev.FailureKind, &ev.IssuedKey, &ev.LeaseID, &ev.KeyPrincipal, &ev.KeyIssue,
		&ev.Country, &ev.ASOrg, &ev.NetLabel}
}

// appendEvent encodes ev compactly (buffered events are persisted at every
// checkpoint, so this is on the hot path of a checkpoint).
func appendEvent(b []byte, seq uint64, ev *schema.Event) []byte {
	b = binary.AppendUvarint(b, seq)
	b = binary.AppendVarint(b, ev.Time.Unix())
	b = binary.AppendUvarint(b, uint64(ev.Time.Nanosecond()))
	for _, p := range eventStrings(ev) {
		b = binary.AppendUvarint(b, uint64(len(*p)))
		b = append(b, *p...)
	}
	b = binary.AppendUvarint(b, uint64(len(ev.Policies)))
	for _, p := range ev.Policies {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	var flags byte
	if ev.SourceIsService {
		flags |= 1
	}
	if ev.Auth {
		flags |= 2
	}
	if ev.ReadOnly {
		flags |= 4
	}
	b = append(b, flags)
	b = binary.AppendVarint(b, int64(ev.HTTPStatus))
	b = binary.AppendVarint(b, int64(ev.ASN))
	// the original record, for rules that read it after release
	b = binary.AppendUvarint(b, uint64(len(ev.Raw)))
	return append(b, ev.Raw...)
}

var errBadEvent = errors.New("corrupt buffered event")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	x, k := binary.Uvarint(d.b)
	if k <= 0 {
		d.err = errBadEvent
		return 0
	}
	d.b = d.b[k:]
	return x
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	x, k := binary.Varint(d.b)
	if k <= 0 {
		d.err = errBadEvent
		return 0
	}
	d.b = d.b[k:]
	return x
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errBadEvent
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// readEvent decodes one event written by appendEvent.
func (d *decoder) readEvent(ev *schema.Event) uint64 {
	seq := d.uvarint()
	sec := d.varint()
	ns := d.uvarint()
	if ns >= 1e9 {
		d.err = errBadEvent
	}
	ev.Time = time.Unix(sec, int64(ns)).UTC()
	for _, p := range eventStrings(ev) {
		*p = d.str()
	}
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err = errBadEvent
		return 0
	}
	ev.Policies = nil
	for i := uint64(0); i < n && d.err == nil; i++ {
		ev.Policies = append(ev.Policies, d.str())
	}
	if d.err != nil || len(d.b) == 0 {
		d.err = errBadEvent
		return 0
	}
	flags := d.b[0]
	d.b = d.b[1:]
	ev.SourceIsService, ev.Auth, ev.ReadOnly = flags&1 != 0, flags&2 != 0, flags&4 != 0
	ev.HTTPStatus = int(d.varint())
	ev.ASN = int(d.varint())
	ev.Raw = nil
	if raw := d.str(); raw != "" {
		ev.Raw = []byte(raw)
	}
	if d.err != nil {
		return 0
	}
	return seq
}
