// Package cloudtrail owns the normalization of AWS CloudTrail records into
// schema.Event: identities (assumed-role sessions folded onto their role),
// actions, secret resources, client addresses in every shape CloudTrail
// writes, and outcomes (console-login failures, errorCode quirks).
package cloudtrail

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"auditwatch/ingest/intern"
	"auditwatch/ingest/ipaddr"
	"auditwatch/ingest/jsonx"
	"auditwatch/ingest/rfc3339"
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
	var p Parser
	return p.Parse(v, fb, ev)
}

// Parser normalizes records one after another, reusing its scratch space
// and handing out repeated strings (actions, regions, user agents,
// principals, addresses) from Strings. The zero value works (no
// interning). Not safe for concurrent use.
type Parser struct {
	// Strings, if set, shares strings that repeat across records.
	Strings *intern.Table
	// MaxDepth, if set, is the nesting depth beyond which ParseLine
	// declines a record.
	MaxDepth int
	scratch  []byte
	// identityMemo holds userIdentity blocks ParseLine read (see
	// lineIdentityMemo)
	identityMemo jsonx.Memo[rawIdentity]
	// ips remembers the canonical form of recent addresses
	ips ipaddr.Memo
}

// recordFields are the top-level fields a record is normalized from, read
// in one pass over its keys (the first of duplicated keys wins).
type recordFields struct {
	eventSource, eventName, awsRegion, userAgent, userIdentity,
	recipientAccountID, sourceIPAddress, requestParameters, resources, readOnly, errorCode, errorMessage,
	responseElements *fastjson.Value
}

func fieldsOf(o *fastjson.Object) (f recordFields) {
	o.Visit(func(k []byte, e *fastjson.Value) {
		var dst **fastjson.Value
		switch string(k) {
		case "eventSource":
			dst = &f.eventSource
		case "eventName":
			dst = &f.eventName
		case "awsRegion":
			dst = &f.awsRegion
		case "userAgent":
			dst = &f.userAgent
		case "userIdentity":
			dst = &f.userIdentity
		case "recipientAccountId":
			dst = &f.recipientAccountID
		case "sourceIPAddress":
			dst = &f.sourceIPAddress
		case "requestParameters":
			dst = &f.requestParameters
		case "resources":
			dst = &f.resources
		case "readOnly":
			dst = &f.readOnly
		case "errorCode":
			dst = &f.errorCode
		case "errorMessage":
			dst = &f.errorMessage
		case "responseElements":
			dst = &f.responseElements
		default:
			return
		}
		if *dst == nil {
			*dst = e
		}
	})
	return f
}

// bytesOf is the string content of v, nil when v is absent or not a
// string.
func bytesOf(v *fastjson.Value) []byte {
	if v == nil {
		return nil
	}
	return v.GetStringBytes()
}

// parseTime is ParseTime for bytes.
func parseTime(b []byte) (time.Time, bool) {
	if len(b) == 0 {
		return time.Time{}, false
	}
	if t, err := rfc3339.Parse(b); err == nil {
		return t, true
	}
	return ParseTime(string(b))
}

// raw is what a record is normalized from: string contents (nil when
// absent or not a string, which the normalization treats alike), read
// either from a fastjson tree (Parse) or in place from the record's text
// (ParseLine).
type raw struct {
	time    time.Time
	hasTime bool
	id      []byte
	hashID  string // content hash, when id is empty

	eventSource, eventName, awsRegion, userAgent, recipientAccountID,
	sourceIPAddress, errorCode, errorMessage []byte
	readOnly bool

	ui rawIdentity

	// requestParameters
	rpSecretID     []byte
	rpObject       bool
	rpSecretIDList []byte // first element of secretIdList
	rpKeys         [len(resourceKeys) - 1][]byte
	// resources[].ARN
	resSecretARN, resFirstARN []byte

	// responseElements, by signinKeys
	resp [len(signinKeys)][]byte
}

// rawIdentity is userIdentity.
type rawIdentity struct {
	object bool // userIdentity is an object
	typ, arn, accountID, accessKeyID, userName, invokedBy, principalID,
	issuerARN, issuerUserName []byte
	// read in place only (lineIdentity): sessionContext.sessionIssuer.type
	// when a string without escapes, not duplicated (nil otherwise); and
	// where it and arn start, from the block's start (0: none; see
	// schema.Spans)
	issuerType          []byte
	arnAt, issuerTypeAt int
}

// signinKeys are the responseElements fields sign-in events report their
// outcome in.
var signinKeys = [...]string{"ConsoleLogin", "CheckMfa", "UserAuthentication", "CredentialVerification"}

// Parse normalizes one CloudTrail record into ev.
func (p *Parser) Parse(v *fastjson.Value, fb Fallback, ev *schema.Event) error {
	if v == nil || v.Type() != fastjson.TypeObject || !IsRecord(v) {
		return ErrNotRecord
	}
	var r raw
	// time and id are looked up (not read in the one pass below) so that
	// a record without eventID is hashed in the state fastjson was in
	// when ids were first derived: lookups and reads change how it
	// writes keys and values back
	r.time, r.hasTime = parseTime(v.GetStringBytes("eventTime"))
	if !r.hasTime {
		r.time, r.hasTime = parseTime(v.GetStringBytes("p_event_time"))
	}
	r.id = v.GetStringBytes("eventID")
	if len(r.id) == 0 {
		p.scratch = v.MarshalTo(p.scratch[:0])
		h := sha256.Sum256(p.scratch)
		r.hashID = "cloudtrail-" + hex.EncodeToString(h[:12])
	}
	o, _ := v.Object()
	f := fieldsOf(o)
	r.eventSource = bytesOf(f.eventSource)
	r.eventName = bytesOf(f.eventName)
	r.awsRegion = bytesOf(f.awsRegion)
	r.userAgent = bytesOf(f.userAgent)
	r.recipientAccountID = bytesOf(f.recipientAccountID)
	r.sourceIPAddress = bytesOf(f.sourceIPAddress)
	r.errorCode = bytesOf(f.errorCode)
	r.errorMessage = bytesOf(f.errorMessage)
	r.readOnly = readOnly(f.readOnly)
	if ui := f.userIdentity; ui != nil && ui.Type() == fastjson.TypeObject {
		r.ui = rawIdentity{object: true,
			typ: ui.GetStringBytes("type"), arn: ui.GetStringBytes("arn"), accountID: ui.GetStringBytes("accountId"),
			accessKeyID: ui.GetStringBytes("accessKeyId"), userName: ui.GetStringBytes("userName"),
			invokedBy: ui.GetStringBytes("invokedBy"), principalID: ui.GetStringBytes("principalId"),
			issuerARN:      ui.GetStringBytes("sessionContext", "sessionIssuer", "arn"),
			issuerUserName: ui.GetStringBytes("sessionContext", "sessionIssuer", "userName"),
		}
	}
	rp := f.requestParameters
	r.rpSecretID = rp.GetStringBytes("secretId")
	if rp != nil && rp.Type() == fastjson.TypeObject {
		r.rpObject = true
		if l := rp.GetArray("secretIdList"); len(l) > 0 {
			r.rpSecretIDList = l[0].GetStringBytes()
		}
		for i, k := range resourceKeys[1:] {
			r.rpKeys[i] = rp.GetStringBytes(k)
		}
	}
	if res := f.resources; res != nil && res.Type() == fastjson.TypeArray {
		a, _ := res.Array()
		for _, e := range a {
			arn := e.GetStringBytes("ARN")
			if r.resSecretARN == nil && bytes.Contains(arn, []byte(":secret:")) {
				r.resSecretARN = arn
			}
			if r.resFirstARN == nil && len(arn) > 0 {
				r.resFirstARN = arn
			}
		}
	}
	for i, k := range signinKeys {
		r.resp[i] = f.responseElements.GetStringBytes(k)
	}
	return p.normalize(&r, fb, ev)
}

// normalize builds the event from a record's fields.
func (p *Parser) normalize(r *raw, fb Fallback, ev *schema.Event) error {
	*ev = schema.Event{Source: schema.SourceCloudTrail}
	t, ok := r.time, r.hasTime
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

	ev.ID = string(r.id)
	if ev.ID == "" {
		ev.ID = r.hashID
	}

	eventSource := p.Strings.Bytes(r.eventSource)
	eventName := r.eventName
	if len(eventName) == 0 {
		return fmt.Errorf("%w: no eventName", ErrNotRecord)
	}
	service := eventSource
	if i := strings.IndexByte(service, '.'); i >= 0 {
		service = service[:i]
	}
	p.scratch = append(append(append(p.scratch[:0], service...), ':'), eventName...)
	ev.Action = p.Strings.Bytes(p.scratch)
	ev.Region = p.Strings.Bytes(r.awsRegion)
	if ev.Region == "" {
		ev.Region = fb.Region
	}
	ev.UserAgent = p.Strings.Bytes(r.userAgent)

	p.identity(&r.ui, ev)
	if ev.Account == "" {
		ev.Account = p.Strings.Bytes(r.recipientAccountID)
	}
	if ev.Account == "" {
		ev.Account = fb.Account
	}

	ev.SourceIPRaw = p.Strings.Bytes(r.sourceIPAddress)
	ev.SourceIP, ev.SourceIsService = p.ips.Canonical(ev.SourceIPRaw, p.Strings.String)

	ev.Resource = p.resource(r)
	ev.ReadOnly = r.readOnly

	p.outcome(r, eventSource, p.Strings.Bytes(eventName), ev)
	return nil
}

// identity fills the principal fields from userIdentity.
func (p *Parser) identity(ui *rawIdentity, ev *schema.Event) {
	if !ui.object {
		return
	}
	s := p.Strings.Bytes
	typ := s(ui.typ)
	arn := s(ui.arn)
	ev.Account = s(ui.accountID)
	ev.AccessKey = s(ui.accessKeyID)
	userName := s(ui.userName)
	invokedBy := s(ui.invokedBy)
	ev.InvokedBy = invokedBy
	if typ == "" && arn == "" && invokedBy != "" {
		// service events (e.g. Secrets Manager rotation) carry only
		// accountId and invokedBy
		typ = "AWSService"
	}
	ev.PrincipalType = typ
	if arn == "" && userName == hiddenUserName && (typ == "" || typ == "IAMUser") {
		// a console sign-in naming a user that does not exist: AWS hides
		// the name, and there is no identity to key state on
		ev.PrincipalType = schema.PrincipalTypeAnonymous
		ev.PrincipalName = userName
		return
	}
	switch typ {
	case "AssumedRole":
		issuer := s(ui.issuerARN)
		ev.Principal = issuer
		ev.PrincipalName = s(ui.issuerUserName)
		role, session := splitAssumedRole(arn)
		if ev.Principal == "" {
			ev.Principal = p.Strings.String(roleARNFromSession(arn))
		}
		if ev.PrincipalName == "" {
			ev.PrincipalName = role
		}
		ev.Session = session
		if ev.Principal == "" {
			ev.Principal = s(ui.principalID)
		}
	case "AWSService":
		ev.Principal = invokedBy
		ev.PrincipalName = invokedBy
		if ev.Principal == "" {
			ev.Principal = s(ui.principalID)
		}
	case "Root":
		ev.Principal = arn
		ev.PrincipalName = userName
		if ev.PrincipalName == "" {
			ev.PrincipalName = "root"
		}
		if ev.Principal == "" && ev.Account != "" {
			// failed root sign-ins carry no arn
			ev.Principal = p.Strings.String(userARN(ev.Region, ev.Account, "root"))
		}
	case "FederatedUser":
		ev.Principal = arn
		ev.PrincipalName = userName
		if i := strings.LastIndexByte(arn, '/'); i >= 0 && ev.PrincipalName == "" {
			ev.PrincipalName = arn[i+1:]
		}
		if issuer := s(ui.issuerARN); issuer != "" {
			ev.Principal = issuer
			ev.Session = ev.PrincipalName
		}
	default: // IAMUser, AWSAccount, IdentityCenterUser, SAMLUser, WebIdentityUser, Unknown, missing
		ev.Principal = arn
		ev.PrincipalName = userName
		if ev.Principal == "" && (typ == "IAMUser" || typ == "") && userName != "" && ev.Account != "" {
			// failed console sign-ins of an existing user carry
			// principalId, accountId and userName but no arn: key them
			// on the user's ARN as its successful sign-ins are
			ev.Principal = p.Strings.String(userARN(ev.Region, ev.Account, "user/"+userName))
		}
		if ev.Principal == "" {
			ev.Principal = s(ui.principalID)
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

// hiddenUserName is the userName AWS writes for a console sign-in that
// names a user that does not exist.
const hiddenUserName = "HIDDEN_DUE_TO_SECURITY_REASONS"

// userARN is arn:<partition>:iam::<account>:<resource>, the partition
// derived from the region the record was written in.
func userARN(region, account, resource string) string {
	return "arn:" + partition(region) + ":iam::" + account + ":" + resource
}

// partition is the ARN partition of an AWS region.
func partition(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	}
	return "aws"
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
var resourceKeys = [...]string{"secretId", "name", "keyId", "roleArn", "parameterName", "bucketName", "functionName", "userName", "roleName", "policyArn", "trailName", "instanceId", "groupName"}

// resource is the secret (or other object) the call was about: the
// requestParameters secret id when present, else a secret ARN from
// resources[], else another well-known request parameter, else the first
// resource ARN.
func (p *Parser) resource(r *raw) string {
	if id := p.Strings.Bytes(r.rpSecretID); id != "" {
		return id
	}
	if r.resSecretARN != nil {
		return p.Strings.Bytes(r.resSecretARN)
	}
	if r.rpObject {
		if s := p.Strings.Bytes(r.rpSecretIDList); s != "" {
			return s
		}
		for _, k := range r.rpKeys {
			if s := p.Strings.Bytes(k); s != "" {
				return s
			}
		}
	}
	return p.Strings.Bytes(r.resFirstARN)
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

func (p *Parser) outcome(r *raw, eventSource, eventName string, ev *schema.Event) {
	code := p.Strings.Bytes(r.errorCode)
	msg := p.Strings.Bytes(r.errorMessage)
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
	for _, rb := range r.resp {
		if r := p.Strings.Bytes(rb); r != "" && !strings.EqualFold(r, "Success") {
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

// IssuesCredentials reports whether a normalized action hands out
// temporary credentials (STS AssumeRole*, GetFederationToken,
// GetSessionToken): the reader keeps such records' original text, so the
// credential linker can attribute the session to whoever started it.
func IssuesCredentials(ev *schema.Event) bool {
	if ev.Source != schema.SourceCloudTrail || ev.Outcome != schema.OutcomeSuccess || len(ev.Action) < 8 || ev.Action[:4] != "sts:" {
		return false
	}
	switch ev.Action {
	case "sts:AssumeRole", "sts:AssumeRoleWithSAML", "sts:AssumeRoleWithWebIdentity", "sts:GetFederationToken", "sts:GetSessionToken":
		return true
	}
	return false
}
