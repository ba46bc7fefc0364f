// Package cloudtrail owns the normalization of AWS CloudTrail records into
// schema.Event: identities (assumed-role sessions folded onto their role),
// actions, secret resources, client addresses in every shape CloudTrail
// writes, and outcomes (console-login failures, errorCode quirks).
package cloudtrail

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"auditwatch/ingest/ipaddr"
	"auditwatch/schema"
)

// ErrNotRecord is returned for a JSON object that is not a CloudTrail
// record.
var ErrNotRecord = errors.New("not a CloudTrail record")

// Fallback carries values from an envelope (EventBridge, LookupEvents) used
// when the record itself lacks them, and the clock used when no time is
// known at all.
type Fallback struct {
	Time    time.Time
	Account string
	Region  string
	Now     func() time.Time
}

// IsRecord reports whether v looks like a CloudTrail record.
func IsRecord(v *fastjson.Value) bool {
	return v.Get("eventName") != nil || v.Get("eventSource") != nil || v.Get("eventVersion") != nil
}

// IsDigest reports whether v is a CloudTrail digest file (integrity chain,
// no events).
func IsDigest(v *fastjson.Value) bool {
	return v.Get("digestStartTime") != nil && v.Get("digestEndTime") != nil
}

func str(v *fastjson.Value, keys ...string) string {
	return string(v.GetStringBytes(keys...))
}

// Times CloudTrail-derived logs use: ISO 8601 with Z or an offset, and
// Panther's "2022-09-28 17:30:05.000000000" (UTC, no zone).
const pantherTime = "2006-01-02 15:04:05.999999999"

// ParseTime reads an event time in any form seen in CloudTrail data.
func ParseTime(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), true
	}
	if t, err := time.Parse(pantherTime, s); err == nil {
		return t, true
	}
	if t, err := time.Parse("2006-01-02T15:04:05.999999999", s); err == nil {
		return t, true
	}
	if t, err := time.Parse("20060102T150405Z", s); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// Parse normalizes one CloudTrail record into ev.
func Parse(v *fastjson.Value, fb Fallback, ev *schema.Event) error {
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

	identity(v, ev)
	if ev.Account == "" {
		ev.Account = str(v, "recipientAccountId")
	}
	if ev.Account == "" {
		ev.Account = fb.Account
	}

	ev.SourceIPRaw = str(v, "sourceIPAddress")
	ev.SourceIP, ev.SourceIsService = ipaddr.Canonical(ev.SourceIPRaw)

	ev.Resource = resource(v)
	ev.ReadOnly = readOnly(v.Get("readOnly"))

	outcome(v, eventSource, eventName, ev)
	return nil
}

// identity fills the principal fields from userIdentity.
func identity(v *fastjson.Value, ev *schema.Event) {
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
	if typ == "" && arn == "" && invokedBy != "" {
		// service events (e.g. Secrets Manager rotation) carry only
		// accountId and invokedBy
		typ = "AWSService"
	}
	ev.PrincipalType = typ
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

// splitAssumedRole splits arn:aws:sts::<acct>:assumed-role/<role>/<session>.
func splitAssumedRole(arn string) (role, session string) {
	i := strings.Index(arn, ":assumed-role/")
	if i < 0 {
		return "", ""
	}
	rest := arn[i+len(":assumed-role/"):]
	j := strings.LastIndexByte(rest, '/')
	if j < 0 {
		return rest, ""
	}
	return rest[:j], rest[j+1:]
}

// roleARNFromSession turns an assumed-role session ARN into the role ARN
// (without the role's path, which the session ARN does not carry).
func roleARNFromSession(arn string) string {
	i := strings.Index(arn, ":assumed-role/")
	if i < 0 {
		return ""
	}
	role, _ := splitAssumedRole(arn)
	prefix := arn[:i] // arn:aws:sts::<acct>
	parts := strings.SplitN(prefix, ":", 5)
	if len(parts) < 5 {
		return ""
	}
	return parts[0] + ":" + parts[1] + ":iam::" + parts[4] + ":role/" + role
}

// resourceKeys are requestParameters fields naming the object acted on,
// in order of preference.
var resourceKeys = []string{"secretId", "name", "keyId", "roleArn", "parameterName", "bucketName", "functionName", "userName", "roleName", "policyArn", "trailName", "instanceId", "groupName"}

// resource is the secret (or other object) the call was about: the
// requestParameters secret id when present, else a secret ARN from
// resources[], else another well-known request parameter, else the first
// resource ARN.
func resource(v *fastjson.Value) string {
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

// readOnly reads CloudTrail's readOnly, a boolean or (older records) a
// string.
func readOnly(v *fastjson.Value) bool {
	if v == nil {
		return false
	}
	switch v.Type() {
	case fastjson.TypeTrue:
		return true
	case fastjson.TypeString:
		return strings.EqualFold(string(v.GetStringBytes()), "true")
	}
	return false
}

// stsTokenCalls are the STS calls that mint credentials.
var stsTokenCalls = map[string]bool{
	"AssumeRole": true, "AssumeRoleWithSAML": true, "AssumeRoleWithWebIdentity": true,
	"GetSessionToken": true, "GetFederationToken": true, "AssumeRoot": true, "GetWebIdentityToken": true,
}

func outcome(v *fastjson.Value, eventSource, eventName string, ev *schema.Event) {
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

// FailureKind classifies a CloudTrail errorCode.
func FailureKind(code string) string {
	c := strings.TrimPrefix(code, "Client.")
	c = strings.TrimPrefix(c, "Server.")
	switch {
	case strings.HasPrefix(c, "AccessDenied"), strings.HasSuffix(c, "UnauthorizedOperation"),
		c == "UnauthorizedAccess", c == "UnauthorizedException", c == "Forbidden", c == "AuthorizationError":
		return schema.FailurePermissionDenied
	case c == "InvalidClientTokenId", c == "SignatureDoesNotMatch", c == "IncompleteSignature",
		c == "AuthFailure", c == "InvalidIdentityToken", c == "IDPRejectedClaim", c == "NotAuthorizedException":
		return schema.FailureInvalidCredentials
	case c == "ExpiredToken", c == "ExpiredTokenException", c == "InvalidToken", c == "TokenRefreshRequired":
		return schema.FailureInvalidToken
	case strings.Contains(c, "Throttl"), strings.Contains(c, "TooManyRequests"), c == "RequestLimitExceeded",
		c == "SlowDown":
		return schema.FailureThrottled
	case strings.HasPrefix(c, "NoSuch"), strings.Contains(c, "NotFound"):
		return schema.FailureNotFound
	}
	return schema.FailureOther
}
