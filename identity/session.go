package identity

import (
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"auditwatch/schema"
)

// describe is an STS session as responders read it: "session of
// arn:aws:sts::…:assumed-role/admin/alice started by alice (source
// identity alice@example.com) via sts:AssumeRoleWithSAML at … from …".
func (s *STSSession) describe(is *Issue) string {
	var b strings.Builder
	b.WriteString("session")
	if s.Role != "" {
		b.WriteString(" of ")
		b.WriteString(s.Role)
	}
	b.WriteString(" started by ")
	name := is.PrincipalName
	if name == "" {
		name = is.Principal
	}
	b.WriteString(name)
	if is.Principal != "" && is.Principal != name {
		b.WriteString(" (")
		b.WriteString(is.Principal)
		b.WriteString(")")
	}
	if s.SourceIdentity != "" {
		b.WriteString(", source identity ")
		b.WriteString(s.SourceIdentity)
	}
	b.WriteString(" via ")
	b.WriteString(s.Call)
	b.WriteString(" at ")
	b.WriteString(is.At.UTC().Format(time.RFC3339))
	if is.From != "" {
		b.WriteString(" from ")
		b.WriteString(is.From)
	}
	if s.Via != "" {
		b.WriteString("; the caller's credentials were ")
		b.WriteString(s.Via)
	}
	return b.String()
}

var sessionParsers fastjson.ParserPool

// session remembers the temporary credentials an STS call handed out (its
// original record is in ev.Raw) and who started the session: the caller,
// or whoever is behind the caller's own credentials when they were issued
// too (Vault, or an earlier session: a chain of roles).
func (l *Linker) session(ev *schema.Event) {
	p := sessionParsers.Get()
	defer sessionParsers.Put(p)
	v, err := p.ParseBytes(ev.Raw)
	if err != nil {
		return
	}
	// EventBridge and LookupEvents wrappers
	if d := v.Get("detail"); d != nil && d.Type() == fastjson.TypeObject {
		v = d
	}
	key := string(v.GetStringBytes("responseElements", "credentials", "accessKeyId"))
	if key == "" {
		return
	}
	s := &STSSession{
		Call:           ev.Action,
		Role:           string(v.GetStringBytes("responseElements", "assumedRoleUser", "arn")),
		SourceIdentity: string(v.GetStringBytes("requestParameters", "sourceIdentity")),
		Caller:         ev.Principal,
	}
	if s.Role == "" {
		s.Role = string(v.GetStringBytes("responseElements", "federatedUser", "arn"))
	}
	if s.SourceIdentity == "" {
		s.SourceIdentity = string(v.GetStringBytes("responseElements", "sourceIdentity"))
	}
	is := &Issue{
		Key:           key,
		Principal:     ev.Principal,
		PrincipalName: ev.PrincipalName,
		PrincipalType: ev.PrincipalType,
		Kind:          "sts",
		Role:          s.Role,
		Request:       ev.ID,
		At:            ev.Time.UTC(),
		From:          ev.SourceIP,
		Session:       s,
	}
	if n := string(v.GetStringBytes("userIdentity", "userName")); n != "" && is.PrincipalName == "" {
		is.PrincipalName = n
	}
	is.Ends = is.At.Add(l.cfg.LeaseTTL.D())
	if d := v.Get("requestParameters", "durationSeconds"); d != nil {
		if n, err := d.Int(); err == nil && n > 0 {
			is.Ends = is.At.Add(time.Duration(n) * time.Second)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if prev := l.byKey[key]; prev != nil {
		return // known already (Vault issued it, or a replay)
	}
	// the caller's own credentials were issued too: the session belongs
	// to whoever is behind them
	if ev.KeyPrincipal != "" {
		// the caller used a key Vault issued: ev names the Vault identity
		s.Via = ev.KeyIssue
		s.Caller = ev.KeyPrincipal
	} else if up := l.byKey[ev.AccessKey]; up != nil && ev.AccessKey != "" && up.Session != nil {
		is.Principal, is.PrincipalName, is.PrincipalType = up.Principal, up.PrincipalName, up.PrincipalType
		s.Via = up.Describe()
		if s.SourceIdentity == "" {
			s.SourceIdentity = up.Session.SourceIdentity
		}
	}
	l.stats.Issued++
	l.index(is)
	l.saveIssue(is)
}
