package ingest

import (
	"strings"
	"testing"
	"time"

	"auditwatch/schema"
)

func one(t *testing.T, in string) schema.Event {
	t.Helper()
	res := readAll(t, NewReader(strings.NewReader(in), "odd", testOptions()))
	if len(res.errs) != 0 || len(res.events) != 1 {
		t.Fatalf("%d events, errors %v; want exactly one event", len(res.events), res.errs)
	}
	return res.events[0]
}

func TestCloudTrailOddities(t *testing.T) {
	cases := []struct {
		name  string
		in    string
		check func(schema.Event) bool
	}{
		{"assumed role folds onto the role ARN, session kept",
			`{"eventVersion":"1.08","eventName":"GetSecretValue","eventSource":"secretsmanager.amazonaws.com","eventTime":"2023-07-10T11:42:00Z","eventID":"e1","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::123:assumed-role/app/i-0abc","accountId":"123","accessKeyId":"ASIA1","sessionContext":{"sessionIssuer":{"type":"Role","arn":"arn:aws:iam::123:role/path/app","userName":"app"}}},"requestParameters":{"secretId":"prod/db"},"sourceIPAddress":"10.1.2.3"}`,
			func(e schema.Event) bool {
				return e.Principal == "arn:aws:iam::123:role/path/app" && e.Session == "i-0abc" && e.PrincipalName == "app" &&
					e.PrincipalType == "AssumedRole" && e.AccessKey == "ASIA1" && e.Resource == "prod/db" && e.Action == "secretsmanager:GetSecretValue"
			}},
		{"assumed role without sessionIssuer derives the role ARN",
			`{"eventName":"Decrypt","eventSource":"kms.amazonaws.com","eventID":"e2","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::123:assumed-role/r/s"}}`,
			func(e schema.Event) bool { return e.Principal == "arn:aws:iam::123:role/r" && e.Session == "s" }},
		{"service event without userIdentity.type",
			`{"eventVersion":"1.08","eventName":"StartSecretVersionDelete","eventSource":"secretsmanager.amazonaws.com","eventTime":"2023-07-10T11:42:00Z","eventID":"e3","userIdentity":{"accountId":"123","invokedBy":"secretsmanager.amazonaws.com"},"sourceIPAddress":"secretsmanager.amazonaws.com","resources":[{"ARN":"arn:aws:secretsmanager:us-east-1:123:secret:s-AbC","accountId":"123"}]}`,
			func(e schema.Event) bool {
				return e.PrincipalType == "AWSService" && e.Principal == "secretsmanager.amazonaws.com" && e.SourceIsService &&
					e.SourceIP == "" && e.SourceIPRaw == "secretsmanager.amazonaws.com" && e.Resource == "arn:aws:secretsmanager:us-east-1:123:secret:s-AbC"
			}},
		{"AWS Internal",
			`{"eventName":"Describe","eventSource":"ec2.amazonaws.com","eventID":"e4","sourceIPAddress":"AWS Internal"}`,
			func(e schema.Event) bool {
				return e.SourceIsService && e.SourceIP == "" && e.SourceIPRaw == "AWS Internal"
			}},
		{"comma list takes the first address",
			`{"eventName":"X","eventSource":"s3.amazonaws.com","eventID":"e5","sourceIPAddress":"81.2.69.142, 192.168.10.10"}`,
			func(e schema.Event) bool {
				return e.SourceIP == "81.2.69.142" && e.SourceIPRaw == "81.2.69.142, 192.168.10.10"
			}},
		{"leading-zero IPv4 is canonicalized",
			`{"eventName":"X","eventSource":"s3.amazonaws.com","eventID":"e6","sourceIPAddress":"06.237.252.245"}`,
			func(e schema.Event) bool { return e.SourceIP == "6.237.252.245" && !e.SourceIsService }},
		{"errorCode 200 is not a failure",
			`{"eventName":"X","eventSource":"grafana.amazonaws.com","eventID":"e7","errorCode":"200"}`,
			func(e schema.Event) bool { return e.Outcome == "success" && e.Error == "" && e.FailureKind == "" }},
		{"ConsoleLogin failure only in responseElements",
			`{"eventName":"ConsoleLogin","eventSource":"signin.amazonaws.com","eventID":"e8","userIdentity":{"type":"IAMUser","userName":"bob","accountId":"1"},"responseElements":{"ConsoleLogin":"Failure"},"errorMessage":"Failed authentication"}`,
			func(e schema.Event) bool {
				return e.Auth && e.AuthMethod == "console" && e.Outcome == "failure" && e.Error == "Failed authentication" && e.FailureKind == "invalid_credentials"
			}},
		{"ConsoleLogin success",
			`{"eventName":"ConsoleLogin","eventSource":"signin.amazonaws.com","eventID":"e9","responseElements":{"ConsoleLogin":"Success"}}`,
			func(e schema.Event) bool { return e.Auth && e.Outcome == "success" }},
		{"AccessDenied is permission_denied",
			`{"eventName":"AssumeRole","eventSource":"sts.amazonaws.com","eventID":"e10","errorCode":"AccessDenied"}`,
			func(e schema.Event) bool {
				return e.Auth && e.AuthMethod == "sts" && e.Outcome == "failure" && e.FailureKind == "permission_denied" && e.Error == "AccessDenied"
			}},
		{"Client.UnauthorizedOperation is permission_denied",
			`{"eventName":"DescribeInstanceAttribute","eventSource":"ec2.amazonaws.com","eventID":"e11","errorCode":"Client.UnauthorizedOperation"}`,
			func(e schema.Event) bool { return e.FailureKind == "permission_denied" && !e.Auth }},
		{"throttling and not found",
			`{"eventName":"GetSecretValue","eventSource":"secretsmanager.amazonaws.com","eventID":"e12","errorCode":"ThrottlingException"}`,
			func(e schema.Event) bool { return e.FailureKind == "throttled" }},
		{"readOnly as a string",
			`{"eventName":"X","eventSource":"s3.amazonaws.com","eventID":"e13","readOnly":"true"}`,
			func(e schema.Event) bool { return e.ReadOnly }},
		{"Panther time form",
			`{"eventName":"X","eventSource":"s3.amazonaws.com","eventID":"e14","eventTime":"2022-09-28 17:30:05.000000000"}`,
			func(e schema.Event) bool { return e.Time.Equal(time.Date(2022, 9, 28, 17, 30, 5, 0, time.UTC)) }},
		{"time with a zone offset becomes UTC",
			`{"eventName":"X","eventSource":"s3.amazonaws.com","eventID":"e15","eventTime":"2021-11-18T09:41:02.5-08:00"}`,
			func(e schema.Event) bool {
				return e.Time.Equal(time.Date(2021, 11, 18, 17, 41, 2, 5e8, time.UTC)) && e.Time.Location() == time.UTC
			}},
		{"missing time falls back to the clock, missing id is derived",
			`{"eventName":"X","eventSource":"s3.amazonaws.com","eventTime":"redacted"}`,
			func(e schema.Event) bool { return e.Time.Equal(fixedNow()) && strings.HasPrefix(e.ID, "cloudtrail-") }},
		{"lower-cased keys (Panther)",
			`{"eventname":"GetRecords","eventsource":"dynamodb.amazonaws.com","eventid":"e16","eventtime":"2023-01-10 21:04:02","useridentity":{"arn":"arn:aws:test_arn"},"awsregion":"eu-west-1"}`,
			func(e schema.Event) bool {
				return e.ID == "e16" && e.Action == "dynamodb:GetRecords" && e.Principal == "arn:aws:test_arn" && e.Region == "eu-west-1" &&
					e.Time.Equal(time.Date(2023, 1, 10, 21, 4, 2, 0, time.UTC))
			}},
		{"EventBridge envelope",
			`{"version":"0","id":"x","detail-type":"AWS API Call via CloudTrail","source":"aws.rds","account":"687","time":"2021-05-26T09:51:58Z","region":"us-east-1","detail":{"eventName":"AddTags","eventSource":"rds.amazonaws.com","eventID":"e17"},"debug":true}`,
			func(e schema.Event) bool {
				return e.ID == "e17" && e.Account == "687" && e.Region == "us-east-1" && e.Time.Equal(time.Date(2021, 5, 26, 9, 51, 58, 0, time.UTC))
			}},
		{"LookupEvents output, record as a JSON string",
			`{"Events":[{"EventId":"e18","EventTime":"2021-11-18T09:41:02-08:00","CloudTrailEvent":"{\"eventName\":\"ConsoleLogin\",\"eventSource\":\"signin.amazonaws.com\",\"eventID\":\"e18\",\"responseElements\":{\"ConsoleLogin\":\"Success\"}}"}],"NextToken":"abc"}`,
			func(e schema.Event) bool {
				return e.ID == "e18" && e.Auth && e.Time.Equal(time.Date(2021, 11, 18, 17, 41, 2, 0, time.UTC))
			}},
		{"S3 delivery object",
			`{"Records":[{"eventName":"X","eventSource":"s3.amazonaws.com","eventID":"e19"}]}`,
			func(e schema.Event) bool { return e.ID == "e19" }},
		{"BatchGetSecretValue resource",
			`{"eventName":"BatchGetSecretValue","eventSource":"secretsmanager.amazonaws.com","eventID":"e20","requestParameters":{"secretIdList":["a","b"]}}`,
			func(e schema.Event) bool { return e.Resource == "a" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := one(t, tc.in)
			if !tc.check(ev) {
				t.Errorf("unexpected event: %s", ev.AppendJSON(nil))
			}
		})
	}
}

func TestDigestSkipped(t *testing.T) {
	in := `{"awsAccountId":"1","digestStartTime":"2020-09-11T18:36:49Z","digestEndTime":"2020-09-11T19:36:49Z","logFiles":[]}`
	res := readAll(t, NewReader(strings.NewReader(in), "d", testOptions()))
	if len(res.events) != 0 || len(res.errs) != 0 || res.stats.Skipped != 1 {
		t.Fatalf("digest: %d events, %v errors, stats %+v", len(res.events), res.errs, res.stats)
	}
}

const vaultReq = `{"time":"2026-11-28T00:33:35.870Z","type":"request","auth":AUTH,"request":{"id":"ID","operation":"read","mount_type":"kv","mount_point":"secret/","client_token":"hmac-sha256:tok","namespace":{"id":"root"},"path":"secret/data/x","remote_address":"ADDR"}ERR}`

func vaultPair(id, auth, addr, reqErr, respErr, respExtra string) string {
	r := strings.NewReplacer("ID", id, "AUTH", auth, "ADDR", addr)
	req := r.Replace(vaultReq)
	req = strings.Replace(req, "ERR", reqErr, 1)
	resp := strings.Replace(r.Replace(vaultReq), `"type":"request"`, `"type":"response"`, 1)
	resp = strings.Replace(resp, `"time":"2026-11-28T00:33:35.870Z"`, `"time":"2026-11-28T00:33:35.990Z"`, 1)
	resp = strings.Replace(resp, "ERR", respExtra+respErr, 1)
	return req + "\n" + resp + "\n"
}

func TestVaultOddities(t *testing.T) {
	full := `{"client_token":"hmac-sha256:tok","accessor":"hmac-sha256:acc","display_name":"approle","policies":["default","web"],"metadata":{"role_name":"web-frontend"},"entity_id":"ent-1","policy_results":{"allowed":false},"token_type":"service"}`
	bare := `{"token_type":"default"}`
	denied := `,"error":"1 error occurred:\n\t* permission denied\n\n"`
	cases := []struct {
		name  string
		in    string
		check func(schema.Event) bool
	}{
		{"pair is one event at the request time",
			vaultPair("r1", full, "10.20.3.31", "", "", `,"response":{"data":{"x":"hmac-sha256:v"}}`),
			func(e schema.Event) bool {
				return e.ID == "r1" && e.Outcome == "success" && e.Principal == "ent-1" && e.PrincipalName == "web-frontend" &&
					e.PrincipalType == "entity" && e.Action == "vault:read" && e.ReadOnly && e.Mount == "secret/" && e.MountType == "kv" &&
					e.Time.Equal(time.Date(2026, 11, 28, 0, 33, 35, 870e6, time.UTC)) && len(e.Policies) == 2 && e.TokenHMAC == "hmac-sha256:tok"
			}},
		{"invalid token: same error, no identity",
			vaultPair("r2", bare, "203.0.113.200", denied, denied, ""),
			func(e schema.Event) bool {
				return e.Outcome == "failure" && e.FailureKind == "invalid_token" && e.Error == "permission denied" && e.PrincipalType == "anonymous"
			}},
		{"policy refusal: same error, identity present",
			vaultPair("r3", full, "10.20.3.31", denied, denied, ""),
			func(e schema.Event) bool {
				return e.FailureKind == "permission_denied" && e.Principal == "ent-1"
			}},
		{"ip:port",
			vaultPair("r4", full, "192.168.0.10:36776", "", "", ""),
			func(e schema.Event) bool {
				return e.SourceIP == "192.168.0.10" && e.SourceIPRaw == "192.168.0.10:36776"
			}},
		{"[v6]:port",
			vaultPair("r5", full, "[2001:db8::10]:36778", "", "", ""),
			func(e schema.Event) bool { return e.SourceIP == "2001:db8::10" }},
		{"request-only denied entry",
			strings.SplitN(vaultPair("r6", bare, "10.6.8.34", `,"error":"permission denied"`, "", ""), "\n", 2)[0],
			func(e schema.Event) bool {
				return e.ID == "r6" && e.Outcome == "failure" && e.FailureKind == "invalid_token"
			}},
		{"missing remote_address",
			`{"time":"2026-01-01T00:00:00Z","type":"request","auth":{"display_name":"root","policies":["root"]},"request":{"id":"r7","operation":"update","path":"sys/audit/test"}}`,
			func(e schema.Event) bool {
				return e.SourceIP == "" && e.SourceIPRaw == "" && e.Principal == "root" && e.PrincipalType == "token" && e.Mount == "sys/" && e.Action == "vault:update"
			}},
		{"unknown-user login: failure only in response.data.error",
			`{"time":"2026-01-01T00:00:00Z","type":"request","auth":{"token_type":"default"},"request":{"id":"r8","operation":"update","mount_type":"userpass","path":"auth/userpass/login/admin","remote_address":"203.0.113.200"}}` + "\n" +
				`{"time":"2026-01-01T00:00:01Z","type":"response","auth":{"policy_results":{"allowed":true},"token_type":"default"},"request":{"id":"r8","operation":"update","mount_type":"userpass","path":"auth/userpass/login/admin","remote_address":"203.0.113.200"},"response":{"data":{"error":"hmac-sha256:6063de"}}}`,
			func(e schema.Event) bool {
				return e.Outcome == "failure" && e.FailureKind == "invalid_credentials" && e.Error == "hmac-sha256:6063de" && e.Auth &&
					e.PrincipalName == "admin" && e.PrincipalType == "anonymous" && e.AuthMethod == "userpass"
			}},
		{"successful login takes the identity from response.auth",
			`{"time":"2026-01-01T00:00:00Z","type":"request","auth":{"token_type":"default"},"request":{"id":"r9","operation":"update","mount_type":"approle","path":"auth/approle/login","remote_address":"10.0.0.1"}}` + "\n" +
				`{"time":"2026-01-01T00:00:01Z","type":"response","auth":{"token_type":"default"},"request":{"id":"r9","operation":"update","mount_type":"approle","path":"auth/approle/login","remote_address":"10.0.0.1"},"response":{"auth":{"client_token":"hmac-sha256:new","accessor":"hmac-sha256:a","display_name":"approle","policies":["default","etl"],"metadata":{"role_name":"reporting-etl"},"entity_id":"ent-9"}}}`,
			func(e schema.Event) bool {
				return e.Outcome == "success" && e.Auth && e.Principal == "ent-9" && e.PrincipalName == "reporting-etl" && e.TokenHMAC == "hmac-sha256:new" && e.AuthMethod == "approle"
			}},
		{"legacy Vault 0.1 pair without id or time",
			`{"type":"request","auth":{"policies":null,"metadata":null},"request":{"operation":"write","path":"auth/app-id/login","data":{"app_id":"sha1:0b"}}}` + "\n" +
				`{"type":"response","error":"","auth":{"policies":["root"],"metadata":null},"request":{"operation":"write","path":"auth/app-id/login","data":{"app_id":"sha1:0b"}},"response":{"auth":{"string":"sha1:6f","policies":["root"],"metadata":null}}}`,
			func(e schema.Event) bool {
				return strings.HasPrefix(e.ID, "vault-") && e.Time.Equal(fixedNow()) && e.Auth && e.Outcome == "success" && e.Action == "vault:write"
			}},
		{"syslog-wrapped entry",
			`<38>Nov 13 23:47:09 hashicorp.vault.test vault[966]: {"auth":{"policy_results":{"allowed":true},"token_type":"default"},"request":{"headers":{"user-agent":["Mozilla/5.0"]},"id":"r10","mount_point":"sys/","mount_type":"system","namespace":{"id":"root"},"operation":"read","path":"sys/activation-flags","remote_address":"10.0.0.1","remote_port":63209},"time":"2025-11-14T07:47:09.422038596Z","type":"request"}`,
			func(e schema.Event) bool {
				return e.ID == "r10" && e.UserAgent == "Mozilla/5.0" && e.Time.Equal(time.Date(2025, 11, 14, 7, 47, 9, 422038596, time.UTC))
			}},
		{"pretty-printed Jackson-style entry",
			"{\n  \"request\" : {\n    \"path\" : \"sys/policies/acl/admin\",\n    \"id\" : \"r11\",\n    \"operation\" : \"update\"\n  },\n  \"auth\" : {\n    \"policies\" : [ \"root\" ],\n    \"display_name\" : \"root\"\n  },\n  \"time\" : \"2019-11-05T00:40:27.638711Z\",\n  \"type\" : \"request\"\n}\n",
			func(e schema.Event) bool {
				return e.ID == "r11" && e.Principal == "root" && e.Resource == "sys/policies/acl/admin"
			}},
		{"KMIP pair",
			`{"request":{"client_certificate_serial_number":"793","data":{"kmip_request":{"tag":"RequestMessage","value":[{"tag":"BatchItem","value":[{"tag":"Operation","type":"Enumeration","value":"0x0000000a"}]}]}},"remote_address":"192.168.0.10:36776"},"time":"2026-05-20T13:49:00Z","type":"kmip-request"}` + "\n" +
				`{"request":{"client_certificate_serial_number":"793","data":{"kmip_request":{"tag":"RequestMessage","value":[{"tag":"BatchItem","value":[{"tag":"Operation","type":"Enumeration","value":"0x0000000a"}]}]}},"remote_address":"192.168.0.10:36776"},"response":{"data":{"kmip_response":{"tag":"ResponseMessage","value":[{"tag":"BatchItem","value":[{"tag":"Operation","type":"Enumeration","value":"0x0000000a"},{"tag":"ResultStatus","type":"Enumeration","value":"0x00000001"},{"tag":"ResultReason","type":"Enumeration","value":"0x0000000C"}]}]}}},"time":"2026-05-20T13:49:01Z","type":"kmip-response"}`,
			func(e schema.Event) bool {
				return e.Action == "vault:kmip:Get" && e.Principal == "cert:793" && e.Outcome == "failure" && e.FailureKind == "permission_denied" && e.SourceIP == "192.168.0.10"
			}},
		{"multierror with several messages",
			vaultPair("r12", full, "10.0.0.1", "", `,"error":"2 errors occurred:\n\t* a\n\t* b\n\n"`, ""),
			func(e schema.Event) bool { return e.Error == "a; b" && e.FailureKind == "other" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := one(t, tc.in)
			if !tc.check(ev) {
				t.Errorf("unexpected event: %s", ev.AppendJSON(nil))
			}
		})
	}
}
