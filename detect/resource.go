package detect

import (
	"path"
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
}

func newScope(rules []ScopeRule) scope {
	s := scope{rules: rules, actions: make([]*globMemo, len(rules))}
	for i := range rules {
		s.actions[i] = newGlobMemo(rules[i].Actions)
	}
	return s
}

// actionMatch reports whether action matches rules[i].Actions.
func (s *scope) actionMatch(i int, action string) bool {
	if i < len(s.actions) {
		return s.actions[i].match(action)
	}
	return globAny(s.rules[i].Actions, action)
}

// match returns the canonical resource and whether ev is in scope.
func (s *scope) match(ev *schema.Event) (string, bool) {
	in := false
	var res string
	resDone := false
	for i := range s.rules {
		r := &s.rules[i]
		if r.Source != "" && r.Source != ev.Source {
			continue
		}
		if len(r.Actions) > 0 && !s.actionMatch(i, ev.Action) {
			continue
		}
		if len(r.MountTypes) > 0 && !contains(r.MountTypes, ev.MountType) {
			continue
		}
		if !resDone {
			res, resDone = CanonicalResource(ev), true
		}
		if len(r.Resources) > 0 && !globAny(r.Resources, res) {
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
