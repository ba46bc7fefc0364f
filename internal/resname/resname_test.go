package resname

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"auditwatch/schema"
)

func TestName(t *testing.T) {
	for _, c := range []struct {
		ev   schema.Event
		want string
	}{
		{schema.Event{Source: schema.SourceVault, Resource: "secret/data/payments/db", Mount: "secret/", MountType: "kv"}, "secret/payments/db"},
		{schema.Event{Source: schema.SourceVault, Resource: "secret/metadata/payments/db/", Mount: "secret/", MountType: "kv"}, "secret/payments/db"},
		{schema.Event{Source: schema.SourceVault, Resource: "kv1/payments/db", Mount: "kv1/", MountType: "kv"}, "kv1/payments/db"},
		{schema.Event{Source: schema.SourceVault, Resource: "secret/data/x", Namespace: "team-a/"}, "team-a/secret/x"},
		{schema.Event{Source: schema.SourceVault, Resource: "auth/token/lookup-self"}, "auth/token/lookup-self"},
		{schema.Event{Source: schema.SourceCloudTrail, Action: "secretsmanager:GetSecretValue", Resource: "arn:aws:secretsmanager:us-east-1:1:secret:prod-db-AbC123"}, "prod-db"},
		{schema.Event{Source: schema.SourceCloudTrail, Action: "secretsmanager:GetSecretValue", Resource: "prod-db"}, "prod-db"},
		{schema.Event{Source: schema.SourceCloudTrail, Action: "kms:Decrypt", Resource: "arn:aws:kms:us-east-1:1:key/1234abcd"}, "1234abcd"},
		{schema.Event{Source: schema.SourceCloudTrail, Action: "kms:Decrypt", Resource: "arn:aws:kms:us-east-1:1:alias/app"}, "alias/app"},
		{schema.Event{Source: schema.SourceCloudTrail, Action: "iam:GetUser", Resource: "arn:aws:iam::1:user/bob"}, "arn:aws:iam::1:user/bob"},
	} {
		if got := Name(&c.ev); got != c.want {
			t.Errorf("Name(%q) = %q, want %q", c.ev.Resource, got, c.want)
		}
	}
}

func TestCandidates(t *testing.T) {
	for in, want := range map[string][]string{
		"secret/payments/db":      {"secret/payments/db"},
		"secret/data/payments/db": {"secret/data/payments/db", "secret/payments/db"},
		"/secret/metadata/x/":     {"/secret/metadata/x/", "secret/metadata/x", "secret/x"},
		"prod-db":                 {"prod-db"},
		"arn:aws:secretsmanager:us-east-1:1:secret:prod-db-AbC123": {"arn:aws:secretsmanager:us-east-1:1:secret:prod-db-AbC123", "prod-db", "prod-db-AbC123"},
		"arn:aws:kms:us-east-1:1:key/k1":                           {"arn:aws:kms:us-east-1:1:key/k1", "k1"},
	} {
		if got := Candidates(in); !reflect.DeepEqual(got, want) {
			t.Errorf("Candidates(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzCandidates: bounded output, the input first, and every name an
// event stores for the same text is among them.
func FuzzCandidates(f *testing.F) {
	for _, s := range []string{"secret/data/a/b", "arn:aws:secretsmanager:r:1:secret:n-AbC123", "arn:aws:kms:r:1:key/k", "a//data//", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := Candidates(s)
		if len(c) == 0 || len(c) > MaxCandidates || c[0] != strings.TrimSpace(s) {
			t.Fatalf("Candidates(%q) = %q", s, c)
		}
		for _, x := range c {
			if len(x) > len(s) || (utf8.ValidString(s) && !utf8.ValidString(x)) {
				t.Fatalf("candidate %q of %q", x, s)
			}
		}
		if strings.TrimSpace(s) != s {
			return
		}
		ev := schema.Event{Source: schema.SourceCloudTrail, Resource: s}
		if strings.HasPrefix(s, "arn:") && !contains(c, Name(&ev)) {
			t.Fatalf("Name %q of ARN %q not among candidates %q", Name(&ev), s, c)
		}
	})
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}
