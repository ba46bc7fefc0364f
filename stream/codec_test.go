package stream

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"auditwatch/ingest"
	"auditwatch/schema"
)

// TestDecodeEventRoundTrip: every event of the OpenBao scenario and a
// hand-made one with every field survives AppendJSON → DecodeEvent, and
// DecodeEvent agrees with encoding/json.
func TestDecodeEventRoundTrip(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "openbao-scenario", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	r := ingest.NewReader(bytes.NewReader(raw), "scenario", ingest.DefaultOptions())
	evs := []schema.Event{{
		Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Source: "vault", ID: "id\"\\\u2028x", Principal: "p", PrincipalName: "n",
		PrincipalType: "user", Session: "s", Account: "a", AccessKey: "k", Policies: []string{"default", "röot"}, TokenHMAC: "h",
		AuthMethod: "userpass", Action: "vault:read", Resource: "secret/data/x", Mount: "secret/", MountType: "kv", Namespace: "ns",
		Region: "eu", SourceIP: "10.0.0.1", SourceIPRaw: "10.0.0.1:1", SourceIsService: true, UserAgent: "ua\x01", Outcome: "failure",
		Error: "denied", FailureKind: "permission_denied", Auth: true, ReadOnly: true, HTTPStatus: 403,
	}}
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil {
			evs = append(evs, ev)
		}
	}
	if len(evs) < 700 {
		t.Fatalf("only %d events", len(evs))
	}
	for i := range evs {
		b := evs[i].AppendJSON(nil)
		var got, std schema.Event
		if err := DecodeEvent(b, &got); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if err := json.Unmarshal(b, &std); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, std) {
			t.Fatalf("event %d: DecodeEvent\n%+v\nencoding/json\n%+v", i, got, std)
		}
		if !bytes.Equal(got.AppendJSON(nil), b) {
			t.Fatalf("event %d does not round-trip:\n%s\n%s", i, b, got.AppendJSON(nil))
		}
	}
}

func TestDecodeEventErrors(t *testing.T) {
	for _, in := range []string{``, `[]`, `{"time":"yesterday"}`, `{"auth":"yes"}`, `{"policies":"x"}`, `{"http_status":"x"}`, `{"id":1}`} {
		var ev schema.Event
		if err := DecodeEvent([]byte(in), &ev); !errors.Is(err, ErrEventJSON) {
			t.Errorf("%q: err = %v, want ErrEventJSON", in, err)
		}
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(`{"time":"2026-01-02T03:04:05Z","id":"x","policies":["a"],"auth":true,"http_status":200}`))
	f.Add([]byte(`{"id":null,"unknown":{"a":[1,2]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev schema.Event
		if err := DecodeEvent(b, &ev); err != nil {
			if !errors.Is(err, ErrEventJSON) {
				t.Fatalf("error %v does not wrap ErrEventJSON", err)
			}
			return
		}
		// What decodes re-encodes and decodes again; after one pass
		// (invalid UTF-8 becomes U+FFFD) the encoding is stable.
		var again, third schema.Event
		out := ev.AppendJSON(nil)
		if err := DecodeEvent(out, &again); err != nil {
			t.Fatalf("re-decode %s: %v", out, err)
		}
		out2 := again.AppendJSON(nil)
		if err := DecodeEvent(out2, &third); err != nil {
			t.Fatalf("re-decode %s: %v", out2, err)
		}
		if !bytes.Equal(third.AppendJSON(nil), out2) {
			t.Fatalf("not stable: %s vs %s", out2, third.AppendJSON(nil))
		}
	})
}
