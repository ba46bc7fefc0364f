package sigma

import (
	"net/netip"
	"strings"
	"time"
)

func (s *selection) eval(r *Record) bool {
	if s.keywords != nil {
		return r.eachString(r.whole(), func(v string) bool {
			for _, p := range s.keywords {
				if p.match(v) {
					return true
				}
			}
			return false
		})
	}
	for _, alt := range s.alts {
		ok := true
		for _, fm := range alt {
			if !fm.eval(r) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func (fm *fieldMatcher) eval(r *Record) bool {
	m := fm.match(r)
	if fm.negate {
		return !m
	}
	return m
}

func (fm *fieldMatcher) match(r *Record) bool {
	switch fm.kind {
	case kindExists:
		return r.exists(fm.path) == fm.exists
	case kindPattern:
		if fm.all {
			for _, p := range fm.pats {
				if !fm.anyValue(r, func(s string) bool {
					if isASCII(s) {
						return p.matchASCII(s, r.lower(s))
					}
					return p.match(s)
				}) {
					return false
				}
			}
			return true
		}
		if fm.null && fm.isNull(r) {
			return true
		}
		if len(fm.pats) == 0 {
			return false
		}
		return fm.anyValue(r, func(s string) bool {
			if fm.anchored {
				// equality, prefix and suffix compare folding case in
				// place: no lowercased copy, a length settles most
				for _, p := range fm.pats {
					if p.matchAnchored(s) {
						return true
					}
				}
				return false
			}
			if isASCII(s) {
				// lowercased once for every pattern
				ls := r.lower(s)
				if fm.multi != nil {
					for _, p := range fm.rest {
						if p.matchASCII(s, ls) {
							return true
						}
					}
					if fm.cased {
						return fm.multi.in(s)
					}
					return fm.multi.in(ls)
				}
				for _, p := range fm.pats {
					if p.matchASCII(s, ls) {
						return true
					}
				}
				return false
			}
			for _, p := range fm.pats {
				if p.match(s) {
					return true
				}
			}
			return false
		})
	case kindRegex:
		if fm.all {
			for i := range fm.res {
				if !fm.anyValue(r, func(s string) bool { return fm.reMatch(i, s, r.lowerIfASCII(s)) }) {
					return false
				}
			}
			return true
		}
		return fm.anyValue(r, func(s string) bool {
			// lowercased once for every expression's literals
			ls := r.lowerIfASCII(s)
			for i := range fm.res {
				if fm.reMatch(i, s, ls) {
					return true
				}
			}
			return false
		})
	case kindCIDR:
		return fm.anyValue(r, func(s string) bool {
			a, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil {
				if ap, err2 := netip.ParseAddrPort(s); err2 == nil {
					a = ap.Addr()
				} else {
					return false
				}
			}
			a = a.Unmap()
			for _, c := range fm.cidrs {
				if c.Contains(a) {
					return true
				}
			}
			return false
		})
	case kindCompare:
		check := func(x float64) bool {
			hit := 0
			for _, n := range fm.nums {
				if compare(x, n, fm.cmp) {
					hit++
				} else if fm.all {
					return false
				}
			}
			return hit > 0
		}
		return fm.anyValue(r, func(s string) bool {
			if fm.timeOf != timeNone {
				if y, ok := leadingYear(s); ok && fm.timeOf == timeYear && !check(float64(y)) {
					// every layout parseTime accepts starts with the
					// year: no valid time with this one matches
					return false
				}
				t, ok := parseTime(s)
				if !ok {
					return false
				}
				return check(float64(timePart(t, fm.timeOf)))
			}
			x, ok := number(s)
			return ok && check(x)
		})
	case kindFieldRef:
		match := func(ref []string) bool {
			var refs []string
			r.each(ref, false, func(s string, null bool) bool {
				if !null {
					refs = append(refs, strings.Clone(s))
				}
				return false
			})
			if len(refs) == 0 {
				return false
			}
			return fm.anyValue(r, func(s string) bool {
				for _, o := range refs {
					if refMatch(s, o, fm.refPos, fm.cased) {
						return true
					}
				}
				return false
			})
		}
		for _, ref := range fm.refs {
			if match(ref) {
				if !fm.all {
					return true
				}
			} else if fm.all {
				return false
			}
		}
		return fm.all
	}
	return false
}

func refMatch(s, o string, pos int, cased bool) bool {
	if !cased {
		s, o = strings.ToLower(s), strings.ToLower(o)
	}
	switch pos {
	case posContains:
		return strings.Contains(s, o)
	case posStarts:
		return strings.HasPrefix(s, o)
	case posEnds:
		return strings.HasSuffix(s, o)
	}
	return s == o
}

func compare(x, n float64, cmp int) bool {
	switch cmp {
	case cmpLT:
		return x < n
	case cmpLTE:
		return x <= n
	case cmpGT:
		return x > n
	case cmpGTE:
		return x >= n
	}
	return x == n
}

// anyValue reports whether f holds for some non-null value of the field.
func (fm *fieldMatcher) anyValue(r *Record, f func(string) bool) bool {
	return r.each(fm.path, false, func(s string, null bool) bool {
		return !null && f(s)
	})
}

// isNull: the field is absent, or null, or a list of nothing but nulls.
func (fm *fieldMatcher) isNull(r *Record) bool {
	nonNull := r.each(fm.path, false, func(_ string, null bool) bool {
		return !null
	})
	return !nonNull
}

var timeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02"}

func parseTime(s string) (time.Time, bool) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// leadingYear reads the four-digit year a time written as parseTime's
// layouts write it starts with ("2026-…"), without parsing the rest.
func leadingYear(s string) (int, bool) {
	if len(s) < 5 || s[4] != '-' {
		return 0, false
	}
	y := 0
	for i := 0; i < 4; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		y = y*10 + int(c-'0')
	}
	return y, true
}

func timePart(t time.Time, part int) int {
	switch part {
	case timeMinute:
		return t.Minute()
	case timeHour:
		return t.Hour()
	case timeDay:
		return t.Day()
	case timeWeek:
		_, w := t.ISOWeek()
		return w
	case timeMonth:
		return int(t.Month())
	}
	return t.Year()
}

// Match reports whether a single-event rule matches the record (false for
// correlation rules and for records of another log source).
func (r *Rule) Match(rec *Record) bool {
	if r.det == nil || sourceOf(r.LogSource) != rec.src {
		return false
	}
	return r.det.cond.eval(rec, r.det)
}
