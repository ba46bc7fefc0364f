package detect

import (
	"reflect"
	"testing"
	"time"

	"auditwatch/schema"
)

func TestEventCodecCoversSchema(t *testing.T) {
	// Every field of schema.Event must survive the buffer codec: fill each
	// with a distinct non-zero value by reflection and compare. Mark and
	// Spans are the exceptions: they describe the reader's pass over one
	// record in this process (the rule set that marked it, offsets into a
	// line) and are never serialized nor stored, so a decoded event has
	// them zero.
	local := map[string]bool{"Mark": true, "Spans": true}
	var ev schema.Event
	v := reflect.ValueOf(&ev).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if local[v.Type().Field(i).Name] {
			continue
		}
		switch f.Kind() {
		case reflect.String:
			f.SetString("v" + v.Type().Field(i).Name + "\x00\xff")
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Int:
			f.SetInt(int64(400 + i))
		case reflect.Slice:
			if f.Type().Elem().Kind() == reflect.Uint8 {
				f.SetBytes([]byte(`{"raw":"record"}`))
				continue
			}
			f.Set(reflect.ValueOf([]string{"a", "", "root"}))
		case reflect.Struct:
			f.Set(reflect.ValueOf(time.Date(2026, 11, 28, 0, 17, 41, 471046528, time.UTC)))
		default:
			t.Fatalf("schema.Event.%s has kind %s the buffer codec does not handle", v.Type().Field(i).Name, f.Kind())
		}
	}
	b := appendEvent(nil, 42, &ev)
	var got schema.Event
	d := decoder{b: b}
	seq := d.readEvent(&got)
	if d.err != nil || seq != 42 || len(d.b) != 0 {
		t.Fatalf("decode: seq %d err %v rest %d", seq, d.err, len(d.b))
	}
	if !reflect.DeepEqual(got, ev) {
		t.Fatalf("round trip lost fields:\n got %+v\nwant %+v", got, ev)
	}
	// The process-local fields are not carried.
	ev.Mark = schema.Mark{Owner: 1, Bits: 2, More: 3}
	ev.Spans.IdentityARN = schema.Span{Off: 4, Len: 5}
	d = decoder{b: appendEvent(nil, 42, &ev)}
	got = schema.Event{}
	if d.readEvent(&got); d.err != nil || got.Mark != (schema.Mark{}) || got.Spans != (schema.Spans{}) {
		t.Fatalf("process-local fields carried by the codec: mark %+v spans %+v err %v", got.Mark, got.Spans, d.err)
	}
	for name := range local {
		if _, ok := v.Type().FieldByName(name); !ok {
			t.Fatalf("schema.Event has no field %s any more: update this test", name)
		}
	}
}

func FuzzEventCodec(f *testing.F) {
	ev := vev("id", time.Second, "p", "10.0.0.1", "read", "secret/data/x")
	ev.Policies = []string{"root"}
	f.Add(appendEvent(nil, 1, &ev))
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		d := decoder{b: b}
		var ev schema.Event
		seq := d.readEvent(&ev)
		if d.err != nil {
			return
		}
		// Whatever decodes re-encodes to a prefix-equal record.
		again := appendEvent(nil, seq, &ev)
		d2 := decoder{b: again}
		var ev2 schema.Event
		if d2.readEvent(&ev2); d2.err != nil || !reflect.DeepEqual(ev, ev2) {
			t.Fatalf("re-decode differs: %v", d2.err)
		}
	})
}
