package vault

import (
	"fmt"
	"testing"

	"auditwatch/schema"
)

func entry(id string, response bool, principal string) Entry {
	return Entry{Response: response, HasID: id != "", Event: schema.Event{ID: id, Principal: principal, Resource: "req-" + id}}
}

func TestPairerMergesAndRecycles(t *testing.T) {
	p := NewPairer(3)
	var out []schema.Event
	// many request/response rounds, interleaved two deep, so slots are
	// recycled while others are pending
	for i := 0; i < 200; i++ {
		a, b := fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)
		out = p.Add(entry(a, false, ""), int64(4*i), out[:0])
		out = p.Add(entry(b, false, ""), int64(4*i+1), out)
		if len(out) != 0 {
			t.Fatalf("round %d: requests released %v", i, out)
		}
		if off, ok := p.Oldest(); !ok || off != int64(4*i) {
			t.Fatalf("round %d: oldest = %d, %v", i, off, ok)
		}
		out = p.Add(Entry{Response: true, HasID: true, Event: schema.Event{ID: b, Principal: "pb"}}, int64(4*i+2), out[:0])
		out = p.Add(Entry{Response: true, HasID: true, Event: schema.Event{ID: a, Principal: "pa"}}, int64(4*i+3), out)
		if len(out) != 2 || out[0].ID != b || out[0].Resource != "req-"+b || out[1].ID != a || out[1].Resource != "req-"+a || out[1].Principal != "pa" {
			t.Fatalf("round %d: merged %+v", i, out)
		}
		if p.Len() != 0 {
			t.Fatalf("round %d: %d still held", i, p.Len())
		}
	}
	if p.Unpaired != 0 || p.Evicted != 0 {
		t.Fatalf("unpaired %d evicted %d", p.Unpaired, p.Evicted)
	}
}

func TestPairerBoundsAndFlush(t *testing.T) {
	p := NewPairer(2)
	out := p.Add(entry("r1", false, "x"), 0, nil)
	out = p.Add(entry("r2", false, "y"), 10, out)
	out = p.Add(entry("r3", false, "z"), 20, out) // evicts r1
	if len(out) != 1 || out[0].ID != "r1" || p.Evicted != 1 {
		t.Fatalf("eviction released %+v (evicted %d)", out, p.Evicted)
	}
	out = p.Add(entry("r2", false, "y2"), 30, out[:0]) // same request again: first one released
	if len(out) != 1 || out[0].ID != "r2" || out[0].Principal != "y" {
		t.Fatalf("duplicate released %+v", out)
	}
	out = p.Add(entry("", false, "noid"), 40, out[:0])
	if off, ok := p.Oldest(); !ok || off != 20 {
		t.Fatalf("oldest = %d, %v; want 20", off, ok)
	}
	out = p.Flush(out[:0])
	if len(out) != 3 || out[0].ID != "r3" || out[1].ID != "r2" || out[2].Principal != "noid" {
		t.Fatalf("flush gave %+v", out)
	}
	if _, ok := p.Oldest(); ok || p.Len() != 0 {
		t.Fatal("flush left entries held")
	}
	if p.Unpaired != 5 {
		t.Fatalf("unpaired = %d, want 5", p.Unpaired)
	}
}

func TestPairerWithoutIDs(t *testing.T) {
	p := NewPairer(0)
	req := Entry{Event: schema.Event{ID: "vault-h", Resource: "kmip"}}
	resp := Entry{Response: true, Event: schema.Event{ID: "vault-h", Outcome: schema.OutcomeSuccess}}
	out := p.Add(req, 0, nil)
	out = p.Add(resp, 5, out)
	if len(out) != 1 || out[0].Resource != "kmip" || out[0].Outcome != schema.OutcomeSuccess {
		t.Fatalf("no-id pair gave %+v", out)
	}
	out = p.Add(req, 10, out[:0])
	out = p.Add(entry("r1", false, ""), 20, out) // releases the no-id request
	if len(out) != 1 || out[0].ID != "vault-h" || p.Unpaired != 1 {
		t.Fatalf("got %+v, unpaired %d", out, p.Unpaired)
	}
}
