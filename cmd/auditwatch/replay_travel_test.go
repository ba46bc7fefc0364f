package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"auditwatch/netinfo"
	"auditwatch/netinfo/netinfotest"
	"auditwatch/schema"
)

// TestReplayTravelAcrossRuns: with the geo directory `make geo` lays out
// (country database and countries.json, no city database), impossible
// travel judges by country centroids, and the last place of a key kept in
// replay's state directory survives to the next run: a key used in
// Germany in the first run and in Brazil an hour later in the second
// raises one impossible_travel finding.
func TestReplayTravelAcrossRuns(t *testing.T) {
	dir := t.TempDir()
	geo := filepath.Join(dir, "geo")
	must(t, os.MkdirAll(geo, 0o755))
	must(t, netinfotest.Files(geo, netinfotest.Default))
	must(t, netinfotest.Centroids(geo, netinfotest.Countries))
	cfg := filepath.Join(dir, "auditwatch.yaml")
	must(t, os.WriteFile(cfg, []byte("geo:\n  dir: "+geo+"\n"), 0o600))
	record := func(id, tm, ip string) string {
		return fmt.Sprintf(`{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::111122223333:user/ci","accountId":"111122223333","accessKeyId":"AKIATRAVEL0000000001","userName":"ci"},"eventTime":%q,"eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"eu-central-1","sourceIPAddress":%q,"userAgent":"aws-cli/2","requestParameters":null,"responseElements":null,"eventID":%q,"readOnly":true,"eventType":"AwsApiCall","recipientAccountId":"111122223333"}`, tm, ip, id)
	}
	first, second := filepath.Join(dir, "first.json"), filepath.Join(dir, "second.json")
	must(t, os.WriteFile(first, []byte(`{"Records":[`+record("de-1", "2026-11-20T10:00:00Z", "198.51.100.7")+`]}`), 0o600))
	must(t, os.WriteFile(second, []byte(`{"Records":[`+record("br-1", "2026-11-20T11:00:00Z", "203.0.113.50")+`]}`), 0o600))
	state := filepath.Join(dir, "state")
	travel := func(fs []schema.Finding) []schema.Finding {
		var out []schema.Finding
		for _, f := range fs {
			if f.Detector == schema.DetectorImpossibleTravel {
				out = append(out, f)
			}
		}
		return out
	}
	fs, stderr, code := replay(t, context.Background(), "--config", cfg, "--state", state, first)
	if code != 0 {
		t.Fatalf("first replay exit %d: %s", code, stderr)
	}
	if n := len(travel(fs)); n != 0 {
		t.Fatalf("first run: %d impossible_travel findings", n)
	}
	if _, err := os.Stat(filepath.Join(state, "identity", netinfo.TravelFileName)); err != nil {
		t.Fatalf("no travel state: %v", err)
	}
	fs, stderr, code = replay(t, context.Background(), "--config", cfg, "--state", state, second)
	if code != 0 {
		t.Fatalf("second replay exit %d: %s", code, stderr)
	}
	tf := travel(fs)
	if len(tf) != 1 || tf[0].EventIDs[0] != "br-1" || tf[0].Attributes["previous_location"] != "DE" {
		t.Fatalf("second run: impossible_travel %+v (all %d)", tf, len(fs))
	}
}
