package detect

import (
	"path"
	"sort"
	"strings"

	"auditwatch/internal/resname"
	"auditwatch/schema"
)

// CanonicalResource names a resource the same way however the log names
// it (resname.Key: Secrets Manager name, partial or full ARN; KV v2 data/
// and metadata/ paths).
func CanonicalResource(ev *schema.Event) string { return resname.Key(ev) }

// scope decides which events are secret accesses.
type scope struct {
	rules   []ScopeRule
	actions []*globMemo // rules[i].Actions
	// paths and resources are rules[i].Paths and .Resources, compiled
	paths, resources []globList
	mounts           []mountClass
	// arns remembers the canonical names of Secrets Manager ARNs
	// (resname.Key builds a new string for each suffixed ARN); bounded,
	// cleared when full
	arns map[string]string
	// byAction remembers, per action, the rules whose actions match it
	// (bounded: actions come from the log).
	byAction map[string][]int
}

// mountClass is a configured Vault mount path and its engine type.
type mountClass struct{ path, typ string }

func newScope(rules []ScopeRule, mounts map[string]string) scope {
	s := scope{rules: rules, actions: make([]*globMemo, len(rules)),
		paths: make([]globList, len(rules)), resources: make([]globList, len(rules))}
	for i := range rules {
		s.actions[i] = newGlobMemo(rules[i].Actions)
		s.paths[i] = compileGlobs(rules[i].Paths)
		s.resources[i] = compileGlobs(rules[i].Resources)
	}
	for p, t := range mounts {
		p = strings.TrimPrefix(p, "/")
		if !strings.HasSuffix(p, "/") {
			p += "/"
		}
		s.mounts = append(s.mounts, mountClass{path: p, typ: t})
	}
	// Longest path first: auth/token/ before auth/.
	sort.Slice(s.mounts, func(i, j int) bool {
		if len(s.mounts[i].path) != len(s.mounts[j].path) {
			return len(s.mounts[i].path) > len(s.mounts[j].path)
		}
		return s.mounts[i].path < s.mounts[j].path
	})
	return s
}

// actionMatch reports whether action matches rules[i].Actions.
func (s *scope) actionMatch(i int, action string) bool {
	if i < len(s.actions) {
		return s.actions[i].match(action)
	}
	return globAny(s.rules[i].Actions, action)
}

// ServiceInvoked reports whether an AWS service made ev on its principal's
// behalf (the kms:Decrypt Secrets Manager makes for a GetSecretValue): it
// is part of the principal's originating call and carries no address of
// the principal's. The logged invokedBy says so; without it, a
// sourceIPAddress that is a service name does.
func ServiceInvoked(ev *schema.Event) bool {
	if ev.Source != schema.SourceCloudTrail {
		return false
	}
	return ev.InvokedBy != "" || ev.SourceIsService && strings.HasSuffix(ev.SourceIPRaw, ".amazonaws.com")
}

// vaultMount returns the event's mount path (with a trailing slash), its
// engine type (as logged, else as configured) and the path inside it.
func (s *scope) vaultMount(ev *schema.Event) (mount, typ, rest string) {
	p := strings.TrimPrefix(ev.Resource, "/")
	mount = ev.Mount
	if mount != "" && !strings.HasSuffix(mount, "/") {
		mount += "/"
	}
	typ = ev.MountType
	if mount == "" || !strings.HasPrefix(p, mount) {
		mount = ""
		for _, m := range s.mounts {
			if strings.HasPrefix(p, m.path) {
				mount = m.path
				break
			}
		}
		if mount == "" {
			if i := strings.IndexByte(p, '/'); i >= 0 {
				mount = p[:i+1]
			}
		}
	}
	if typ == "" {
		for _, m := range s.mounts {
			if m.path == mount {
				typ = m.typ
				break
			}
		}
	}
	return mount, typ, p[len(mount):]
}

// rulesFor returns the indices of the rules whose actions match action.
func (s *scope) rulesFor(action string) []int {
	if idx, ok := s.byAction[action]; ok {
		return idx
	}
	var idx []int
	for i := range s.rules {
		if len(s.rules[i].Actions) == 0 || s.actionMatch(i, action) {
			idx = append(idx, i)
		}
	}
	if s.byAction == nil || len(s.byAction) >= globMemoMax {
		s.byAction = make(map[string][]int)
	}
	s.byAction[action] = idx
	return idx
}

// canonical is CanonicalResource, remembering the names of Secrets
// Manager ARNs (which depend on the ARN alone).
func (s *scope) canonical(ev *schema.Event) string {
	if ev.Source != schema.SourceCloudTrail || !strings.HasPrefix(ev.Resource, "arn:") || !strings.HasPrefix(ev.Action, "secretsmanager:") {
		return CanonicalResource(ev)
	}
	if k, ok := s.arns[ev.Resource]; ok {
		return k
	}
	k := CanonicalResource(ev)
	if s.arns == nil || len(s.arns) >= globMemoMax {
		s.arns = make(map[string]string)
	}
	s.arns[ev.Resource] = k
	return k
}

// match returns the canonical resource and whether ev is in scope.
func (s *scope) match(ev *schema.Event) (string, bool) {
	if ServiceInvoked(ev) {
		// Judged once, with the call that caused it.
		return "", false
	}
	in := false
	var res string
	resDone := false
	var mtype, rest string
	mtDone := false
	for _, i := range s.rulesFor(ev.Action) {
		r := &s.rules[i]
		if r.Source != "" && r.Source != ev.Source {
			continue
		}
		if (len(r.MountTypes) > 0 || len(r.Paths) > 0) && !mtDone {
			if ev.Source == schema.SourceVault {
				_, mtype, rest = s.vaultMount(ev)
			}
			mtDone = true
		}
		if len(r.MountTypes) > 0 && !contains(r.MountTypes, mtype) {
			continue
		}
		if len(r.Paths) > 0 && (ev.Source != schema.SourceVault || !s.globs(s.paths, i, r.Paths, strings.TrimSuffix(rest, "/"))) {
			continue
		}
		if !resDone {
			res, resDone = s.canonical(ev), true
		}
		if len(r.Resources) > 0 && !s.globs(s.resources, i, r.Resources, res) {
			continue
		}
		if r.Exclude {
			return "", false
		}
		in = true
	}
	if !in {
		return "", false
	}
	if res == "" {
		// An in-scope call naming no secret (BatchGetSecretValue by
		// filter): the action on the account/region is the resource.
		res = ev.Action + ":" + ev.Region + ":" + ev.Account
	}
	return res, true
}

// globs matches v against rule i's compiled list in lists (raw when the
// scope was built without them).
func (s *scope) globs(lists []globList, i int, raw []string, v string) bool {
	if i < len(lists) {
		return lists[i].any(v)
	}
	return globAny(raw, v)
}

// globList is a glob list compiled once: matchGlob decides per pattern
// which of its three ways applies, which costs more than the match.
type globList []glob

type glob struct {
	pat  string
	kind uint8 // globExact, globPrefix (pat without its "*"), globMatch
}

const (
	globExact = iota
	globPrefix
	globMatch
)

func compileGlobs(pats []string) globList {
	l := make(globList, len(pats))
	for i, p := range pats {
		switch {
		case !strings.ContainsAny(p, "*?[\\"):
			l[i] = glob{pat: p, kind: globExact}
		case strings.HasSuffix(p, "*") && !strings.ContainsAny(p[:len(p)-1], "*?[\\"):
			l[i] = glob{pat: p[:len(p)-1], kind: globPrefix}
		default:
			l[i] = glob{pat: p, kind: globMatch}
		}
	}
	return l
}

// any is globAny over the compiled list.
func (l globList) any(s string) bool {
	for _, g := range l {
		switch g.kind {
		case globExact:
			if s == g.pat {
				return true
			}
		case globPrefix:
			if strings.HasPrefix(s, g.pat) {
				return true
			}
		default:
			if matchGlob(g.pat, s) {
				return true
			}
		}
	}
	return false
}

// globMemo answers globAny for one glob list over a small domain (actions),
// remembering the answers: path.Match per event is costly. The memory is
// bounded (cleared when full) since the values come from the log.
type globMemo struct {
	globs []string
	memo  map[string]bool
}

const globMemoMax = 1024

func newGlobMemo(globs []string) *globMemo {
	return &globMemo{globs: globs, memo: make(map[string]bool)}
}

func (g *globMemo) match(s string) bool {
	if v, ok := g.memo[s]; ok {
		return v
	}
	v := globAny(g.globs, s)
	if len(g.memo) >= globMemoMax {
		clear(g.memo)
	}
	g.memo[s] = v
	return v
}

func globAny(globs []string, s string) bool {
	for _, g := range globs {
		if matchGlob(g, s) {
			return true
		}
	}
	return false
}

// matchGlob: a pattern whose only metacharacter is a trailing "*" matches
// by prefix (ARN prefixes contain '/', which path.Match's '*' does not
// cross); anything else is path.Match.
func matchGlob(pattern, s string) bool {
	if pattern == s {
		return true
	}
	if strings.HasSuffix(pattern, "*") && !strings.ContainsAny(pattern[:len(pattern)-1], "*?[\\") {
		return strings.HasPrefix(s, pattern[:len(pattern)-1])
	}
	ok, _ := path.Match(pattern, s)
	return ok
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
