package stream

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"auditwatch/schema"
)

func TestEventRawRoundTrip(t *testing.T) {
	raw := []byte(`{"eventSource":"kms.amazonaws.com","eventName":"DisableKey","requestParameters":{"keyId":"` + strings.Repeat("k", 2000) + `"}}`)
	ev := schema.Event{Time: time.Date(2026, 11, 2, 3, 4, 5, 0, time.UTC), Source: "cloudtrail", ID: "e1", Action: "kms:DisableKey", Raw: raw}
	v, typ, err := Encode(&Record{Event: &ev})
	if err != nil {
		t.Fatal(err)
	}
	if typ != typeEventRaw {
		t.Fatalf("type %q", typ)
	}
	if len(v) >= len(raw) {
		t.Errorf("value of %d bytes for a %d-byte record: not compressed", len(v), len(raw))
	}
	var r Record
	if err := Decode(&r, typ, v); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.Event.Raw, raw) || r.Event.ID != "e1" || !r.Event.Time.Equal(ev.Time) {
		t.Errorf("round trip: %+v", r.Event)
	}
	// without a record: the plain event type, as before
	ev.Raw = nil
	v, typ, _ = Encode(&Record{Event: &ev})
	if typ != typeEvent || bytes.IndexByte(v, '\n') >= 0 {
		t.Errorf("event without record: type %q", typ)
	}
}

func TestEventRawCorrupt(t *testing.T) {
	ev := schema.Event{Source: "vault", ID: "x", Raw: []byte(`{"type":"response"}`)}
	v, typ, _ := Encode(&Record{Event: &ev})
	for name, bad := range map[string][]byte{
		"no separator": bytes.ReplaceAll(v, []byte("\n"), []byte(" ")),
		"cut record":   v[:len(v)-3],
		"bad json":     append([]byte("{x\n"), v[bytes.IndexByte(v, '\n')+1:]...),
	} {
		var r Record
		err := Decode(&r, typ, bad)
		if !errors.Is(err, ErrEventJSON) {
			t.Errorf("%s: error %v, want ErrEventJSON", name, err)
		}
	}
}

func FuzzDecodeEventRaw(f *testing.F) {
	ev := schema.Event{Source: "vault", ID: "x", Raw: []byte(`{"type":"response"}`)}
	v, _, _ := Encode(&Record{Event: &ev})
	f.Add(v)
	f.Add([]byte("{}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		_ = Decode(&r, typeEventRaw, b)
	})
}
