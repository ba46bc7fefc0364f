package detect

import (
	"encoding/binary"
	"errors"
	"sort"

	"auditwatch/schema"
)

// bufItem is one event waiting in the reorder buffer; Seq (arrival order)
// breaks ties between equal event times so that the order is stable.
type bufItem struct {
	Seq   uint64       `json:"seq"`
	Event schema.Event `json:"event"`
}

func (a *bufItem) less(b *bufItem) bool {
	if !a.Event.Time.Equal(b.Event.Time) {
		return a.Event.Time.Before(b.Event.Time)
	}
	return a.Seq < b.Seq
}

// evHeap is a binary min-heap by (event time, seq), without interface
// boxing.
type evHeap struct{ items []bufItem }

func (h *evHeap) len() int       { return len(h.items) }
func (h *evHeap) peek() *bufItem { return &h.items[0] }

func (h *evHeap) push(it bufItem) {
	h.items = append(h.items, it)
	i := len(h.items) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h.items[i].less(&h.items[p]) {
			break
		}
		h.items[i], h.items[p] = h.items[p], h.items[i]
		i = p
	}
}

func (h *evHeap) pop() bufItem {
	top := h.items[0]
	n := len(h.items) - 1
	h.items[0] = h.items[n]
	h.items[n] = bufItem{}
	h.items = h.items[:n]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && h.items[l].less(&h.items[m]) {
			m = l
		}
		if r < n && h.items[r].less(&h.items[m]) {
			m = r
		}
		if m == i {
			break
		}
		h.items[i], h.items[m] = h.items[m], h.items[i]
		i = m
	}
	return top
}

// sorted returns a copy of the buffer in release order.
func (h *evHeap) sorted() []bufItem {
	out := append([]bufItem(nil), h.items...)
	sort.Slice(out, func(i, j int) bool { return out[i].less(&out[j]) })
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
