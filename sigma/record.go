package sigma

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/valyala/fastjson"

	"auditwatch/ingest/jsonx"
	"auditwatch/schema"
)

// Record is one original audit record, read by every rule. It is either
// parsed whole, or (from Set.MatchEvent) read lazily: the top-level
// members are located in the text and each is parsed on first use, so a
// rule that reads two fields does not pay for the whole tree.
type Record struct {
	v    *fastjson.Value // the whole record; nil while lazy
	raw  []byte          // lazy: the record's text
	tops []topMember     // lazy: its top-level members found so far
	scan int             // lazy: where the next member starts (-1: all found)
	open bool            // lazy: the last member found is not yet skipped (scan unknown)
	bad  bool            // lazy: found malformed
	p    *Parser
	src  int
	buf  []byte // scratch for rendering non-string values
	lbuf []byte // scratch for lowercased values
	// found: paths resolved in a lazy record
	found []foundPath
	// objs, objMembers: objects read member by member (rawGet)
	objs       []objScan
	objMembers []objMember
	time       time.Time
	// timeDone: time was read
	timeDone bool
	// ua: a lazy CloudTrail record's userAgent, as the reader normalized
	// it ("": read from the text; see uaField)
	ua string
	// uit: a lazy CloudTrail record's userIdentity.type, as the reader
	// normalized it ("": read from the text; see servedType)
	uit string
	// spans: where the reader located a lazy CloudTrail record's
	// userIdentity.arn and sessionContext.sessionIssuer.type in raw (see
	// servedSpan)
	spans schema.Spans
}

// uaField is the CloudTrail field a lazy record may be given (Record.ua).
//
// Set.Wants gives a lazy CloudTrail record the event's
// UserAgent, and each serves the path userAgent from it without reading
// the text (it lies behind the whole userIdentity object). Wants is handed
// the event the reader normalized from the very record (replay's
// ingest.Options.WantRaw), and the reader gives a record (not nil) only
// when it read it in place: one object, no escapes, no duplicated
// userAgent, no envelope member (cloudtrail.Parser.ParseLine). The event's
// UserAgent is then the text of the record's userAgent when that is a
// string, and empty when it is absent, empty or not a string: an empty one
// is read from the text. TestServedUserAgentAgrees and FuzzServedUserAgent
// check this against the reader.
const uaField = "userAgent"

// uiField is the CloudTrail object whose member type a lazy record may be
// given (Record.uit, from the event's PrincipalType: see servedType).
const uiField = "userIdentity"

// servedType is the record's userIdentity.type as the event the reader
// normalized from it (under uaField's contract) gives it exactly, or ""
// when the event cannot tell (the text is read then). The reader sets
// PrincipalType to that member's text when userIdentity is an object and
// type a non-empty string; it sets it otherwise only in two cases, both
// told apart here: "anonymous" (a hidden user name: never served) and
// "AWSService" for a record with no type and no arn but an invokedBy
// (served only when the event has no InvokedBy). An absent, empty or
// non-string type, or a userIdentity that is not an object, gives "".
// TestServedTypeAgrees and FuzzServedUserAgent check this against the
// reader.
func servedType(ev *schema.Event) string {
	switch t := ev.PrincipalType; t {
	case schema.PrincipalTypeAnonymous:
		return ""
	case "AWSService":
		if ev.InvokedBy != "" {
			return ""
		}
		return t
	default:
		return t
	}
}

// servedSpan is the string at path when the reader located it in the
// record's text (Record.spans, from the event's schema.Spans): the
// userIdentity.arn and userIdentity.sessionContext.sessionIssuer.type of a
// CloudTrail record cloudtrail.Parser.ParseLine read in place (under
// uaField's contract: one object, no escapes, no duplicated userIdentity,
// arn, sessionContext or sessionIssuer, no envelope member; a duplicated
// type is not located). Those objects' keys have no escapes, and a key is
// looked up before any dotted form of it (rawFind), so the path's value is
// exactly that string. ok is false when not located: the text is read
// then. TestServedSpansAgree and FuzzServedUserAgent check this against
// the reader.
func (r *Record) servedSpan(path []string) (string, bool) {
	var sp schema.Span
	switch {
	case r.spans == schema.Spans{}:
		return "", false
	case len(path) == 2 && path[1] == "arn" && path[0] == uiField:
		sp = r.spans.IdentityARN
	case len(path) == 4 && path[3] == "type" && path[2] == "sessionIssuer" && path[1] == "sessionContext" && path[0] == uiField:
		sp = r.spans.IssuerType
	}
	if sp.Off == 0 || uint64(sp.Off)+uint64(sp.Len) > uint64(len(r.raw)) {
		return "", false
	}
	return b2s(r.raw[sp.Off : sp.Off+sp.Len]), true
}

type topMember struct {
	key  []byte
	s, e int
	v    *fastjson.Value // parsed value, nil until used
}

// Parser turns record bytes into Records. It reuses memory between calls:
// a Record is valid until the next Parse on the same Parser. Not safe for
// concurrent use.
type Parser struct {
	p   fastjson.Parser
	p2  fastjson.Parser
	rec Record
	// lazily parsed members, one parser each
	subs []*fastjson.Parser
	nsub int
	tops []topMember
	// scratch of MatchEvent
	cands []int
	hits  []Hit
	ascii uint8   // the record's text: 0 not checked, 1 all ASCII, 2 not
	found []uint8 // per literal of the set: 0 not searched, 1 found, 2 absent
	// per single rule of the set last used: prefilter statistics
	preStat []preStat
	preSet  *Set
	kbuf    []byte
	k2buf   []byte
}

// Parse reads one record. source is "cloudtrail" or "vault" (as
// schema.Event.Source); an empty source is detected from the record.
// CloudTrail records wrapped by EventBridge (detail) or LookupEvents
// (CloudTrailEvent, a JSON string) are unwrapped.
func (p *Parser) Parse(b []byte, source string) (*Record, error) {
	v, err := p.p.ParseBytes(b)
	if err != nil {
		return nil, fmt.Errorf("sigma: record: %w", err)
	}
	if v.Type() != fastjson.TypeObject {
		return nil, fmt.Errorf("sigma: record is not a JSON object")
	}
	v, err = p.unwrap(v)
	if err != nil {
		return nil, err
	}
	r := &p.rec
	*r = Record{v: v, buf: r.buf[:0], lbuf: r.lbuf[:0], p: p, scan: -1}
	r.src = srcOf(source, v.Exists("eventSource") || v.Exists("eventName"), v.Exists("request") || v.Exists("type"))
	return r, nil
}

func srcOf(source string, ctKeys, vaultKeys bool) int {
	switch source {
	case "cloudtrail":
		return srcCloudTrail
	case "vault", "openbao":
		return srcVault
	}
	if ctKeys {
		return srcCloudTrail
	}
	if vaultKeys {
		return srcVault
	}
	return srcNone
}

// record reads a record as MatchEvent does: lazily when it has no
// escapes, else whole.
func (p *Parser) record(b []byte, source string) (*Record, error) {
	if bytes.IndexByte(b, '\\') < 0 {
		if rec, ok := p.parseLazy(b, source); ok {
			return rec, nil
		}
	}
	return p.Parse(b, source)
}

// parseLazy reads a record without escapes lazily: its top-level members
// are located on demand, scanning no further than the member a rule asks
// for (CloudTrail's userIdentity and eventName come early). ok is false
// when it must be parsed whole (not an object, a wrapper). A record found
// malformed while scanning is marked bad (MatchEvent reports it).
func (p *Parser) parseLazy(b []byte, source string) (*Record, bool) {
	if cap(p.tops) < 64 {
		p.tops = make([]topMember, 0, 64)
	}
	p.tops = p.tops[:0]
	p.nsub = 0
	i := jsonx.SkipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	r := &p.rec
	*r = Record{raw: b, tops: p.tops, buf: r.buf[:0], lbuf: r.lbuf[:0], found: r.found[:0], objs: r.objs[:0], objMembers: r.objMembers[:0], p: p, scan: jsonx.SkipWS(b, i+1)}
	if r.scan < len(b) && b[r.scan] == '}' {
		if jsonx.SkipWS(b, r.scan+1) != len(b) {
			return nil, false
		}
		r.scan = -1
	}
	has := func(k string) bool { return r.member(k) != nil }
	// EventBridge's wrapper, around CloudTrail records only (its member
	// names are also found in the text; LookupEvents' CloudTrailEvent
	// string has escapes, so such a record never comes here). A record
	// whose first member is eventVersion is a CloudTrail record itself:
	// an envelope starts with version, id, detail-type.
	if source != "vault" && source != "openbao" && !r.firstIs("eventVersion") &&
		containsLit(b2s(b), "detail-type") && has("detail") && has("detail-type") {
		return nil, false
	}
	if source != "cloudtrail" && source != "vault" && source != "openbao" {
		r.src = srcOf(source, has("eventSource") || has("eventName"), has("request") || has("type"))
	} else {
		r.src = srcOf(source, false, false)
	}
	return r, true
}

// firstIs reports whether the record's first member is named k.
func (r *Record) firstIs(k string) bool {
	if len(r.tops) == 0 && r.more() {
		r.step()
	}
	return len(r.tops) > 0 && string(r.tops[0].key) == k
}

// more reports whether a lazy record has members not found yet.
func (r *Record) more() bool { return r.open || r.scan >= 0 }

// member returns the top-level member named k (nil if none), scanning
// further into a lazy record as needed.
func (r *Record) member(k string) *topMember {
	for i := range r.tops {
		if string(r.tops[i].key) == k {
			return &r.tops[i]
		}
	}
	if r.more() {
		from := r.scan
		if r.open {
			from = r.tops[len(r.tops)-1].s
		}
		if !hasQuoted(b2s(r.raw[from:]), k) {
			// the text past the members found holds no such key: absent
			// (a lazy record has no escapes)
			return nil
		}
	}
	for r.more() {
		m := r.step()
		if m != nil && string(m.key) == k {
			return m
		}
	}
	return nil
}

// step scans the next top-level member of a lazy record: its key and
// where its value starts. The value is skipped (its end found) only when
// the scan goes on past it or the member is parsed, so a rule reading a
// member's first fields does not pay for the rest of it (Vault's auth).
func (r *Record) step() *topMember {
	b := r.raw
	fail := func() *topMember {
		r.scan, r.open, r.bad = -1, false, true
		return nil
	}
	if r.open {
		if !r.close() {
			return fail()
		}
		if r.scan < 0 {
			return nil
		}
	}
	i := r.scan
	if i >= len(b) || b[i] != '"' {
		return fail()
	}
	end := skipValue(b, i)
	if end < 0 {
		return fail()
	}
	key := b[i+1 : end-1]
	if i = jsonx.SkipWS(b, end); i >= len(b) || b[i] != ':' {
		return fail()
	}
	v := jsonx.SkipWS(b, i+1)
	if v >= len(b) {
		return fail()
	}
	r.tops = append(r.tops, topMember{key: key, s: v, e: -1})
	r.open = true
	r.p.tops = r.tops
	return &r.tops[len(r.tops)-1]
}

// close ends the last member found: it finds the end of its value and
// where the next member starts (scan; -1 after the last). false: the
// record is malformed there.
func (r *Record) close() bool {
	b := r.raw
	m := &r.tops[len(r.tops)-1]
	r.open = false
	if m.e < 0 {
		if m.e = skipValue(b, m.s); m.e < 0 {
			return false
		}
	}
	i := jsonx.SkipWS(b, m.e)
	switch {
	case i < len(b) && b[i] == '}':
		if jsonx.SkipWS(b, i+1) != len(b) {
			return false
		}
		r.scan = -1
	case i < len(b) && b[i] == ',':
		r.scan = jsonx.SkipWS(b, i+1)
	default:
		return false
	}
	return true
}

// value parses a lazy member on first use.
func (r *Record) value(m *topMember) *fastjson.Value {
	if m.v != nil {
		return m.v
	}
	if m.e < 0 {
		if m.e = skipValue(r.raw, m.s); m.e < 0 {
			r.bad = true
			m.e = m.s
		}
	}
	p := r.p
	if p.nsub == len(p.subs) {
		p.subs = append(p.subs, new(fastjson.Parser))
	}
	sp := p.subs[p.nsub]
	p.nsub++
	v, err := sp.ParseBytes(r.raw[m.s:m.e])
	if err != nil {
		// the lexer accepted it: cannot happen; read it as null
		v = fastjson.MustParse("null")
	}
	m.v = v
	return v
}

// root resolves the first element(s) of path: the value to walk the rest
// of path from. A top-level key with dots in it is tried too.
func (r *Record) root(path []string) (*fastjson.Value, []string, bool) {
	if r.v != nil {
		return r.v, path, true
	}
	if m := r.member(path[0]); m != nil {
		return r.value(m), path[1:], true
	}
	key := path[0]
	for j := 1; j < len(path); j++ {
		key += "." + path[j]
		if m := r.member(key); m != nil {
			return r.value(m), path[j+1:], true
		}
	}
	return nil, nil, false
}

// rootMember is root for a lazy record, without parsing the member.
func (r *Record) rootMember(path []string) (*topMember, []string, bool) {
	if m := r.member(path[0]); m != nil {
		return m, path[1:], true
	}
	key := path[0]
	for j := 1; j < len(path); j++ {
		key += "." + path[j]
		if m := r.member(key); m != nil {
			return m, path[j+1:], true
		}
	}
	return nil, nil, false
}

// each calls f with the text of every value at path (as visit does, or
// as visitAll does when all is set) until f returns true; a null value
// is given as ("", true). A lazy record is walked in its text: no tree
// is built for the member.
func (r *Record) each(path []string, all bool, f func(s string, null bool) bool) bool {
	g := func(v *fastjson.Value) bool {
		if v.Type() == fastjson.TypeNull {
			return f("", true)
		}
		s, _ := r.text(v)
		return f(s, false)
	}
	var v *fastjson.Value
	rest := path
	if r.v != nil {
		v = r.v
	} else if r.ua != "" && len(path) == 1 && path[0] == uaField {
		return f(r.ua, false)
	} else if r.uit != "" && len(path) == 2 && path[1] == "type" && path[0] == uiField {
		return f(r.uit, false)
	} else if s, ok := r.servedSpan(path); ok {
		return f(s, false)
	} else {
		// a path through objects only is resolved once per record, for
		// every rule that reads it
		for i := range r.found {
			if samePath(r.found[i].path, path) {
				if pos := r.found[i].pos; pos >= 0 {
					return r.rawAt(pos, all, f)
				}
				return false
			}
		}
		m, rst, ok := r.rootMember(path)
		if !ok {
			r.found = append(r.found, foundPath{path, -1})
			return false
		}
		if m.v == nil {
			pos, through := r.rawFind(m.s, rst)
			if !through {
				return r.rawVisit(m.s, rst, all, f)
			}
			r.found = append(r.found, foundPath{path, pos})
			if pos < 0 {
				return false
			}
			return r.rawAt(pos, all, f)
		}
		v, rest = m.v, rst
	}
	if all {
		return visitAll(v, rest, g)
	}
	return visit(v, rest, g)
}

// foundPath is a path resolved in a lazy record: the index of its value
// (-1: absent).
type foundPath struct {
	path []string
	pos  int
}

func samePath(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// rawFind walks path from the value at i through objects only: the index
// of the value at its end (-1: absent). through is false when an array
// lies on the way (the values fan out: rawVisit walks them).
func (r *Record) rawFind(i int, path []string) (pos int, through bool) {
	b := r.raw
	for pi := 0; pi < len(path); pi++ {
		switch b[i] {
		case '{':
			v := r.rawGet(i, path[pi])
			if v < 0 {
				if pi < len(path)-1 {
					key := path[pi]
					for j := pi + 1; j < len(path); j++ {
						key += "." + path[j]
						if v := r.rawGet(i, key); v >= 0 {
							return r.rawFind(v, path[j+1:])
						}
					}
				}
				return -1, true
			}
			i = v
		case '[':
			return 0, false
		default:
			return -1, true
		}
	}
	return i, true
}

// rawAt calls f as rawVisit does at the end of a path: with each element
// of an array (unless all), else with the value.
func (r *Record) rawAt(i int, all bool, f func(string, bool) bool) bool {
	if r.raw[i] == '[' && !all {
		return r.rawElems(i, func(v int) bool { return r.rawLeaf(v, f) })
	}
	return r.rawLeaf(i, f)
}

// rawVisit is visit (visitAll when all) over the text of a lazy record,
// from the value starting at i.
func (r *Record) rawVisit(i int, path []string, all bool, f func(string, bool) bool) bool {
	b := r.raw
	for pi := 0; pi < len(path); pi++ {
		switch b[i] {
		case '{':
			v := r.rawGet(i, path[pi])
			if v < 0 {
				if pi < len(path)-1 {
					// a key with dots in it
					key := path[pi]
					for j := pi + 1; j < len(path); j++ {
						key += "." + path[j]
						if v := r.rawGet(i, key); v >= 0 {
							return r.rawVisit(v, path[j+1:], all, f)
						}
					}
				}
				return false
			}
			i = v
		case '[':
			return r.rawElems(i, func(v int) bool { return r.rawVisit(v, path[pi:], all, f) })
		default:
			return false
		}
	}
	if b[i] == '[' && !all {
		return r.rawElems(i, func(v int) bool { return r.rawLeaf(v, f) })
	}
	return r.rawLeaf(i, f)
}

// rawGet finds the first member named key of the object at i (the index
// of its value, -1 if none). The members passed on the way are remembered
// (objMembers), so that looking up a sibling later (userIdentity's type,
// then arn, then sessionContext) resumes where the scan stopped.
func (r *Record) rawGet(i int, key string) int {
	st := -1
	for n := range r.objs {
		if r.objs[n].at == i {
			st = n
			break
		}
	}
	if st < 0 {
		next := jsonx.SkipWS(r.raw, i+1)
		if next < len(r.raw) && r.raw[next] == '}' {
			next = -1
		}
		r.objs = append(r.objs, objScan{at: i, next: next})
		st = len(r.objs) - 1
	}
	for _, m := range r.objMembers {
		if m.obj == i && string(m.key) == key {
			return m.v
		}
	}
	for r.objs[st].next >= 0 {
		o := &r.objs[st]
		if o.open {
			// the value of the member found last: skipped only now that
			// the scan goes past it (userIdentity's sessionContext, the
			// last member read, is not skipped to be read)
			o.open = false
			if o.next = r.afterValue(o.next); o.next == -2 {
				r.bad = true
				o.next = -1
				return -1
			}
			continue
		}
		k, v, ok := r.scanKey(o.next)
		if !ok {
			r.bad = true
			o.next = -1
			return -1
		}
		r.objMembers = append(r.objMembers, objMember{obj: i, key: k, v: v})
		o.next, o.open = v, true
		if string(k) == key {
			return v
		}
	}
	return -1
}

// objScan is an object of a lazy record being read member by member: the
// index of its '{' and of the next member's key (-1: all read); when
// open, next is the value of the member found last, not yet skipped.
type objScan struct {
	at, next int
	open     bool
}

// scanKey reads the key of the member starting at i, in an object of a
// lazy record, and where its value starts.
func (r *Record) scanKey(i int) (key []byte, v int, ok bool) {
	b := r.raw
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	end := skipValue(b, i)
	if end < 0 {
		return nil, 0, false
	}
	key = b[i+1 : end-1]
	if i = jsonx.SkipWS(b, end); i >= len(b) || b[i] != ':' {
		return nil, 0, false
	}
	v = jsonx.SkipWS(b, i+1)
	if v >= len(b) {
		return nil, 0, false
	}
	return key, v, true
}

// afterValue skips the member value at v, in an object of a lazy record:
// where the next member's key starts, -1 after the last, -2 when
// malformed.
func (r *Record) afterValue(v int) int {
	b := r.raw
	e := skipValue(b, v)
	if e < 0 {
		return -2
	}
	switch i := jsonx.SkipWS(b, e); {
	case i < len(b) && b[i] == '}':
		return -1
	case i < len(b) && b[i] == ',':
		return jsonx.SkipWS(b, i+1)
	}
	return -2
}

// objMember is a member of an object read so far: the object's index, the
// key, and the index of the value.
type objMember struct {
	obj int
	key []byte
	v   int
}

// rawElems calls f with the start of each element of the array at i until
// f returns true.
func (r *Record) rawElems(i int, f func(v int) bool) bool {
	b := r.raw
	found := false
	end := jsonx.Array(b, i, 2, func(_, v int) int {
		if f(v) {
			found = true
			return -1
		}
		return skipValue(b, v)
	})
	if end < 0 && !found {
		r.bad = true
	}
	return found
}

// rawLeaf calls f with the text of the value at i: a string without its
// quotes (a lazy record has no escapes), a number or boolean as written,
// an object or array as compact JSON.
func (r *Record) rawLeaf(i int, f func(string, bool) bool) bool {
	b := r.raw
	switch c := b[i]; {
	case c == '"':
		e := skipValue(b, i)
		if e < 0 {
			r.bad = true
			return false
		}
		return f(b2s(b[i+1:e-1]), false)
	case c == 'n':
		return f("", true)
	case c == '{' || c == '[':
		e := skipValue(b, i)
		if e < 0 {
			r.bad = true
			return false
		}
		v := r.value(&topMember{s: i, e: e})
		s, _ := r.text(v)
		return f(s, false)
	}
	e := skipValue(b, i)
	if e < 0 {
		r.bad = true
		return false
	}
	return f(b2s(b[i:e]), false)
}

// whole returns the whole record's tree, parsing it if lazy.
func (r *Record) whole() *fastjson.Value {
	if r.v == nil {
		v, err := r.p.p.ParseBytes(r.raw)
		if err != nil {
			v = fastjson.MustParse("{}")
		}
		r.v = v
	}
	return r.v
}

// EventTime is the record's event time (eventTime or time; zero when
// absent or unreadable).
func (r *Record) EventTime() time.Time {
	if !r.timeDone {
		r.timeDone = true
		k := "time"
		if r.src == srcCloudTrail {
			k = "eventTime"
		}
		if s, ok := r.Field([]string{k}); ok {
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				r.time = t.UTC()
			}
		}
	}
	return r.time
}

func (p *Parser) unwrap(v *fastjson.Value) (*fastjson.Value, error) {
	if d := v.Get("detail"); d != nil && d.Type() == fastjson.TypeObject && v.Exists("detail-type") {
		return d, nil
	}
	if c := v.Get("CloudTrailEvent"); c != nil && c.Type() == fastjson.TypeString {
		inner, err := p.p2.ParseBytes(c.GetStringBytes())
		if err != nil {
			return nil, fmt.Errorf("sigma: CloudTrailEvent: %w", err)
		}
		if inner.Type() != fastjson.TypeObject {
			return nil, fmt.Errorf("sigma: CloudTrailEvent is not a JSON object")
		}
		return inner, nil
	}
	return v, nil
}

// visit calls f with every value at path (arrays on the way and at the end
// fan out), until f returns true. It reports whether f returned true.
func visit(v *fastjson.Value, path []string, f func(*fastjson.Value) bool) bool {
	for i, k := range path {
		switch v.Type() {
		case fastjson.TypeObject:
			o, _ := v.Object()
			nv := o.Get(k)
			if nv == nil {
				// a key with dots in it
				if i < len(path)-1 {
					return visitJoined(o, path[i:], f)
				}
				return false
			}
			v = nv
		case fastjson.TypeArray:
			arr, _ := v.Array()
			for _, e := range arr {
				if visit(e, path[i:], f) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	if v.Type() == fastjson.TypeArray {
		arr, _ := v.Array()
		for _, e := range arr {
			if f(e) {
				return true
			}
		}
		// an empty array is still a present value, but has nothing to match
		return false
	}
	return f(v)
}

func visitJoined(o *fastjson.Object, path []string, f func(*fastjson.Value) bool) bool {
	key := path[0]
	for j := 1; j < len(path); j++ {
		key += "." + path[j]
		if nv := o.Get(key); nv != nil {
			return visit(nv, path[j+1:], f)
		}
	}
	return false
}

// exists reports whether the path is present (even as null).
func (r *Record) exists(path []string) bool {
	return r.each(path, true, func(string, bool) bool { return true })
}

// visitAll is visit that also calls f on an empty array at the end.
func visitAll(v *fastjson.Value, path []string, f func(*fastjson.Value) bool) bool {
	for i, k := range path {
		switch v.Type() {
		case fastjson.TypeObject:
			o, _ := v.Object()
			nv := o.Get(k)
			if nv == nil {
				if i < len(path)-1 {
					key := k
					for j := i + 1; j < len(path); j++ {
						key += "." + path[j]
						if nv := o.Get(key); nv != nil {
							return visitAll(nv, path[j+1:], f)
						}
					}
				}
				return false
			}
			v = nv
		case fastjson.TypeArray:
			arr, _ := v.Array()
			for _, e := range arr {
				if visitAll(e, path[i:], f) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return f(v)
}

// text renders a leaf value as the string rules compare: strings as they
// are, numbers and booleans as written, objects and arrays as compact JSON.
// null gives ok=false.
func (r *Record) text(v *fastjson.Value) (string, bool) {
	switch v.Type() {
	case fastjson.TypeString:
		return b2s(v.GetStringBytes()), true
	case fastjson.TypeNull:
		return "", false
	case fastjson.TypeTrue:
		return "true", true
	case fastjson.TypeFalse:
		return "false", true
	}
	r.buf = v.MarshalTo(r.buf[:0])
	return b2s(r.buf), true
}

// b2s views b as a string without copying: the result is valid until the
// record's memory is reused, and is never kept beyond one evaluation.
func b2s(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func number(s string) (float64, bool) {
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil
}

// fieldView is Field without copying: the text is valid until the
// record's memory is reused.
func (r *Record) fieldView(path []string) (string, bool) {
	var out string
	var ok bool
	r.each(path, false, func(s string, null bool) bool {
		out, ok = s, !null
		return true
	})
	return out, ok
}

// Field returns the first value at a dotted path as text ("" and false
// when absent or null). Correlation group-by and value_count use it.
func (r *Record) Field(path []string) (string, bool) {
	var out string
	var ok bool
	r.each(path, false, func(s string, null bool) bool {
		out, ok = strings.Clone(s), !null
		return true
	})
	return out, ok
}

// strings calls f with every string leaf of the record (keywords).
func (r *Record) eachString(v *fastjson.Value, f func(string) bool) bool {
	switch v.Type() {
	case fastjson.TypeString:
		return f(b2s(v.GetStringBytes()))
	case fastjson.TypeObject:
		o, _ := v.Object()
		found := false
		o.Visit(func(_ []byte, e *fastjson.Value) {
			if !found && r.eachString(e, f) {
				found = true
			}
		})
		return found
	case fastjson.TypeArray:
		arr, _ := v.Array()
		for _, e := range arr {
			if r.eachString(e, f) {
				return true
			}
		}
	}
	return false
}

// skipValue returns the index after the value starting at b[i], or -1,
// in the text of a lazy record: one without backslashes, read before by
// the reader. Strings are skipped whole (a vectorized search for the
// closing quote) and brackets matched, without checking the tokens
// between them.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		j := bytes.IndexByte(b[i+1:], '"')
		if j < 0 {
			return -1
		}
		return i + j + 2
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				j := bytes.IndexByte(b[i+1:], '"')
				if j < 0 {
					return -1
				}
				i += j + 2
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	case ',', ':', '}', ']':
		return -1
	}
	start := i
	for i < len(b) {
		switch b[i] {
		case ',', '}', ']', ':', ' ', '\t', '\n', '\r', '"', '{', '[':
			if i == start {
				return -1
			}
			return i
		}
		i++
	}
	return i
}

// lowerIfASCII is lower for an ASCII s, "" for any other.
func (r *Record) lowerIfASCII(s string) string {
	if !isASCII(s) {
		return ""
	}
	return r.lower(s)
}

// lower returns the ASCII s lowercased: s itself when it has no upper-case
// letter, else a copy in scratch memory valid until the next call.
func (r *Record) lower(s string) string {
	i := 0
	// a word at a time while the bytes are ASCII without upper case
	for i+8 <= len(s) {
		if w := word(s, i); w&highBits != 0 || upperBits(w) != 0 {
			break
		}
		i += 8
	}
	for i < len(s) && (s[i] < 'A' || s[i] > 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	r.lbuf = append(r.lbuf[:0], s...)
	for ; i < len(r.lbuf); i++ {
		r.lbuf[i] = lowerASCII(r.lbuf[i])
	}
	return b2s(r.lbuf)
}
