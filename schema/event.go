// Package schema owns the data types that flow between auditwatch's stages:
// the normalized audit Event that every source produces, and the Finding that
// every detector raises. It is a leaf package: it imports nothing of ours.
//
// The JSON forms of Event and Finding are stable: field names never change
// once released; new fields may be added.
package schema

import (
	"strconv"
	"time"
)

// Sources an Event can come from.
const (
	SourceCloudTrail = "cloudtrail"
	SourceVault      = "vault"
)

// Outcomes of an Event.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
)

// Failure kinds: a coarse, source-independent classification of why a
// request failed. Detectors key on these rather than on error text.
const (
	FailureNone               = ""
	FailureInvalidCredentials = "invalid_credentials" // wrong password, unknown user, bad role/secret id, MFA failure
	FailureInvalidToken       = "invalid_token"       // Vault: unknown/expired token (auth block carries no identity)
	FailurePermissionDenied   = "permission_denied"   // authenticated identity, refused by policy (AccessDenied, UnauthorizedOperation)
	FailureLockedOut          = "locked_out"          // user lockout
	FailureThrottled          = "throttled"           // rate limited by the service
	FailureNotFound           = "not_found"           // NoSuch*, ResourceNotFound
	FailureOther              = "other"
)

// Principal types that are not taken verbatim from the source.
const (
	PrincipalTypeAnonymous = "anonymous" // no identity at all (failed login of an unknown user, invalid token)
)

// Event is one normalized audit record: one client request as the secret
// store saw it. For Vault, a request entry and its response entry make one
// Event.
type Event struct {
	// Time is the event time in UTC.
	Time time.Time `json:"time"`
	// Source is SourceCloudTrail or SourceVault.
	Source string `json:"source"`
	// ID is CloudTrail's eventID or Vault's request.id.
	ID string `json:"id"`

	// Principal is the stable identity: an IAM user or role ARN (for an
	// assumed-role session, the role's ARN), Vault's auth.entity_id, else
	// display_name, else the HMAC'd token accessor.
	Principal     string `json:"principal"`
	PrincipalName string `json:"principal_name"`
	PrincipalType string `json:"principal_type"`
	// Session is the assumed-role session name (CloudTrail) when there is one.
	Session string `json:"session,omitempty"`
	Account string `json:"account"`
	// AccessKey is CloudTrail's userIdentity.accessKeyId.
	AccessKey string `json:"access_key,omitempty"`
	// Policies are Vault's token policies (auth.policies).
	Policies []string `json:"policies,omitempty"`
	// TokenHMAC links uses of one Vault token (request.client_token, HMAC'd).
	TokenHMAC string `json:"token_hmac,omitempty"`
	// TokenAccessor is the Vault token's accessor (request.client_token_accessor,
	// else auth.accessor): in clear when the audit device has
	// hmac_accessor=false, else HMAC'd. `vault token revoke -accessor` takes
	// the clear form; `auditwatch query token-accessor` finds it from the HMAC.
	TokenAccessor string `json:"token_accessor,omitempty"`
	// AuthMethod is the Vault auth mount type used by a login (userpass,
	// approle, …) or the CloudTrail login kind (console, sts).
	AuthMethod string `json:"auth_method,omitempty"`

	// Action is "<service>:<eventName>" for CloudTrail (service being the
	// first label of eventSource, e.g. secretsmanager:GetSecretValue) and
	// "vault:<operation>" for Vault.
	Action string `json:"action"`
	// Resource is the secret ARN or id (CloudTrail) or request.path (Vault).
	Resource  string `json:"resource"`
	Mount     string `json:"mount"`
	MountType string `json:"mount_type,omitempty"`
	Namespace string `json:"namespace"`
	Region    string `json:"region"`

	// SourceIP is a canonical IP string (netip.Addr.String()), or empty when
	// the record carries no IP address.
	SourceIP string `json:"source_ip"`
	// SourceIPRaw is what the log said (service name, "AWS Internal",
	// "1.2.3.4:5678", a comma list, …).
	SourceIPRaw string `json:"source_ip_raw"`
	// SourceIsService is true when the call was made by an AWS service on
	// the principal's behalf (sourceIPAddress is a service name or
	// "AWS Internal"); such calls carry no client address.
	SourceIsService bool `json:"source_is_service,omitempty"`
	// InvokedBy is CloudTrail's userIdentity.invokedBy: the AWS service that
	// made the call on the principal's behalf (secretsmanager.amazonaws.com
	// decrypting with KMS for a GetSecretValue). Such a call is part of the
	// principal's originating call, not an access of its own.
	InvokedBy string `json:"invoked_by,omitempty"`

	UserAgent string `json:"user_agent"`
	Outcome   string `json:"outcome"`
	// Error is the error code (CloudTrail errorCode) or message (Vault error).
	Error string `json:"error"`
	// FailureKind is one of the Failure* constants; empty on success.
	FailureKind string `json:"failure_kind,omitempty"`
	// Auth is true for authentication attempts: console logins, Vault
	// auth/*/login, STS token calls.
	Auth bool `json:"auth"`
	// ReadOnly is CloudTrail's readOnly flag; for Vault, true for read and list.
	ReadOnly bool `json:"read_only,omitempty"`
	// HTTPStatus is known for some Vault records; 0 when unknown.
	HTTPStatus int `json:"http_status,omitempty"`

	// IssuedKey is the AWS access key id that a Vault AWS secrets engine
	// response handed out (aws/creds/ROLE, aws/sts/ROLE): in clear when
	// the mount lists access_key in audit_non_hmac_response_keys, else
	// Vault's "hmac-sha256:…" of it.
	IssuedKey string `json:"issued_key,omitempty"`
	// LeaseID is the lease a Vault response created (response.secret.lease_id).
	LeaseID string `json:"lease_id,omitempty"`
	// KeyPrincipal is set on a CloudTrail event made with an access key
	// Vault issued: the AWS principal the key belongs to. Principal,
	// PrincipalName and PrincipalType then name the Vault identity the key
	// was issued to, so detectors and queries judge the person or service
	// behind the key (see package identity).
	KeyPrincipal string `json:"key_principal,omitempty"`
	// KeyIssue says how a linked key was issued, for people: "issued by
	// Vault to payments-api (entity …) at 2026-11-20T10:02:00Z from
	// 10.0.4.7, lease aws/creds/payments/…".
	KeyIssue string `json:"key_issue,omitempty"`

	// Network context of SourceIP (package netinfo, from local
	// databases): Country (ISO 3166-1 alpha-2), ASN and ASOrg, and NetLabel
	// (public, private, loopback, link_local, aws_service, reserved,
	// unknown). Empty when no database is configured.
	Country  string `json:"country,omitempty"`
	ASN      int    `json:"asn,omitempty"`
	ASOrg    string `json:"as_org,omitempty"`
	NetLabel string `json:"net_label,omitempty"`

	// Raw is the original record the event was made of (a CloudTrail
	// record, or the Vault response entry, else the request entry), kept
	// when the reader is asked to (ingest.Options.KeepRaw) so that Sigma
	// rules see every field of it. It is not part of the normalized JSON
	// form; the stream carries it compressed and storage keeps it in the
	// raw column.
	Raw []byte `json:"-"`

	// Mark is what a hook of the reader (ingest.Options.WantRaw) left on
	// the event for a later stage of the same process: replay's rules put
	// there the rules a record matched when read, so that the record need
	// not be kept. Zero when none; never serialized nor stored.
	Mark Mark `json:"-"`

	// Spans locates values in the text of the record the event was
	// normalized from, where the reader read them in place (see Spans).
	// Zero when not read so; never serialized nor stored.
	Spans Spans `json:"-"`
}

// Spans: see Event.Spans. For a CloudTrail record read in place (one
// object, no escapes in the keys and strings read, no duplicated
// userIdentity, arn, sessionContext or sessionIssuer): IdentityARN is the
// string userIdentity.arn and IssuerType the string
// userIdentity.sessionContext.sessionIssuer.type (served only when not
// duplicated and without escapes).
type Spans struct{ IdentityARN, IssuerType Span }

// Span is a string value's text (without its quotes) in a record's text:
// Len bytes from Off. Off 0 (where no string can start): none.
type Span struct{ Off, Len uint32 }

// Mark: see Event.Mark. Owner names the one that set it (zero: none); Bits
// and More are the owner's.
type Mark struct{ Owner, Bits, More uint64 }

// Where describes where the source address is, " (BR, AS64511 Example
// Ltda)", from the network context fields; "" without them.
func (e *Event) Where() string {
	if e.Country == "" && e.ASN == 0 {
		return ""
	}
	s := " ("
	if e.Country != "" {
		s += e.Country
		if e.ASN != 0 {
			s += ", "
		}
	}
	if e.ASN != 0 {
		s += "AS" + strconv.Itoa(e.ASN)
		if e.ASOrg != "" {
			s += " " + e.ASOrg
		}
	}
	return s + ")"
}

// Failed reports whether the event's outcome is a failure.
func (e *Event) Failed() bool { return e.Outcome == OutcomeFailure }
