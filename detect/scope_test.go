package detect

import (
	"testing"

	"auditwatch/schema"
)

// vaultAt is a Vault event on a mount of a given type; mountType "" leaves
// the classification to the configured mounts.
func vaultAt(op, path, mount, mountType string) schema.Event {
	return schema.Event{Source: schema.SourceVault, Action: "vault:" + op, Resource: path, Mount: mount, MountType: mountType,
		Principal: "p", PrincipalType: "entity", Outcome: schema.OutcomeSuccess}
}

// TestScopeReadsOfSecretMaterial: the default scope is reading secret
// material on any engine; lists, metadata and writes are not access;
// service-invoked CloudTrail calls belong to their originating call.
func TestScopeReadsOfSecretMaterial(t *testing.T) {
	var c Config
	c.SetDefaults()
	s := newScope(c.FirstTimeAccess.Scope, c.FirstTimeAccess.VaultMounts)
	decrypt := ctev("d", 0, "arn:aws:iam::1:role/app", "", "kms:Decrypt", "arn:aws:kms:eu-west-1:1:key/k")
	invoked := decrypt
	invoked.SourceIPRaw, invoked.SourceIsService, invoked.InvokedBy = "secretsmanager.amazonaws.com", true, "secretsmanager.amazonaws.com"
	serviceNamed := invoked // an old record or buffer without invoked_by
	serviceNamed.InvokedBy = ""
	cases := []struct {
		name string
		ev   schema.Event
		want bool
		res  string
	}{
		{"kv2 data read", vaultAt("read", "secret/data/app/db", "secret/", "kv"), true, "secret/app/db"},
		{"kv1 read", vaultAt("read", "kv1/app/db", "kv1/", "kv"), true, "kv1/app/db"},
		{"kv2 metadata read", vaultAt("read", "secret/metadata/app/db", "secret/", "kv"), false, ""},
		{"kv2 subkeys read", vaultAt("read", "secret/subkeys/app/db", "secret/", "kv"), false, ""},
		{"kv list", vaultAt("list", "secret/metadata/app/", "secret/", "kv"), false, ""},
		{"kv write", vaultAt("update", "secret/data/app/db", "secret/", "kv"), false, ""},
		{"aws creds", vaultAt("read", "aws/creds/deploy", "aws/", "aws"), true, "aws/creds/deploy"},
		{"aws sts", vaultAt("update", "aws/sts/deploy", "aws/", "aws"), true, "aws/sts/deploy"},
		{"aws role config", vaultAt("read", "aws/roles/deploy", "aws/", "aws"), false, ""},
		{"database creds", vaultAt("read", "database/creds/readonly", "database/", "database"), true, "database/creds/readonly"},
		{"database static creds", vaultAt("read", "db2/static-creds/app", "db2/", "database"), true, "db2/static-creds/app"},
		{"ssh sign", vaultAt("update", "ssh/sign/ops", "ssh/", "ssh"), true, "ssh/sign/ops"},
		{"pki issue", vaultAt("update", "pki/issue/web", "pki/", "pki"), true, "pki/issue/web"},
		{"pki read ca", vaultAt("read", "pki/cert/ca", "pki/", "pki"), false, ""},
		{"transit decrypt", vaultAt("update", "transit/decrypt/payments", "transit/", "transit"), true, "transit/decrypt/payments"},
		{"transit encrypt", vaultAt("update", "transit/encrypt/payments", "transit/", "transit"), false, ""},
		{"totp code", vaultAt("read", "totp/code/alice", "totp/", "totp"), true, "totp/code/alice"},
		{"token create", vaultAt("update", "auth/token/create", "auth/token/", "token"), true, "auth/token/create"},
		{"token lookup-self", vaultAt("read", "auth/token/lookup-self", "auth/token/", "token"), false, ""},
		{"unwrap", vaultAt("update", "sys/wrapping/unwrap", "sys/", "system"), true, "sys/wrapping/unwrap"},
		{"sys mounts", vaultAt("read", "sys/mounts", "sys/", "system"), false, ""},
		{"no mount_type logged: default mount aws/", vaultAt("read", "aws/creds/deploy", "", ""), true, "aws/creds/deploy"},
		{"no mount_type logged: unknown mount", vaultAt("read", "cloud/creds/deploy", "", ""), false, ""},
		{"secret value", ctev("g", 0, "u", "10.0.0.1", "secretsmanager:GetSecretValue", "x"), true, "arn:aws:secretsmanager:eu-west-1:123456789012:secret:x"},
		{"describe secret", ctev("g", 0, "u", "10.0.0.1", "secretsmanager:DescribeSecret", "x"), false, ""},
		{"direct kms decrypt", decrypt, true, "arn:aws:kms:eu-west-1:1:key/k"},
		{"kms decrypt invoked by secrets manager", invoked, false, ""},
		{"kms decrypt from a service address, invokedBy not carried", serviceNamed, false, ""},
	}
	for _, tc := range cases {
		res, in := s.match(&tc.ev)
		if in != tc.want || res != tc.res {
			t.Errorf("%s: match = %q, %v; want %q, %v", tc.name, res, in, tc.res, tc.want)
		}
	}
	// A mount classified by configuration.
	c.FirstTimeAccess.VaultMounts["cloud/"] = "aws"
	s = newScope(c.FirstTimeAccess.Scope, c.FirstTimeAccess.VaultMounts)
	ev := vaultAt("read", "cloud/creds/deploy", "", "")
	if _, in := s.match(&ev); !in {
		t.Error("cloud/creds/deploy on a mount configured as aws is not in scope")
	}
	// The logged mount_type wins over the configured one.
	ev = vaultAt("read", "cloud/creds/deploy", "cloud/", "kv")
	if res, in := s.match(&ev); !in || res != "cloud/creds/deploy" {
		t.Errorf("logged kv mount: %q %v", res, in)
	}
}

// TestCompiledGlobs checks the compiled glob lists against globAny.
func TestCompiledGlobs(t *testing.T) {
	pats := []string{"creds/*", "config", "config/*", "sign-verbatim*", "data/*/x", "a?c", "[ab]*", "*", "", "x\\*", "arn:aws:secretsmanager:*:secret:prod/*", "bad[", "*/*"}
	vals := []string{"", "creds/", "creds/x", "creds", "config", "config/a", "configx", "sign-verbatim", "sign-verbatim/x", "data/a/x", "data/a/b/x", "abc", "aXc", "bz", "cz", "x*", "xy", "arn:aws:secretsmanager:us-east-1:1:secret:prod/db-AbCdEf", "a/b", "bad["}
	for i := range pats {
		for j := i; j <= len(pats); j++ {
			list := pats[i:j]
			c := compileGlobs(list)
			for _, v := range vals {
				if got, want := c.any(v), globAny(list, v); got != want {
					t.Errorf("globs %q on %q: compiled %v, globAny %v", list, v, got, want)
				}
			}
		}
	}
}

// TestCanonicalMemo: the scope's remembered names equal CanonicalResource
// for ARNs, names and other actions, asked twice.
func TestCanonicalMemo(t *testing.T) {
	s := newScope(DefaultScope(), DefaultVaultMounts())
	evs := []schema.Event{
		{Source: schema.SourceCloudTrail, Action: "secretsmanager:GetSecretValue", Resource: "arn:aws:secretsmanager:us-east-1:1:secret:prod/db-AbCdEf", Region: "us-east-1", Account: "1"},
		{Source: schema.SourceCloudTrail, Action: "secretsmanager:GetSecretValue", Resource: "arn:aws:secretsmanager:us-east-1:1:secret:prod/db", Region: "us-east-1", Account: "1"},
		{Source: schema.SourceCloudTrail, Action: "secretsmanager:GetSecretValue", Resource: "prod/db", Region: "eu-west-1", Account: "2"},
		{Source: schema.SourceCloudTrail, Action: "secretsmanager:GetSecretValue", Resource: "prod/db", Region: "us-east-1", Account: "1"},
		{Source: schema.SourceCloudTrail, Action: "kms:Decrypt", Resource: "arn:aws:kms:us-east-1:1:key/abc"},
		{Source: schema.SourceCloudTrail, Action: "kms:Decrypt", Resource: "arn:aws:secretsmanager:us-east-1:1:secret:prod/db-AbCdEf"},
		vaultAt("read", "secret/data/app/db", "secret/", "kv"),
	}
	for round := 0; round < 2; round++ {
		for i := range evs {
			if got, want := s.canonical(&evs[i]), CanonicalResource(&evs[i]); got != want {
				t.Errorf("round %d, %s %s: %q, want %q", round, evs[i].Action, evs[i].Resource, got, want)
			}
		}
	}
}
