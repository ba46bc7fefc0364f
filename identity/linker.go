// Package identity owns credential linking: it remembers which Vault
// identity each AWS access key was issued to (Vault's AWS secrets engine,
// aws/creds/ROLE and aws/sts/ROLE), rewrites CloudTrail events made with
// such a key so that they name the Vault identity behind it, and raises
// the detections only that link makes possible:
//
//   - credential_exfiltration: a Vault-issued key used from a network that
//     no key issued to the same Vault identity has been used from (networks
//     are learned per identity on the AWS side: applications reach AWS
//     through NAT, so Vault's client address says nothing about them);
//   - credential_after_lease: a key used after its lease was revoked or
//     ended (an IAM user key: revocation failed; an STS key: past its
//     expected expiry);
//   - credential_misuse: a key of a Vault role used by another AWS principal
//     than the one the role's keys belong to (the role was repointed).
//
// A key is learned in clear when the AWS mount is tuned with
// audit_non_hmac_response_keys=access_key, else through Vault's
// sys/audit-hash endpoint (see AuditHasher), which HMACs a key first seen
// in CloudTrail with the audit device's salt so it can be matched against
// the HMAC'd response. Links, learned networks and revocations are written
// through to a bbolt file, so a restart keeps them; every update is
// idempotent, so a replay after a crash repeats none of them.
package identity

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"auditwatch/ingest/cloudtrail"
	"auditwatch/ingest/vault"
	"auditwatch/schema"
)

// Detector names of the findings the linker raises.
const (
	DetectorExfiltration = schema.DetectorCredentialExfiltration
	DetectorAfterLease   = schema.DetectorCredentialAfterLease
	DetectorMisuse       = schema.DetectorCredentialMisuse
)

// Issue is one access key Vault handed out, and who it was handed to.
type Issue struct {
	// Key is the access key id when the log shows it in clear; KeyHMAC is
	// Vault's HMAC of it otherwise (until a CloudTrail use resolves it).
	Key     string `json:"key,omitempty"`
	KeyHMAC string `json:"key_hmac,omitempty"`
	// The Vault identity, as Vault events name it.
	Principal     string   `json:"principal"`
	PrincipalName string   `json:"principal_name,omitempty"`
	PrincipalType string   `json:"principal_type,omitempty"`
	Policies      []string `json:"policies,omitempty"`
	TokenHMAC     string   `json:"token_hmac,omitempty"`
	// Mount ("aws/"), Role ("payments") and Kind ("creds" or "sts") of
	// the issuing path; Lease its lease id; Request the Vault request id.
	Mount   string `json:"mount"`
	Role    string `json:"role"`
	Kind    string `json:"kind"`
	Lease   string `json:"lease,omitempty"`
	Request string `json:"request,omitempty"`
	// LeaseHMAC is the audit device's HMAC of Lease (sys/audit-hash),
	// learned to match body-form revocations whose lease id is HMAC'd.
	LeaseHMAC string `json:"lease_hmac,omitempty"`
	// At is when it was issued, From the Vault client's address.
	At   time.Time `json:"at"`
	From string    `json:"from,omitempty"`
	// Ends is when the lease is expected to end; Revoked, when set, when
	// a revocation of it was logged.
	Ends    time.Time `json:"ends"`
	Revoked time.Time `json:"revoked,omitzero"`
	// AWSPrincipal is the AWS principal first seen using the key.
	AWSPrincipal string `json:"aws_principal,omitempty"`
	// Session is set for temporary credentials an STS call in CloudTrail
	// handed out (AssumeRole*, GetFederationToken, GetSessionToken): the
	// call, the session's ARN and its source identity. Principal and
	// PrincipalName are then whoever started the session: the caller, or
	// the person or workload behind the caller's own credentials when those
	// were issued too (a chain of roles, or a key Vault issued).
	Session *STSSession `json:"session,omitempty"`
}

// STSSession is a session started by an STS call.
type STSSession struct {
	Call           string `json:"call"`                      // sts:AssumeRole
	Role           string `json:"role,omitempty"`            // the session's ARN
	SourceIdentity string `json:"source_identity,omitempty"` // requestParameters.sourceIdentity
	Caller         string `json:"caller,omitempty"`          // the direct caller's principal
	Via            string `json:"via,omitempty"`             // how the caller's own credentials were issued
}

// Describe is the link as responders read it: "issued by Vault to
// payments-api (entity 6a2f…) at 2026-11-20T10:02:00Z from 10.0.4.7,
// lease aws/creds/payments/…".
func (is *Issue) Describe() string {
	if is.Session != nil {
		return is.Session.describe(is)
	}
	var b strings.Builder
	b.WriteString("issued by Vault to ")
	name := is.PrincipalName
	if name == "" {
		name = is.Principal
	}
	b.WriteString(name)
	if is.PrincipalType == "entity" && is.Principal != "" && is.Principal != name {
		b.WriteString(" (entity ")
		b.WriteString(is.Principal)
		b.WriteString(")")
	}
	b.WriteString(" at ")
	b.WriteString(is.At.UTC().Format(time.RFC3339))
	if is.From != "" {
		b.WriteString(" from ")
		b.WriteString(is.From)
	}
	if is.Lease != "" {
		b.WriteString(", lease ")
		b.WriteString(is.Lease)
	} else {
		b.WriteString(", ")
		b.WriteString(is.Mount)
		b.WriteString(is.Kind)
		b.WriteString("/")
		b.WriteString(is.Role)
	}
	return b.String()
}

// AuditHasher HMACs a value with a Vault audit device's salt (Vault's
// sys/audit-hash). *VaultAuditHash implements it.
type AuditHasher interface {
	Hash(ctx context.Context, input string) (string, error)
}

// netState is what is known of the networks a Vault identity's keys are
// used from.
type netState struct {
	First time.Time      `json:"first"`
	Nets  []netip.Prefix `json:"nets"`
}

// maxNets bounds the networks remembered per identity.
const maxNets = 64

// Stats are the linker's counters.
type Stats struct {
	Issued, Linked, Unlinked, HashCalls, HashErrors, HashDeferred, Revoked, Dropped uint64
	// SharedDropped counts changes dropped before they were taken.
	SharedDropped uint64
	Findings      map[string]uint64
}

// Linker links access keys to Vault identities. Safe for concurrent use
// (the detect stage may run several partitions).
type Linker struct {
	cfg     Config
	trusted []netip.Prefix
	log     *slog.Logger
	st      *store
	hasher  AuditHasher
	lim     *limiter

	mu      sync.Mutex
	byKey   map[string]*Issue
	byHMAC  map[string]*Issue // unresolved HMAC'd keys
	byLease map[string]*Issue
	order   []*Issue // issue order, for MaxLinks
	nets    map[string]*netState
	roleFam map[string]string // mount+role -> AWS principal family
	hashOf  *lru              // key -> Vault HMAC (answers of the hasher)
	alerted map[string]struct{}
	alertQ  []string
	// revokedHMAC: body-form revocations (sys/leases/revoke with the
	// lease id HMAC'd in the request body) not yet matched to an issue, by
	// HMAC, with when they were logged; matched when a key of a lease is
	// used (its lease HMAC'd through the hasher then). Bounded.
	revokedHMAC map[string]time.Time
	// sharing: changes are queued in shared for TakeShared (several
	// detect instances exchange them; see Shared)
	sharing  bool
	shared   []Shared
	stats    Stats
	hashWait time.Duration
}

// Options are a Linker's collaborators.
type Options struct {
	// Dir holds the link store (links.db); empty keeps everything in
	// memory (tests, one-shot replays).
	Dir string
	// Hasher, optional, resolves HMAC'd keys (VaultAuditHash).
	Hasher AuditHasher
	Logger *slog.Logger
	// Now is the limiter's clock (tests); time.Now by default.
	Now func() time.Time
}

// New opens a Linker. cfg must have been defaulted and validated.
func New(cfg Config, o Options) (*Linker, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	l := &Linker{
		cfg:      cfg,
		log:      o.Logger,
		hasher:   o.Hasher,
		byKey:    map[string]*Issue{},
		byHMAC:   map[string]*Issue{},
		byLease:  map[string]*Issue{},
		nets:     map[string]*netState{},
		roleFam:  map[string]string{},
		alerted:  map[string]struct{}{},
		hashWait: 200 * time.Millisecond,

		revokedHMAC: map[string]time.Time{},
	}
	l.stats.Findings = map[string]uint64{}
	l.hashOf = newLRU(cfg.AuditHash.CacheSize)
	l.lim = newLimiter(cfg.AuditHash.Rate, cfg.AuditHash.Burst, o.Now)
	tr, err := cfg.trustedNetworks()
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	l.trusted = tr
	if o.Dir != "" {
		st, err := openStore(o.Dir)
		if err != nil {
			return nil, err
		}
		l.st = st
		if err := l.load(); err != nil {
			st.close()
			return nil, err
		}
	}
	return l, nil
}

// Close closes the link store.
func (l *Linker) Close() error {
	if l.st == nil {
		return nil
	}
	return l.st.close()
}

// Sync makes the links written so far durable (the link store does not
// sync each write): call it before committing a checkpoint past the
// events that wrote them.
func (l *Linker) Sync() error {
	if l.st == nil {
		return nil
	}
	return l.st.sync()
}

// Stats returns a copy of the counters.
func (l *Linker) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	s.Findings = make(map[string]uint64, len(l.stats.Findings))
	for k, v := range l.stats.Findings {
		s.Findings[k] = v
	}
	return s
}

// Links returns the number of issued keys remembered.
func (l *Linker) Links() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.order)
}

func (l *Linker) load() error {
	issues, nets, fams, revs, err := l.st.loadAll()
	if err != nil {
		return err
	}
	l.revokedHMAC = revs
	for _, is := range issues {
		l.index(is)
	}
	l.nets = nets
	l.roleFam = fams
	return nil
}

// index adds is to the in-memory maps, dropping the oldest issue beyond
// MaxLinks.
func (l *Linker) index(is *Issue) {
	if is.Key != "" {
		l.byKey[is.Key] = is
	} else if is.KeyHMAC != "" {
		l.byHMAC[is.KeyHMAC] = is
	}
	if is.Lease != "" {
		l.byLease[is.Lease] = is
	}
	l.order = append(l.order, is)
	for l.cfg.MaxLinks > 0 && len(l.order) > l.cfg.MaxLinks {
		old := l.order[0]
		l.order[0] = nil
		l.order = l.order[1:]
		l.unindex(old)
		l.stats.Dropped++
		if l.st != nil {
			l.st.deleteIssue(old)
		}
	}
}

func (l *Linker) unindex(is *Issue) {
	if is.Key != "" && l.byKey[is.Key] == is {
		delete(l.byKey, is.Key)
	}
	if is.KeyHMAC != "" && l.byHMAC[is.KeyHMAC] == is {
		delete(l.byHMAC, is.KeyHMAC)
	}
	if is.Lease != "" && l.byLease[is.Lease] == is {
		delete(l.byLease, is.Lease)
	}
}

// Process takes one event: a Vault issue or revocation is remembered; a
// CloudTrail event made with a linked key is rewritten to name the Vault
// identity (Principal, PrincipalName, PrincipalType; the AWS principal
// moves to KeyPrincipal, the link's description to KeyIssue) and judged.
// It returns the findings it raises, appended to out.
func (l *Linker) Process(ctx context.Context, ev *schema.Event, out []schema.Finding) []schema.Finding {
	switch ev.Source {
	case schema.SourceVault:
		if ev.Outcome != schema.OutcomeSuccess {
			return out
		}
		if ev.IssuedKey != "" {
			l.issue(ev)
		} else if strings.HasPrefix(ev.Resource, "sys/") {
			l.revoke(ev)
		}
		return out
	case schema.SourceCloudTrail:
		if ev.AccessKey != "" {
			out = l.use(ctx, ev, out)
		}
		// after use: a caller whose own key was issued is linked by now
		if len(ev.Raw) > 0 && cloudtrail.IssuesCredentials(ev) {
			l.session(ev)
		}
		return out
	}
	return out
}

// issuePath splits an AWS secrets engine path: mount "aws/", kind "creds"
// or "sts", role.
func issuePath(ev *schema.Event) (mount, kind, role string, ok bool) {
	mount = ev.Mount
	rest, found := strings.CutPrefix(ev.Resource, mount)
	if mount == "" || !found {
		return "", "", "", false
	}
	kind, role, found = strings.Cut(rest, "/")
	if !found || role == "" || (kind != "creds" && kind != "sts") {
		return "", "", "", false
	}
	if i := strings.IndexByte(role, '/'); i >= 0 {
		role = role[:i]
	}
	return mount, kind, role, true
}

func (l *Linker) issue(ev *schema.Event) {
	if ev.MountType != "" && ev.MountType != "aws" {
		return
	}
	mount, kind, role, ok := issuePath(ev)
	if !ok {
		return
	}
	is := &Issue{
		Principal:     ev.Principal,
		PrincipalName: ev.PrincipalName,
		PrincipalType: ev.PrincipalType,
		Policies:      append([]string(nil), ev.Policies...),
		TokenHMAC:     ev.TokenHMAC,
		Mount:         mount,
		Kind:          kind,
		Role:          role,
		Lease:         ev.LeaseID,
		Request:       ev.ID,
		At:            ev.Time.UTC(),
		From:          ev.SourceIP,
	}
	is.Ends = is.At.Add(l.cfg.leaseTTL(mount, role))
	if strings.HasPrefix(ev.IssuedKey, "hmac-sha256:") {
		is.KeyHMAC = ev.IssuedKey
	} else {
		is.Key = ev.IssuedKey
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if prev := l.lookupIssue(is); prev != nil {
		return // a replay of an issue already known
	}
	// an HMAC'd key whose clear id a CloudTrail use already asked Vault
	// about resolves at once
	if is.KeyHMAC != "" {
		if k, ok := l.hashOf.reverse(is.KeyHMAC); ok {
			is.Key = k
		}
	}
	l.stats.Issued++
	l.index(is)
	l.saveIssue(is)
}

func (l *Linker) lookupIssue(is *Issue) *Issue {
	if is.Key != "" {
		return l.byKey[is.Key]
	}
	if p := l.byHMAC[is.KeyHMAC]; p != nil {
		return p
	}
	if is.Lease != "" {
		if p := l.byLease[is.Lease]; p != nil && p.KeyHMAC == is.KeyHMAC {
			return p
		}
	}
	return nil
}

// revoke notes a logged lease revocation: sys/leases/revoke/<lease>,
// sys/revoke/<lease>, and the prefix and force forms.
func (l *Linker) revoke(ev *schema.Event) {
	p := ev.Resource
	var lease string
	prefix := false
	for _, pre := range []string{"sys/leases/revoke/", "sys/revoke/"} {
		if s, ok := strings.CutPrefix(p, pre); ok {
			lease = s
		}
	}
	for _, pre := range []string{"sys/leases/revoke-prefix/", "sys/revoke-prefix/", "sys/leases/revoke-force/", "sys/revoke-force/"} {
		if s, ok := strings.CutPrefix(p, pre); ok {
			lease, prefix = s, true
		}
	}
	if lease == "" && vault.IsBodyRevoke(p) {
		// the body form: the lease id in the request body, HMAC'd unless
		// the sys mount lists lease_id in audit_non_hmac_request_keys
		lease = ev.LeaseID
		if strings.HasPrefix(lease, hmacPrefix) {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.revokeHMAC(lease, ev.Time)
			return
		}
	}
	if lease == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !prefix {
		if is := l.byLease[lease]; is != nil {
			l.markRevoked(is, ev.Time)
		}
		return
	}
	for k, is := range l.byLease {
		if strings.HasPrefix(k, lease) {
			l.markRevoked(is, ev.Time)
		}
	}
}

// hmacPrefix starts Vault's HMAC'd audit values.
const hmacPrefix = "hmac-sha256:"

// maxRevokedHMAC bounds the unmatched body-form revocations remembered.
const maxRevokedHMAC = 10000

// markRevoked notes that is's lease was revoked at t (the earliest
// revocation counts). l.mu is held.
func (l *Linker) markRevoked(is *Issue, t time.Time) {
	if !is.Revoked.IsZero() && !is.Revoked.After(t) {
		return
	}
	is.Revoked = t.UTC()
	l.stats.Revoked++
	l.saveIssue(is)
}

// revokeHMAC notes a body-form revocation of the lease whose HMAC is h:
// applied at once to an issue whose lease HMAC is known, else kept until
// one of the lease's keys is used (resolveLease). l.mu is held.
func (l *Linker) revokeHMAC(h string, t time.Time) {
	for _, is := range l.byLease {
		if is.LeaseHMAC == h {
			l.markRevoked(is, t)
			return
		}
	}
	if old, ok := l.revokedHMAC[h]; ok && !old.After(t) {
		return
	}
	if len(l.revokedHMAC) >= maxRevokedHMAC {
		// drop the oldest revocation
		var oldest string
		var ot time.Time
		for k, v := range l.revokedHMAC {
			if oldest == "" || v.Before(ot) {
				oldest, ot = k, v
			}
		}
		delete(l.revokedHMAC, oldest)
		if l.st != nil {
			l.st.deleteRevoke(oldest)
		}
	}
	l.revokedHMAC[h] = t.UTC()
	if l.st != nil {
		l.st.putRevoke(h, t.UTC())
	}
	l.share(Shared{Revoke: &SharedRevoke{LeaseHMAC: h, At: t.UTC()}})
}

// resolveLease learns the HMAC of is's lease through the hasher when
// body-form revocations wait to be matched, and applies the one that
// names it. Called without l.mu.
func (l *Linker) resolveLease(ctx context.Context, is *Issue) {
	l.mu.Lock()
	if is.Lease == "" || is.LeaseHMAC != "" || len(l.revokedHMAC) == 0 || l.hasher == nil {
		l.mu.Unlock()
		return
	}
	lease := is.Lease
	h, cached := l.hashOf.get(lease)
	if !cached {
		if !l.lim.take(l.hashWait) {
			l.stats.HashDeferred++
			l.mu.Unlock()
			return
		}
		l.stats.HashCalls++
		l.mu.Unlock()
		cctx := ctx
		if l.cfg.AuditHash.Timeout > 0 {
			var cancel context.CancelFunc
			cctx, cancel = context.WithTimeout(ctx, l.cfg.AuditHash.Timeout.D())
			defer cancel()
		}
		var err error
		h, err = l.hasher.Hash(cctx, lease)
		l.mu.Lock()
		if err != nil {
			l.stats.HashErrors++
			l.mu.Unlock()
			l.log.Warn("identity: audit-hash call for a lease failed; its body-form revocation stays unmatched for now", "err", err)
			return
		}
		l.hashOf.put(lease, h)
	}
	defer l.mu.Unlock()
	is.LeaseHMAC = h
	l.saveIssue(is)
	if t, ok := l.revokedHMAC[h]; ok {
		delete(l.revokedHMAC, h)
		if l.st != nil {
			l.st.deleteRevoke(h)
		}
		l.markRevoked(is, t)
	}
}

// find returns the issue of an access key, asking the hasher when the
// key is not known in clear and HMAC'd issues wait to be resolved.
func (l *Linker) find(ctx context.Context, key string) *Issue {
	l.mu.Lock()
	sess := l.byKey[key]
	if sess != nil && sess.Session == nil {
		l.mu.Unlock()
		return sess
	}
	// unknown, or an STS session: Vault may have issued it (aws/sts) with
	// the key HMAC'd in its log, and Vault's link is the better one
	if len(l.byHMAC) == 0 || l.hasher == nil {
		l.mu.Unlock()
		return sess
	}
	h, cached := l.hashOf.get(key)
	if !cached {
		if !l.lim.take(l.hashWait) {
			l.stats.HashDeferred++
			l.mu.Unlock()
			return sess
		}
		l.stats.HashCalls++
		l.mu.Unlock()
		var err error
		cctx := ctx
		if l.cfg.AuditHash.Timeout > 0 {
			var cancel context.CancelFunc
			cctx, cancel = context.WithTimeout(ctx, l.cfg.AuditHash.Timeout.D())
			defer cancel()
		}
		h, err = l.hasher.Hash(cctx, key)
		l.mu.Lock()
		if err != nil {
			l.stats.HashErrors++
			l.mu.Unlock()
			l.log.Warn("identity: audit-hash call failed; the key stays unlinked for now", "err", err)
			return sess
		}
		l.hashOf.put(key, h)
	}
	defer l.mu.Unlock()
	is := l.byHMAC[h]
	if is == nil {
		return sess
	}
	// resolved: index it by its clear key from now on
	delete(l.byHMAC, h)
	is.Key = key
	l.byKey[key] = is
	l.saveIssue(is)
	return is
}

func (l *Linker) use(ctx context.Context, ev *schema.Event, out []schema.Finding) []schema.Finding {
	is := l.find(ctx, ev.AccessKey)
	if is == nil {
		l.mu.Lock()
		l.stats.Unlinked++
		l.mu.Unlock()
		return out
	}
	if is.Session == nil && ev.Outcome == schema.OutcomeSuccess {
		l.resolveLease(ctx, is)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stats.Linked++
	if is.Session != nil {
		// a session an STS call started: say who started it; the event
		// keeps its AWS principal (the role), detectors judge the role
		ev.KeyIssue = is.Describe()
		return out
	}
	awsPrincipal := ev.Principal
	ev.KeyPrincipal = awsPrincipal
	ev.Principal = is.Principal
	ev.PrincipalName = is.PrincipalName
	ev.PrincipalType = is.PrincipalType
	ev.KeyIssue = is.Describe()

	// credential_misuse: the key's AWS principal differs from the one the
	// Vault role's keys belong to (or from the key's own first one)
	if awsPrincipal != "" {
		fam := family(awsPrincipal)
		rk := is.Mount + is.Role
		want, known := l.roleFam[rk]
		switch {
		case !known:
			l.roleFam[rk] = fam
			l.saveFamily(rk, fam)
		case want != fam:
			out = l.raise(out, DetectorMisuse, schema.SeverityHigh, ev, is,
				[]string{is.Mount + is.Role, fam},
				fmt.Sprintf("key of Vault role %s%s/%s used by %s", is.Mount, is.Kind, is.Role, awsPrincipal),
				fmt.Sprintf("%s %s; keys of this Vault role belong to %s, this one was used by %s", ev.AccessKey, is.Describe(), want, awsPrincipal),
				map[string]string{"expected_aws_principal": want})
		}
		if is.AWSPrincipal == "" {
			is.AWSPrincipal = awsPrincipal
			l.saveIssue(is)
		}
	}

	// credential_after_lease
	if ev.Outcome == schema.OutcomeSuccess {
		end, why := is.Ends, "its lease's expected end"
		if !is.Revoked.IsZero() && is.Revoked.Before(end) {
			end, why = is.Revoked, "its lease was revoked"
		}
		if ev.Time.After(end.Add(l.cfg.Grace.D())) {
			sev, what := schema.SeverityHigh, "Vault's revocation of the IAM user failed"
			if strings.HasPrefix(ev.AccessKey, "ASIA") {
				sev, what = schema.SeverityMedium, "STS credentials outlived the lease Vault expected"
			}
			out = l.raise(out, DetectorAfterLease, sev, ev, is,
				[]string{ev.AccessKey},
				fmt.Sprintf("%s used %s after %s", ev.AccessKey, ev.Time.Sub(end).Round(time.Second), why),
				fmt.Sprintf("%s %s was used at %s, %s after %s (%s): %s",
					ev.AccessKey, is.Describe(), ev.Time.UTC().Format(time.RFC3339), ev.Time.Sub(end).Round(time.Second),
					why, end.UTC().Format(time.RFC3339), what),
				nil)
		}
	}

	// credential_exfiltration
	if ev.SourceIP != "" && !ev.SourceIsService {
		out = l.judgeNetwork(out, ev, is)
	}
	return out
}

func (l *Linker) judgeNetwork(out []schema.Finding, ev *schema.Event, is *Issue) []schema.Finding {
	addr, err := netip.ParseAddr(ev.SourceIP)
	if err != nil {
		return out
	}
	addr = addr.Unmap()
	for _, p := range l.trusted {
		if p.Contains(addr) {
			return out
		}
	}
	bits := l.cfg.IPv4Prefix
	if addr.Is6() {
		bits = l.cfg.IPv6Prefix
	}
	pfx, err := addr.Prefix(bits)
	if err != nil {
		return out
	}
	ns := l.nets[is.Principal]
	if ns == nil {
		ns = &netState{First: ev.Time.UTC(), Nets: []netip.Prefix{pfx}}
		l.nets[is.Principal] = ns
		l.putNets(is.Principal, ns)
		return out
	}
	for _, p := range ns.Nets {
		if p == pfx {
			return out
		}
	}
	if ev.Time.Before(ns.First.Add(l.cfg.Learn.D())) {
		if len(ns.Nets) < maxNets {
			ns.Nets = append(ns.Nets, pfx)
			l.putNets(is.Principal, ns)
		}
		return out
	}
	known := make([]string, 0, min(len(ns.Nets), 5))
	for i, p := range ns.Nets {
		if i == 5 {
			known = append(known, fmt.Sprintf("… %d more", len(ns.Nets)-5))
			break
		}
		known = append(known, p.String())
	}
	name := is.PrincipalName
	if name == "" {
		name = is.Principal
	}
	return l.raise(out, DetectorExfiltration, schema.SeverityCritical, ev, is,
		[]string{ev.AccessKey, pfx.String()},
		fmt.Sprintf("Vault-issued key of %s used from %s%s, a network none of its keys were used from", name, ev.SourceIP, ev.Where()),
		fmt.Sprintf("%s %s was used from %s%s, network %s; keys issued to this Vault identity were used only from %s",
			ev.AccessKey, is.Describe(), ev.SourceIP, ev.Where(), pfx, strings.Join(known, ", ")),
		map[string]string{"network": pfx.String(), "known_networks": strings.Join(known, ", ")})
}

func (l *Linker) putNets(principal string, ns *netState) {
	if l.st != nil {
		l.st.putNets(principal, ns)
	}
	l.share(Shared{Nets: &SharedNets{Principal: principal, First: ns.First, Nets: slices.Clone(ns.Nets)}})
}

// saveIssue writes is through to the store and shares it. l.mu is held.
func (l *Linker) saveIssue(is *Issue) {
	if l.st != nil {
		l.st.putIssue(is)
	}
	if l.sharing {
		c := *is
		l.share(Shared{Issue: &c})
	}
}

// saveFamily writes a Vault role's AWS principal family through and
// shares it. l.mu is held.
func (l *Linker) saveFamily(roleKey, fam string) {
	if l.st != nil {
		l.st.putFamily(roleKey, fam)
	}
	l.share(Shared{Family: &SharedFamily{Role: roleKey, Family: fam}})
}

// raise appends a finding unless this process already raised the same one
// (its id is derived from the evidence, so a repeat after a restart is
// dropped by the outputs' ledger; within a process it is not re-sent).
func (l *Linker) raise(out []schema.Finding, det string, sev schema.Severity, ev *schema.Event, is *Issue,
	parts []string, summary, reason string, attrs map[string]string) []schema.Finding {
	id := schema.MakeID(det, append([]string{is.Principal}, parts...)...)
	if _, dup := l.alerted[id]; dup {
		return out
	}
	l.alerted[id] = struct{}{}
	l.alertQ = append(l.alertQ, id)
	if len(l.alertQ) > 100_000 {
		delete(l.alerted, l.alertQ[0])
		l.alertQ = l.alertQ[1:]
	}
	l.stats.Findings[det]++
	a := map[string]string{
		"access_key":         ev.AccessKey,
		"aws_principal":      ev.KeyPrincipal,
		"vault_principal":    is.Principal,
		"vault_display_name": is.PrincipalName,
		"vault_role":         is.Mount + is.Kind + "/" + is.Role,
		"vault_lease":        is.Lease,
		"issued_at":          is.At.Format(time.RFC3339),
		"issued_from":        is.From,
		"key_issue":          is.Describe(),
	}
	for k, v := range attrs {
		a[k] = v
	}
	for k, v := range a {
		if v == "" {
			delete(a, k)
		}
	}
	t := ev.Time.UTC()
	return append(out, schema.Finding{
		ID:            id,
		Detector:      det,
		Severity:      sev,
		Time:          t,
		Principal:     is.Principal,
		PrincipalName: is.PrincipalName,
		Resource:      ev.Resource,
		SourceIP:      ev.SourceIP,
		Source:        ev.Source,
		Account:       ev.Account,
		Count:         1,
		EventIDs:      []string{ev.ID},
		Summary:       summary,
		Reason:        reason,
		DedupeKey:     id,
		FirstTime:     t,
		LastTime:      t,
		Attributes:    a,
	})
}

// family is the part of an AWS principal that the keys of one Vault role
// share: a role ARN itself; for IAM users (Vault makes one per lease,
// named after the lease) the account's users.
func family(arn string) string {
	if i := strings.Index(arn, ":user/"); i >= 0 {
		return arn[:i] + ":user/*"
	}
	return arn
}
