package detect

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"auditwatch/schema"
)

// TestNewLocation: after the learning period a principal's first use of a
// new country, or of a new AS within a known country, raises one finding
// (the reason names the place and the places known); allowlisted
// countries and AS numbers, AWS-service calls and events without network
// context never do; a new place is reported once.
func TestNewLocation(t *testing.T) {
	cfg := testConfig(learnEnd)
	cfg.NewLocation.AllowASNs = []int{64496}
	cfg.NewLocation.AllowCountries = []string{"ch"}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	const p = "arn:aws:iam::123456789012:role/app"
	at := func(id string, m time.Duration, ip, cc string, asn int, org string) schema.Event {
		ev := ctev(id, m, p, ip, "secretsmanager:GetSecretValue", "x")
		ev.Country, ev.ASN, ev.ASOrg = cc, asn, org
		return ev
	}
	var evs []schema.Event
	for i := range 10 {
		evs = append(evs, at(fmt.Sprintf("h%d", i), time.Duration(i)*time.Minute, "198.51.100.7", "DE", 64500, "Example Carrier GmbH"))
	}
	later := 2 * time.Hour
	svc := at("svc", later+time.Minute, "", "BR", 64511, "")
	svc.SourceIsService = true
	evs = append(evs,
		at("same", later+2*time.Minute, "198.51.100.8", "DE", 64500, "Example Carrier GmbH"),
		svc,
		at("noctx", later+3*time.Minute, "203.0.113.9", "", 0, ""),
		at("newas", later+4*time.Minute, "192.0.2.1", "DE", 64501, "Other Carrier AG"),
		at("allowedas", later+5*time.Minute, "2001:db8:1::1", "US", 64496, "Example Cloud, Inc."), // new country, but an allowlisted AS (cloud NAT)
		at("allowedcc", later+6*time.Minute, "203.0.113.20", "CH", 64999, "Swiss Example"),
		at("newcc", later+7*time.Minute, "203.0.113.50", "BR", 64511, "Hosting Example Ltda"),
		at("newcc-again", later+8*time.Minute, "203.0.113.51", "BR", 64511, "Hosting Example Ltda"),
	)
	fs, _ := run(t, cfg, evs)
	var got []string
	for _, f := range ofDetector(fs, schema.DetectorNewLocation) {
		got = append(got, f.EventIDs[0])
		switch f.EventIDs[0] {
		case "newcc":
			if !strings.Contains(f.Reason, "country BR") || !strings.Contains(f.Reason, "DE") || !strings.Contains(f.Summary, "(BR, AS64511 Hosting Example Ltda)") {
				t.Errorf("newcc: summary %q reason %q", f.Summary, f.Reason)
			}
			if f.Attributes["country"] != "BR" || f.Attributes["asn"] != "64511" {
				t.Errorf("newcc attributes %v", f.Attributes)
			}
		case "newas":
			if !strings.Contains(f.Reason, "AS64501 Other Carrier AG") || !strings.Contains(f.Reason, "AS64500") {
				t.Errorf("newas: reason %q", f.Reason)
			}
		}
	}
	want := []string{"newas", "newcc"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("new_location on %v, want %v", got, want)
	}
}

func TestNewLocationConfig(t *testing.T) {
	cfg := testConfig(learnEnd)
	cfg.NewLocation.AllowCountries = []string{"Germany"}
	cfg.NewLocation.AllowASNs = []int{-1}
	cfg.SetDefaults()
	err := cfg.Validate()
	for _, want := range []string{"new_location.allow_countries[0]", "new_location.allow_asns[0]"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}
