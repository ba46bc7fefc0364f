package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"

	"auditwatch/schema"
)

func FuzzReader(f *testing.F) {
	f.Add([]byte(goodCT + "\n" + vaultPair("r1", `{"display_name":"root"}`, "[::1]:80", "", "", "")))
	f.Add([]byte(`{"Records":[` + goodCT + `]}`))
	f.Add([]byte(`{"Events":[{"CloudTrailEvent":"{\"eventName\":\"X\"}"}]}`))
	f.Add([]byte(`{"detail-type":"AWS API Call via CloudTrail","detail":{"eventName":"X","eventSource":"s3.amazonaws.com"}}`))
	f.Add([]byte("<38>Nov 13 h vault[1]: {\"type\":\"request\",\"request\":{\"path\":\"auth/userpass/login/x\"}}\n"))
	f.Add([]byte(`{"type":"kmip-response","request":{},"response":{"data":{"kmip_response":{"tag":"BatchItem","value":[{"tag":"ResultStatus","value":"0x1"}]}}}}`))
	f.Add([]byte(`{"eventname":"x","useridentity":{"type":"AssumedRole","arn":"arn:aws:sts::1:assumed-role/a/b"}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		opts := testOptions()
		opts.MaxRecordBytes = 4096
		opts.MaxDepth = 16
		opts.MaxPending = 4
		r := NewReader(bytes.NewReader(in), "fuzz", opts)
		var events, rejected int64
		prevSafe := int64(0)
		for i := 0; ; i++ {
			if i > 4*len(in)+8 {
				t.Fatal("Next does not reach EOF")
			}
			ev, err := r.Next()
			if err == io.EOF {
				break
			}
			if safe := r.SafeOffset(); safe < prevSafe || safe > int64(len(in))*64+64 {
				t.Fatalf("SafeOffset went from %d to %d", prevSafe, safe)
			} else {
				prevSafe = safe
			}
			if err != nil {
				var re *RecordError
				if !errors.As(err, &re) || re.Input != "fuzz" {
					t.Fatalf("not a RecordError naming the input: %v", err)
				}
				rejected++
				continue
			}
			events++
			if ev.Source != schema.SourceCloudTrail && ev.Source != schema.SourceVault {
				t.Fatalf("event without a source: %+v", ev)
			}
			if ev.ID == "" || (ev.Outcome != schema.OutcomeSuccess && ev.Outcome != schema.OutcomeFailure) {
				t.Fatalf("event without id or outcome: %+v", ev)
			}
			if (ev.Outcome == schema.OutcomeFailure) != (ev.FailureKind != "") {
				t.Fatalf("failure kind %q with outcome %s", ev.FailureKind, ev.Outcome)
			}
			var back schema.Event
			if err := json.Unmarshal(ev.AppendJSON(nil), &back); err != nil {
				t.Fatalf("AppendJSON output does not decode: %v", err)
			}
		}
		st := r.Stats()
		if st.Events != events || st.Rejected != rejected {
			t.Fatalf("stats %+v disagree with %d events, %d rejected", st, events, rejected)
		}
	})
}
