package cloudtrail

import (
	"reflect"
	"testing"

	"github.com/valyala/fastjson"

	"auditwatch/ingest/intern"
	"auditwatch/schema"
)

// compareLine checks ParseLine against fastjson + Parse on one record and
// reports whether ParseLine took it.
func compareLine(t *testing.T, line, general *Parser, in []byte, fb Fallback) bool {
	t.Helper()
	var got schema.Event
	gerr, ok := line.ParseLine(in, fb, &got)
	if !ok {
		return false
	}
	v, err := fastjson.ParseBytes(in)
	if err != nil {
		t.Fatalf("%s\nParseLine took a record fastjson refuses: %v", in, err)
	}
	if !IsRecord(v) {
		t.Fatalf("%s\nParseLine took a record that is not a CloudTrail record", in)
	}
	for _, k := range []string{"Records", "Events", "digestStartTime", "digestEndTime", "detail-type", "detail"} {
		if v.Get(k) != nil {
			t.Fatalf("%s\nParseLine took a record with the envelope key %q", in, k)
		}
	}
	var want schema.Event
	werr := general.Parse(v, fb, &want)
	if (gerr == nil) != (werr == nil) || (gerr != nil && gerr.Error() != werr.Error()) {
		t.Fatalf("%s\nerror %v, Parse %v", in, gerr, werr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s\nParseLine %+v\nParse     %+v", in, got, want)
	}
	return true
}

func TestParseLineMatchesParseOnLogs(t *testing.T) {
	line := Parser{Strings: intern.New(64, 0)}
	general := Parser{Strings: intern.New(64, 0)}
	fb := Fallback{Now: fixedNow, Region: "r", Account: "a"}
	taken, total := 0, 0
	for _, rec := range records(t) {
		total++
		if compareLine(t, &line, &general, rec, fb) {
			taken++
		}
	}
	t.Logf("ParseLine took %d of %d records", taken, total)
	// every record of the repository's sample is an ordinary one
	if min := minCompared(t) - 30; taken < min {
		t.Fatalf("ParseLine took only %d of %d records, want %d or more", taken, total, min)
	}
	if line.Strings.Resets == 0 {
		t.Fatal("the intern table never filled up: the test does not exercise its bound")
	}
}

func TestParseLineDeclines(t *testing.T) {
	for _, in := range []string{
		`{"eventName":"X"}`, // no eventID: the id is a hash of fastjson's rendering
		`{"eventID":"1","eventSource":"s3.amazonaws.com"}`,                          // no eventName
		`{"eventID":"1","eventName":"X\u0041"}`,                                     // escaped string read
		`{"eventID":"1","event\u004eame":"X"}`,                                      // escaped key
		`{"eventID":"1","eventName":"X","eventName":"Y"}`,                           // duplicate key
		`{"eventID":"1","eventName":"X","userIdentity":{"arn":"a","arn":"b"}}`,      // duplicate nested key
		`{"eventID":"1","eventName":"X","resources":[{"ARN":"a","ARN":"b"}]}`,       // duplicate in an element
		`{"eventID":"1","eventName":"X","detail-type":"y"}`,                         // envelope key
		`{"eventID":"1","eventName":"X","Records":1}`,                               // container key
		`{"eventID":"1","eventName":"X","x":nan}`,                                   // fastjson's own leniency
		`{"eventID":"1","eventName":"X","x":[1,]}`,                                  // malformed
		`{"eventID":"1","eventName":"X"} x`,                                         // trailing text
		`{"eventID":"1","eventName":"X"`,                                            // truncated
		`{"eventID":"1","eventName":"X","requestParameters":{"secretId":"a\"b"}}`,   // escaped value read
		`{"eventID":"1","eventName":"X","responseElements":{"ConsoleLogin":"F\/"}}`, // escaped value read
	} {
		var p Parser
		var ev schema.Event
		if _, ok := p.ParseLine([]byte(in), Fallback{Now: fixedNow}, &ev); ok {
			t.Errorf("ParseLine took %s", in)
		}
	}
}

// The fast path takes the records it should: every field it reads, in
// every shape Parse understands.
func TestParseLineTakes(t *testing.T) {
	for _, in := range []string{
		`{"eventID":"1","eventName":"GetSecretValue","eventSource":"secretsmanager.amazonaws.com","eventTime":"2024-01-01T00:00:00Z","requestParameters":{"secretId":"s"}}`,
		`{"eventID":"2","eventName":"X","p_event_time":"2022-09-28 17:30:05.000000000","readOnly":"TRUE","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::1:assumed-role/r/s","sessionContext":{"sessionIssuer":{"arn":"arn:aws:iam::1:role/r","userName":"r"}}}}`,
		`{"eventID":"3","eventName":"ConsoleLogin","eventSource":"signin.amazonaws.com","responseElements":{"ConsoleLogin":"Failure"},"errorMessage":"locked","readOnly":true}`,
		`{"eventID":"4","eventName":"X","requestParameters":{"secretIdList":["a","b"],"name":"n"},"resources":[{"ARN":"arn:x"},{"ARN":"arn:aws:secretsmanager:r:1:secret:y"},3]}`,
		`{"eventID":"5","eventName":"X","requestParameters":{"secretIdList":[1],"bucketName":"b"},"resources":{"ARN":"a"},"userIdentity":"x","sourceIPAddress":"AWS Internal"}`,
		`{"eventID":"6","eventName":"AssumeRole","eventSource":"sts.amazonaws.com","errorCode":"AccessDenied","userIdentity":{"invokedBy":"svc","accountId":"1"},"recipientAccountId":"2"}`,
	} {
		line := Parser{Strings: intern.New(0, 0)}
		general := Parser{Strings: intern.New(0, 0)}
		if !compareLine(t, &line, &general, []byte(in), Fallback{Now: fixedNow}) {
			t.Errorf("ParseLine declined %s", in)
		}
	}
}

func FuzzParseLine(f *testing.F) {
	f.Add([]byte(`{"eventVersion":"1.08","eventID":"e","eventTime":"2023-07-10T11:42:36Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","userIdentity":{"type":"FederatedUser","arn":"arn:aws:sts::1:federated-user/x","sessionContext":{"sessionIssuer":{"arn":"arn:aws:iam::1:user/y"}}},"responseElements":{"ConsoleLogin":"Failure"},"errorMessage":"account locked"}`))
	f.Add([]byte(`{"eventID":"e2","eventName":"GetSecretValue","eventSource":"secretsmanager.amazonaws.com","requestParameters":{"secretIdList":["a"],"name":"n"},"resources":[{"ARN":"arn:aws:secretsmanager:x:secret:y"}],"readOnly":true,"sourceIPAddress":"[::ffff:1.2.3.4]:80"}`))
	f.Add([]byte(`{"eventID":"e3","p_event_time":"2022-09-28 17:30:05.000000000","eventName":"X","userIdentity":{"type":"AWSAccount","principalId":""},"readOnly":"true","errorCode":"200"}`))
	line := Parser{Strings: intern.New(16, 8)}
	general := Parser{Strings: intern.New(16, 8)}
	f.Fuzz(func(t *testing.T, in []byte) {
		compareLine(t, &line, &general, in, Fallback{Now: fixedNow, Region: "r", Account: "a"})
	})
}
