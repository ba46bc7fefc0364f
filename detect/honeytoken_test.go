package detect

import (
	"testing"
	"time"

	"auditwatch/schema"
)

func vaultEv(id, op, path string, outcome string) schema.Event {
	return schema.Event{Time: t0.Add(time.Minute), Source: schema.SourceVault, ID: id, Principal: "entity-1", PrincipalName: "alice",
		Action: "vault:" + op, Resource: path, SourceIP: "10.0.0.9", SourceIPRaw: "10.0.0.9", Outcome: outcome, TokenHMAC: "hmac-sha256:ab",
		Policies: []string{"default", "app"}}
}

func honeyConfig(learnUntil time.Time) Config {
	c := testConfig(learnUntil)
	c.Honeytoken = HoneytokenConfig{
		VaultPaths:     []string{"secret/data/infra/aws-root", "kv/decoys/*"},
		SecretsManager: []string{"arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/payroll-backup-AbCdEf"},
		KMSKeys:        []string{"1234abcd-12ab-34cd-56ef-1234567890ab", "alias/legacy-backup"},
		AccessKeyIDs:   []string{"AKIAIOSFODNN7DECOY01"},
	}
	return c
}

// TestHoneytoken: every access, list or failed attempt on a decoy is one
// critical finding with the request context, during the learning period
// and in replayed history too; nothing else is.
func TestHoneytoken(t *testing.T) {
	hit := []schema.Event{
		vaultEv("v1", "read", "secret/data/infra/aws-root", schema.OutcomeSuccess),
		vaultEv("v2", "list", "secret/metadata/infra/aws-root", schema.OutcomeSuccess),
		vaultEv("v3", "read", "secret/data/infra/aws-root", schema.OutcomeFailure),
		vaultEv("v4", "read", "kv/decoys/db/root", schema.OutcomeSuccess),
		ctev("c1", time.Minute, "arn:aws:iam::123456789012:user/eve", "198.51.100.2", "secretsmanager:GetSecretValue", "prod/payroll-backup"),
		ctev("c2", time.Minute, "arn:aws:iam::123456789012:user/eve", "198.51.100.2", "secretsmanager:DescribeSecret",
			"arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/payroll-backup-AbCdEf"),
		ctev("c3", time.Minute, "arn:aws:iam::123456789012:user/eve", "198.51.100.2", "kms:Decrypt",
			"arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
		ctev("c4", time.Minute, "arn:aws:iam::123456789012:user/eve", "198.51.100.2", "kms:DescribeKey", "alias/legacy-backup"),
	}
	key := ctev("c5", time.Minute, "arn:aws:iam::123456789012:user/ci", "203.0.113.5", "sts:GetCallerIdentity", "")
	key.AccessKey = "AKIAIOSFODNN7DECOY01"
	key.Outcome, key.Error = schema.OutcomeFailure, "InvalidClientTokenId"
	hit = append(hit, key)
	miss := []schema.Event{
		vaultEv("m1", "read", "secret/data/infra/aws-root-2", schema.OutcomeSuccess),
		vaultEv("m2", "list", "secret/metadata/infra/", schema.OutcomeSuccess),
		vaultEv("m3", "read", "kv/decoys", schema.OutcomeSuccess),
		ctev("m4", time.Minute, "arn:aws:iam::123456789012:user/eve", "198.51.100.2", "secretsmanager:GetSecretValue", "prod/payroll"),
		ctev("m5", time.Minute, "arn:aws:iam::123456789012:user/eve", "198.51.100.2", "s3:GetObject", "alias/legacy-backup"),
	}
	for _, learnUntil := range []time.Time{{}, t0.Add(24 * time.Hour)} {
		evs := append(append([]schema.Event(nil), miss...), hit...)
		fs, _ := run(t, honeyConfig(learnUntil), evs)
		got := ofDetector(fs, DetectorHoneytoken)
		if len(got) != len(hit) {
			t.Fatalf("learn_until %v: %d honeytoken findings, want %d: %+v", learnUntil, len(got), len(hit), got)
		}
		for i, f := range got {
			if f.Severity != schema.SeverityCritical || f.EventIDs[0] != hit[i].ID || f.Attributes["honeytoken"] == "" ||
				f.Attributes["matched_as"] == "" || f.Attributes["action"] != hit[i].Action {
				t.Errorf("finding %d: %+v", i, f)
			}
		}
		if got[2].Attributes["outcome"] != schema.OutcomeFailure || got[0].Attributes["token_hmac"] == "" || got[8].Attributes["access_key"] != "AKIAIOSFODNN7DECOY01" {
			t.Errorf("request context missing: %+v %+v", got[2].Attributes, got[8].Attributes)
		}
	}
	// No decoys: the detector is not even built.
	fs, _ := run(t, testConfig(time.Time{}), hit)
	if n := len(ofDetector(fs, DetectorHoneytoken)); n != 0 {
		t.Fatalf("%d honeytoken findings without decoys", n)
	}
}

func TestHoneytokenConfigValidate(t *testing.T) {
	c := honeyConfig(time.Time{})
	c.Honeytoken.VaultPaths = append(c.Honeytoken.VaultPaths, "secret/[")
	c.Honeytoken.AccessKeyIDs = append(c.Honeytoken.AccessKeyIDs, "short")
	c.Honeytoken.KMSKeys = append(c.Honeytoken.KMSKeys, " ")
	c.SetDefaults()
	err := c.Validate()
	for _, want := range []string{"honeytoken.vault_paths[2]", "honeytoken.access_key_ids[1]", "honeytoken.kms_keys[2]"} {
		if err == nil || !containsStr(err.Error(), want) {
			t.Errorf("error %v, want %s", err, want)
		}
	}
}

func containsStr(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// BenchmarkHoneytokenDecision measures the time from an event's arrival
// at the engine (every detector on) to its honeytoken finding, against
// the same engine deciding an ordinary read (the baseline).
func BenchmarkHoneytokenDecision(b *testing.B) {
	for _, bc := range []struct {
		name string
		path string
	}{{"baseline-ordinary-read", "secret/data/payments/db"}, {"honeytoken-read", "secret/data/infra/aws-root"}} {
		b.Run(bc.name, func(b *testing.B) {
			st := openStore(b, b.TempDir())
			defer st.Close()
			e := newEngine(b, honeyConfig(time.Time{}), st, nil)
			defer e.Close()
			ev := vaultEv("x", "read", bc.path, schema.OutcomeSuccess)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ev.ID = "x" + string(rune('a'+i%26))
				ev.Time = t0.Add(time.Duration(i) * time.Millisecond)
				e.Process(ev)
			}
		})
	}
}
