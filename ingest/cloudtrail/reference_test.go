package cloudtrail

// The parser as first written, straightforward fastjson lookups, kept as
// the reference the optimized Parser is checked against.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"auditwatch/ingest/ipaddr"
	"auditwatch/schema"
)

// Parse normalizes one CloudTrail record into ev.
func refParse(v *fastjson.Value, fb Fallback, ev *schema.Event) error {
	if v == nil || v.Type() != fastjson.TypeObject || !IsRecord(v) {
		return ErrNotRecord
	}
	*ev = schema.Event{Source: schema.SourceCloudTrail}

	t, ok := ParseTime(str(v, "eventTime"))
	if !ok {
		t, ok = ParseTime(str(v, "p_event_time"))
	}
	if !ok {
		t, ok = fb.Time, !fb.Time.IsZero()
	}
	if !ok {
		if fb.Now != nil {
			t = fb.Now()
		} else {
			t = time.Now()
		}
	}
	ev.Time = t.UTC()

	ev.ID = str(v, "eventID")
	if ev.ID == "" {
		h := sha256.Sum256(v.MarshalTo(nil))
		ev.ID = "cloudtrail-" + hex.EncodeToString(h[:12])
	}

	eventSource := str(v, "eventSource")
	eventName := str(v, "eventName")
	if eventName == "" {
		return fmt.Errorf("%w: no eventName", ErrNotRecord)
	}
	service := eventSource
	if i := strings.IndexByte(service, '.'); i >= 0 {
		service = service[:i]
	}
	ev.Action = service + ":" + eventName
	ev.Region = str(v, "awsRegion")
	if ev.Region == "" {
		ev.Region = fb.Region
	}
	ev.UserAgent = str(v, "userAgent")

	refIdentity(v, ev)
	if ev.Account == "" {
		ev.Account = str(v, "recipientAccountId")
	}
	if ev.Account == "" {
		ev.Account = fb.Account
	}

	ev.SourceIPRaw = str(v, "sourceIPAddress")
	ev.SourceIP, ev.SourceIsService = ipaddr.Canonical(ev.SourceIPRaw)

	ev.Resource = refResource(v)
	ev.ReadOnly = readOnly(v.Get("readOnly"))

	refOutcome(v, eventSource, eventName, ev)
	return nil
}

// identity fills the principal fields from userIdentity.
func refIdentity(v *fastjson.Value, ev *schema.Event) {
	ui := v.Get("userIdentity")
	if ui == nil || ui.Type() != fastjson.TypeObject {
		return
	}
	typ := str(ui, "type")
	arn := str(ui, "arn")
	ev.Account = str(ui, "accountId")
	ev.AccessKey = str(ui, "accessKeyId")
	userName := str(ui, "userName")
	invokedBy := str(ui, "invokedBy")
	ev.InvokedBy = invokedBy
	if typ == "" && arn == "" && invokedBy != "" {
		// service events (e.g. Secrets Manager rotation) carry only
		// accountId and invokedBy
		typ = "AWSService"
	}
	ev.PrincipalType = typ
	if arn == "" && userName == "HIDDEN_DUE_TO_SECURITY_REASONS" && (typ == "" || typ == "IAMUser") {
		ev.PrincipalType = schema.PrincipalTypeAnonymous
		ev.PrincipalName = userName
		return
	}
	part := "aws"
	if strings.HasPrefix(ev.Region, "cn-") {
		part = "aws-cn"
	} else if strings.HasPrefix(ev.Region, "us-gov-") {
		part = "aws-us-gov"
	}
	switch typ {
	case "AssumedRole":
		issuer := str(ui, "sessionContext", "sessionIssuer", "arn")
		ev.Principal = issuer
		ev.PrincipalName = str(ui, "sessionContext", "sessionIssuer", "userName")
		role, session := splitAssumedRole(arn)
		if ev.Principal == "" {
			ev.Principal = roleARNFromSession(arn)
		}
		if ev.PrincipalName == "" {
			ev.PrincipalName = role
		}
		ev.Session = session
		if ev.Principal == "" {
			ev.Principal = str(ui, "principalId")
		}
	case "AWSService":
		ev.Principal = invokedBy
		ev.PrincipalName = invokedBy
		if ev.Principal == "" {
			ev.Principal = str(ui, "principalId")
		}
	case "Root":
		ev.Principal = arn
		ev.PrincipalName = userName
		if ev.PrincipalName == "" {
			ev.PrincipalName = "root"
		}
		if ev.Principal == "" && ev.Account != "" {
			ev.Principal = fmt.Sprintf("arn:%s:iam::%s:root", part, ev.Account)
		}
	case "FederatedUser":
		ev.Principal = arn
		ev.PrincipalName = userName
		if i := strings.LastIndexByte(arn, '/'); i >= 0 && ev.PrincipalName == "" {
			ev.PrincipalName = arn[i+1:]
		}
		if issuer := str(ui, "sessionContext", "sessionIssuer", "arn"); issuer != "" {
			ev.Principal = issuer
			ev.Session = ev.PrincipalName
		}
	default: // IAMUser, AWSAccount, IdentityCenterUser, SAMLUser, WebIdentityUser, Unknown, missing
		ev.Principal = arn
		ev.PrincipalName = userName
		if ev.Principal == "" && (typ == "IAMUser" || typ == "") && userName != "" && ev.Account != "" {
			ev.Principal = fmt.Sprintf("arn:%s:iam::%s:user/%s", part, ev.Account, userName)
		}
		if ev.Principal == "" {
			ev.Principal = str(ui, "principalId")
		}
		if ev.Principal == "" && typ == "AWSAccount" {
			ev.Principal = ev.Account
		}
		if ev.Principal == "" {
			ev.Principal = userName
		}
		if ev.PrincipalName == "" {
			if i := strings.LastIndexByte(arn, '/'); i >= 0 {
				ev.PrincipalName = arn[i+1:]
			}
		}
	}
}

// resource is the secret (or other object) the call was about: the
// requestParameters secret id when present, else a secret ARN from
// resources[], else another well-known request parameter, else the first
// resource ARN.
func refResource(v *fastjson.Value) string {
	rp := v.Get("requestParameters")
	if id := str(rp, "secretId"); id != "" {
		return id
	}
	res := v.GetArray("resources")
	for _, r := range res {
		if a := str(r, "ARN"); strings.Contains(a, ":secret:") {
			return a
		}
	}
	if rp != nil && rp.Type() == fastjson.TypeObject {
		if l := rp.GetArray("secretIdList"); len(l) > 0 {
			if s := string(l[0].GetStringBytes()); s != "" {
				return s
			}
		}
		for _, k := range resourceKeys[1:] {
			if s := str(rp, k); s != "" {
				return s
			}
		}
	}
	for _, r := range res {
		if a := str(r, "ARN"); a != "" {
			return a
		}
	}
	return ""
}

func refOutcome(v *fastjson.Value, eventSource, eventName string, ev *schema.Event) {
	code := str(v, "errorCode")
	msg := str(v, "errorMessage")
	ev.Outcome = schema.OutcomeSuccess
	switch {
	case eventName == "ConsoleLogin" || eventSource == "signin.amazonaws.com":
		if eventName == "ConsoleLogin" || eventName == "CheckMfa" || eventName == "UserAuthentication" ||
			eventName == "CredentialVerification" || eventName == "CredentialChallenge" {
			ev.Auth = true
			ev.AuthMethod = "console"
		}
	case eventSource == "sts.amazonaws.com" && stsTokenCalls[eventName]:
		ev.Auth = true
		ev.AuthMethod = "sts"
	case eventName == "UserAuthentication" || eventName == "CredentialVerification":
		ev.Auth = true
		ev.AuthMethod = "sso"
	}
	// ConsoleLogin and other sign-in events report failure in
	// responseElements, not errorCode.
	for _, k := range [...]string{"ConsoleLogin", "CheckMfa", "UserAuthentication", "CredentialVerification"} {
		if r := str(v, "responseElements", k); r != "" && !strings.EqualFold(r, "Success") {
			ev.Outcome = schema.OutcomeFailure
			ev.Error = msg
			if ev.Error == "" {
				ev.Error = r
			}
			ev.FailureKind = schema.FailureInvalidCredentials
			if strings.Contains(strings.ToLower(msg), "locked") {
				ev.FailureKind = schema.FailureLockedOut
			}
			return
		}
	}
	if code == "" || code == "200" || code == "Success" {
		// errorCode "200" is written on successful calls by some
		// services: not a failure
		return
	}
	ev.Outcome = schema.OutcomeFailure
	ev.Error = code
	ev.FailureKind = FailureKind(code)
}
