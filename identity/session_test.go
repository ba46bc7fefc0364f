package identity_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"auditwatch/schema"
)

// stsCall is a CloudTrail STS record in the shape AWS writes (modelled on
// the AssumeRole records of the shared corpus): caller identity, request
// parameters, and the credentials and session the response handed out.
func stsCall(t *testing.T, at time.Time, id, name string, caller map[string]any, req, resp map[string]any) []byte {
	t.Helper()
	rec := map[string]any{
		"eventVersion": "1.08", "userIdentity": caller, "eventTime": at.UTC().Format(time.RFC3339),
		"eventSource": "sts.amazonaws.com", "eventName": name, "awsRegion": "eu-west-1",
		"sourceIPAddress": "198.51.100.7", "userAgent": "aws-cli/2.15.0", "requestParameters": req,
		"responseElements": resp, "requestID": "req-" + id, "eventID": id, "readOnly": true,
		"eventType": "AwsApiCall", "managementEvent": true, "recipientAccountId": "111122223333",
	}
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func creds(key, arn string) map[string]any {
	return map[string]any{
		"credentials":     map[string]any{"accessKeyId": key, "expiration": "Nov 20, 2026, 11:00:00 AM", "sessionToken": "IQoJb3JpZ2luX2Vj"},
		"assumedRoleUser": map[string]any{"arn": arn, "assumedRoleId": "AROAEXAMPLE:" + arn[strings.LastIndex(arn, "/")+1:]},
	}
}

// TestRoleSessionsToPeople: alice (an IAM user) assumes role ops, whose
// session assumes role admin (a chain); the admin session's calls say
// they were started by alice, through the ops session. A SAML session
// names the federated user and its source identity.
func TestRoleSessionsToPeople(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	alice := map[string]any{"type": "IAMUser", "principalId": "AIDAALICE", "arn": "arn:aws:iam::111122223333:user/alice",
		"accountId": "111122223333", "accessKeyId": "AKIAALICEKEY00000001", "userName": "alice"}
	opsSession := "arn:aws:sts::111122223333:assumed-role/ops/alice"
	adminSession := "arn:aws:sts::111122223333:assumed-role/admin/alice-admin"
	opsCaller := map[string]any{"type": "AssumedRole", "principalId": "AROAOPS:alice", "arn": opsSession,
		"accountId": "111122223333", "accessKeyId": "ASIAOPSKEY0000000001",
		"sessionContext": map[string]any{"sessionIssuer": map[string]any{"type": "Role", "arn": "arn:aws:iam::111122223333:role/ops", "userName": "ops"}}}
	adminCaller := map[string]any{"type": "AssumedRole", "principalId": "AROAADMIN:alice-admin", "arn": adminSession,
		"accountId": "111122223333", "accessKeyId": "ASIAADMINKEY00000001",
		"sessionContext": map[string]any{"sessionIssuer": map[string]any{"type": "Role", "arn": "arn:aws:iam::111122223333:role/admin", "userName": "admin"}}}
	saml := map[string]any{"type": "SAMLUser", "principalId": "x:bob@example.com", "userName": "bob@example.com",
		"identityProvider": "arn:aws:iam::111122223333:saml-provider/okta"}
	var log []byte
	log = append(log, stsCall(t, t0, "e1", "AssumeRole", alice,
		map[string]any{"roleArn": "arn:aws:iam::111122223333:role/ops", "roleSessionName": "alice", "durationSeconds": 3600},
		creds("ASIAOPSKEY0000000001", opsSession))...)
	log = append(log, stsCall(t, t0.Add(time.Minute), "e2", "AssumeRole", opsCaller,
		map[string]any{"roleArn": "arn:aws:iam::111122223333:role/admin", "roleSessionName": "alice-admin"},
		creds("ASIAADMINKEY00000001", adminSession))...)
	log = append(log, stsCall(t, t0.Add(2*time.Minute), "e3", "AssumeRoleWithSAML", saml,
		map[string]any{"roleArn": "arn:aws:iam::111122223333:role/readonly", "principalArn": "arn:aws:iam::111122223333:saml-provider/okta", "sourceIdentity": "bob@example.com"},
		creds("ASIASAMLKEY000000001", "arn:aws:sts::111122223333:assumed-role/readonly/bob@example.com"))...)
	use := func(id string, caller map[string]any) []byte {
		rec := map[string]any{"eventVersion": "1.08", "userIdentity": caller, "eventTime": t0.Add(5 * time.Minute).Format(time.RFC3339),
			"eventSource": "secretsmanager.amazonaws.com", "eventName": "GetSecretValue", "awsRegion": "eu-west-1",
			"sourceIPAddress": "198.51.100.7", "userAgent": "aws-cli/2.15.0", "requestParameters": map[string]string{"secretId": "prod-db"},
			"requestID": "r" + id, "eventID": id, "readOnly": true, "eventType": "AwsApiCall", "recipientAccountId": "111122223333"}
		b, _ := json.Marshal(rec)
		return append(b, '\n')
	}
	log = append(log, use("u-admin", adminCaller)...)
	samlUser := map[string]any{"type": "AssumedRole", "principalId": "AROARO:bob@example.com", "arn": "arn:aws:sts::111122223333:assumed-role/readonly/bob@example.com",
		"accountId": "111122223333", "accessKeyId": "ASIASAMLKEY000000001"}
	log = append(log, use("u-saml", samlUser)...)

	l := defaultLinker(t, nil)
	evs := normalize(t, "cloudtrail.json", log)
	fs := feed(t, l, evs)
	if len(fs) != 0 {
		t.Fatalf("findings %+v", fs)
	}
	byID := map[string]schema.Event{}
	for _, ev := range evs {
		byID[ev.ID] = ev
	}
	admin := byID["u-admin"]
	if admin.Principal != "arn:aws:iam::111122223333:role/admin" {
		t.Errorf("the role session keeps its role as principal, got %q", admin.Principal)
	}
	for _, want := range []string{"session of " + adminSession, "started by alice (arn:aws:iam::111122223333:user/alice)", "via sts:AssumeRole",
		"the caller's credentials were session of " + opsSession} {
		if !strings.Contains(admin.KeyIssue, want) {
			t.Errorf("admin use: key_issue %q lacks %q", admin.KeyIssue, want)
		}
	}
	if s := byID["u-saml"].KeyIssue; !strings.Contains(s, "started by bob@example.com") || !strings.Contains(s, "source identity bob@example.com") || !strings.Contains(s, "sts:AssumeRoleWithSAML") {
		t.Errorf("saml use: key_issue %q", s)
	}
	if st := l.Stats(); st.Issued != 3 {
		t.Errorf("stats %+v", st)
	}
}
