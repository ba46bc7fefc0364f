package trail

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"auditwatch/schema"
)

// Detector is the detector name of every finding of this package.
const Detector = schema.DetectorTrailIntegrity

// Finding kinds (the finding's "kind" attribute).
const (
	KindLogMissing   = "log_missing"
	KindLogModified  = "log_modified"
	KindBadSignature = "digest_bad_signature"
	KindInvalid      = "digest_invalid"
	KindChainBroken  = "chain_broken"
	KindGap          = "digest_gap"
	KindUnlisted     = "log_unlisted"
	KindChainStart   = "chain_start"
)

// Trail management calls that explain a starting digest.
var explainActions = map[string]bool{
	"cloudtrail:StartLogging": true, "cloudtrail:CreateTrail": true, "cloudtrail:UpdateTrail": true,
}

// DigestStatus is the outcome of one digest, for reports.
type DigestStatus struct {
	ID        string
	End       time.Time
	Backfill  bool
	Starting  bool
	Signature string // valid, INVALID, unverified, error: …
	LogFiles  int
	Problems  []string
}

type logRec struct {
	id, name, sha string
	at            time.Time
	checked       bool
	unlisted      *open // the log_unlisted finding, once raised
	covered       bool
}

type listing struct {
	id, sha, digest string
	at              time.Time
	missing         *open // the log_missing finding, once raised
}

type digestRec struct {
	id, chain string
	d         *Digest
	content   []byte // uncompressed, for the saved state
	sha       string
	toSign    string
	sig       string
	sigState  int // 0 unknown, 1 valid, -1 bad
	sigErr    string
	at        time.Time
	backfill  bool
	// previous digest not seen yet (and expected)
	linkPending bool
	start       *open // the chain_start finding (starting digests)
	explained   bool
	status      *DigestStatus
}

type chainRec struct {
	scope   string
	lastEnd time.Time
	gap     *open
	gapLogs int
	breaks  [][2]time.Time
}

// open is a raised finding that later revisions update.
type open struct {
	f schema.Finding
}

// Verifier checks CloudTrail digests and log files as they are read (live)
// or after a stored trail was read (Finish). It is safe for concurrent use.
type Verifier struct {
	// Report keeps every digest's status for Statuses (trail verify).
	Report bool

	cfg   Config
	keys  KeySource
	log   *slog.Logger
	final bool

	mu       sync.Mutex
	logs     map[string]*logRec
	listed   map[string]*listing
	digests  map[string]*digestRec
	waiting  map[string][]*digestRec // previous id -> digests naming it
	chains   map[string]*chainRec
	events   []schema.Event
	restarts map[string]time.Time // account -> newest StartLogging or trail update
	// checked remembers log files already compared with their digest
	// (id -> SHA-256, bounded, oldest forgotten first), so a re-read (SQS
	// redelivery, replay after a restart) is not a new unlisted file.
	checked     map[string]checkedLog
	checkedFIFO []string
	out         []schema.Finding
	statuses    []*DigestStatus
	dropped     int
}

// NewVerifier returns a verifier; cfg is defaulted.
func NewVerifier(cfg Config, keys KeySource, logger *slog.Logger) *Verifier {
	cfg.SetDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Verifier{cfg: cfg, keys: keys, log: logger,
		logs: map[string]*logRec{}, listed: map[string]*listing{}, digests: map[string]*digestRec{},
		waiting: map[string][]*digestRec{}, chains: map[string]*chainRec{}}
}

// Take returns and clears the findings raised so far.
func (v *Verifier) Take() []schema.Finding {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := v.out
	v.out = nil
	return out
}

// Statuses returns every digest's outcome, oldest end time first.
func (v *Verifier) Statuses() []DigestStatus {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]DigestStatus, 0, len(v.statuses))
	for _, s := range v.statuses {
		c := *s
		c.Problems = append([]string(nil), s.Problems...)
		out = append(out, c)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].End.Equal(out[j].End) {
			return out[i].End.Before(out[j].End)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Dropped is the number of objects not tracked because MaxTracked was reached.
func (v *Verifier) Dropped() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.dropped
}

func (v *Verifier) addStatus(st *DigestStatus) {
	if v.Report {
		v.statuses = append(v.statuses, st)
	}
}

func (v *Verifier) full() bool {
	if len(v.logs)+len(v.listed)+len(v.digests) >= v.cfg.MaxTracked {
		v.dropped++
		return true
	}
	return false
}

func accountOf(scope string) string {
	if i := strings.IndexByte(scope, '/'); i >= 0 {
		return scope[:i]
	}
	return scope
}

// raise records a new finding (revision 0) and returns it for updates.
func (v *Verifier) raise(kind string, sev schema.Severity, object string, at time.Time, summary, reason string, attrs map[string]string) *open {
	key := schema.MakeID(Detector, kind, object)
	f := schema.Finding{
		Detector: Detector, Severity: sev, Time: at.UTC(), Resource: object, Source: "cloudtrail",
		Account: accountOf(scope(object)), Count: 1, EventIDs: []string{}, Summary: summary, Reason: reason,
		DedupeKey: key, FirstTime: at.UTC(), LastTime: at.UTC(),
		Attributes: map[string]string{"kind": kind},
	}
	for k, val := range attrs {
		f.Attributes[k] = val
	}
	f.ID = schema.MakeID(Detector, key, "0")
	v.out = append(v.out, f)
	v.log.Warn("trail integrity", "kind", kind, "severity", string(sev), "object", object, "summary", summary)
	return &open{f: f}
}

// revise emits the next revision of o.
func (v *Verifier) revise(o *open, at time.Time, sev schema.Severity, summary, reason string, attrs map[string]string) {
	f := o.f
	f.Revision++
	f.Severity = sev
	f.Time, f.LastTime = at.UTC(), at.UTC()
	f.Summary, f.Reason = summary, reason
	f.Attributes = map[string]string{}
	for k, val := range o.f.Attributes {
		f.Attributes[k] = val
	}
	for k, val := range attrs {
		f.Attributes[k] = val
	}
	f.ID = schema.MakeID(Detector, f.DedupeKey, strconv.Itoa(f.Revision))
	o.f = f
	v.out = append(v.out, f)
}

// LogFile records a CloudTrail log file read at `at` with the hex SHA-256
// of its uncompressed content. name is its S3 key or path.
func (v *Verifier) LogFile(name, sha string, at time.Time) {
	id := ObjectID(name)
	if IsDigestName(id) {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if r, ok := v.logs[id]; ok && r.sha == sha {
		return
	}
	if c, ok := v.checked[id]; ok {
		if !strings.EqualFold(c.sha, sha) {
			v.raise(KindLogModified, schema.SeverityCritical, id, at, "CloudTrail log file modified: "+id,
				fmt.Sprintf("read again with SHA-256 %s; digest %s records %s", sha, c.digest, c.sha),
				map[string]string{"digest": c.digest, "hash_read": sha, "hash_digest": c.sha})
		}
		return
	}
	if _, ok := v.logs[id]; !ok && v.full() {
		return
	}
	r := &logRec{id: id, name: name, sha: sha, at: at}
	v.logs[id] = r
	if l, ok := v.listed[id]; ok {
		v.compare(r, l, at)
	}
}

// compare checks a read log file against the digest that lists it.
func (v *Verifier) compare(r *logRec, l *listing, at time.Time) {
	r.checked = true
	if !strings.EqualFold(r.sha, l.sha) {
		v.raise(KindLogModified, schema.SeverityCritical, r.id, at,
			"CloudTrail log file modified: "+r.id,
			fmt.Sprintf("SHA-256 of the uncompressed content %s differs from %s recorded in digest %s", r.sha, l.sha, l.digest),
			map[string]string{"digest": l.digest, "hash_read": r.sha, "hash_digest": l.sha})
		v.problem(l.digest, "log file modified: "+r.id)
	}
	if r.unlisted != nil {
		v.revise(r.unlisted, at, schema.SeverityInfo, "CloudTrail log file now listed by digest "+l.digest,
			"resolved: a later or backfill digest lists "+r.id, map[string]string{"status": "resolved", "digest": l.digest})
		r.unlisted = nil
	}
	if l.missing != nil {
		v.revise(l.missing, at, schema.SeverityInfo, "CloudTrail log file read after it was reported missing: "+r.id,
			"resolved: the log file was read", map[string]string{"status": "resolved"})
		l.missing = nil
	}
	delete(v.listed, l.id)
	delete(v.logs, r.id)
	v.remember(l.id, checkedLog{sha: l.sha, digest: l.digest})
}

type checkedLog struct{ sha, digest string }

// maxChecked bounds the memory of compared log files.
const maxChecked = 200_000

func (v *Verifier) remember(id string, c checkedLog) {
	if v.checked == nil {
		v.checked = map[string]checkedLog{}
	}
	if _, ok := v.checked[id]; !ok {
		v.checkedFIFO = append(v.checkedFIFO, id)
	}
	v.checked[id] = c
	for len(v.checkedFIFO) > maxChecked {
		delete(v.checked, v.checkedFIFO[0])
		v.checkedFIFO = v.checkedFIFO[1:]
	}
}

func (v *Verifier) problem(digestID, p string) {
	if d, ok := v.digests[digestID]; ok && d.status != nil {
		d.status.Problems = append(d.status.Problems, p)
	}
}

// Event shows the verifier a normalized event read at `at`; trail
// management calls (StartLogging, CreateTrail, UpdateTrail) explain
// starting digests.
func (v *Verifier) Event(ev *schema.Event, at time.Time) {
	if !explainActions[ev.Action] || ev.Outcome == schema.OutcomeFailure {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.events) >= 1000 {
		v.events = v.events[1:]
	}
	v.events = append(v.events, *ev)
	if v.restarts == nil {
		v.restarts = map[string]time.Time{}
	}
	if ev.Time.After(v.restarts[ev.Account]) {
		v.restarts[ev.Account] = ev.Time
	}
	for _, d := range v.digests {
		if d.d.Starting() && !d.backfill && !d.explained {
			v.explain(d, at)
		}
	}
}

// explain looks for the call that explains a starting digest.
func (v *Verifier) explain(d *digestRec, at time.Time) bool {
	for i := len(v.events) - 1; i >= 0; i-- {
		ev := &v.events[i]
		if ev.Account != "" && ev.Account != d.d.AWSAccountID {
			continue
		}
		if ev.Time.Before(d.d.start.Add(-v.cfg.ExplainWindow.D())) || ev.Time.After(d.d.end) {
			continue
		}
		d.explained = true
		who := ev.Principal
		if ev.PrincipalName != "" {
			who = ev.PrincipalName
		}
		summary := fmt.Sprintf("CloudTrail digest chain restarted by %s (%s at %s)", ev.Action, who, ev.Time.UTC().Format(time.RFC3339))
		reason := "starting digest " + d.id + " follows " + ev.Action + " event " + ev.ID
		attrs := map[string]string{"explained_by": ev.ID, "action": ev.Action, "digest": d.id, "status": "explained"}
		if d.start == nil {
			d.start = v.raise(KindChainStart, schema.SeverityInfo, d.id, at, summary, reason, attrs)
			d.start.f.Principal, d.start.f.SourceIP = ev.Principal, ev.SourceIP
		} else {
			v.revise(d.start, at, schema.SeverityInfo, summary, reason, attrs)
		}
		if d.status != nil {
			d.status.Problems = append(d.status.Problems, "starting digest, explained by "+ev.Action+" "+ev.ID)
		}
		return true
	}
	return false
}

// Digest records a digest file read at `at`: its uncompressed content and
// the hex signature from the object's metadata (or a sibling file; "" when
// unknown: the next digest's previousDigestSignature supplies it).
func (v *Verifier) Digest(ctx context.Context, name string, content []byte, sigHex string, at time.Time) {
	id := ObjectID(name)
	v.mu.Lock()
	defer v.mu.Unlock()
	st := &DigestStatus{ID: id, Backfill: IsBackfill(id), Signature: "unverified"}
	if v.Report {
		defer func() {
			if st.End.IsZero() {
				st.End = at
			}
		}()
	}
	if t, ok := NameTime(id); ok {
		st.End = t
	}
	d, err := ParseDigest(content)
	if err != nil {
		st.Signature = "INVALID"
		st.Problems = append(st.Problems, err.Error())
		v.addStatus(st)
		v.raise(KindInvalid, schema.SeverityCritical, id, at, "CloudTrail digest file unreadable: "+id, err.Error(), nil)
		return
	}
	st.End, st.Starting, st.LogFiles = d.end, d.Starting(), len(d.LogFiles)
	if ObjectID(d.DigestS3Object) != id {
		st.Signature = "INVALID"
		st.Problems = append(st.Problems, "moved from "+d.DigestS3Object)
		v.addStatus(st)
		v.raise(KindInvalid, schema.SeverityCritical, id, at, "CloudTrail digest file not at its original location: "+id,
			"the digest names itself "+d.DigestS3Bucket+"/"+d.DigestS3Object, nil)
		return
	}
	sum := sha256.Sum256(content)
	sha := hex.EncodeToString(sum[:])
	if old, ok := v.digests[id]; ok {
		if old.sha == sha {
			if old.sig == "" && sigHex != "" {
				old.sig = sigHex
				v.verifySig(ctx, old, at)
			}
			return
		}
		// Same name, other content: judged afresh below.
	} else if v.full() {
		return
	}
	rec := &digestRec{id: id, chain: chainKey(id), d: d, content: content, sha: sha, toSign: SigningString(d, content), sig: strings.ToLower(sigHex),
		at: at, backfill: IsBackfill(id), status: st}
	v.digests[id] = rec
	v.addStatus(st)
	v.verifySig(ctx, rec, at)

	if !rec.backfill {
		ch := v.chains[rec.chain]
		if ch == nil {
			ch = &chainRec{scope: scope(id)}
			v.chains[rec.chain] = ch
		}
		earlier := false
		for _, o := range v.digests {
			if o != rec && o.chain == rec.chain && !o.backfill && !o.d.end.After(d.start) {
				earlier = true
				break
			}
		}
		if d.Starting() {
			if !v.explain(rec, at) && v.final {
				v.unexplained(rec, at)
			}
		} else if p, ok := v.digests[d.PreviousID()]; ok {
			v.link(rec, p, at)
		} else {
			v.waiting[d.PreviousID()] = append(v.waiting[d.PreviousID()], rec)
			rec.linkPending = earlier
		}
		for _, next := range v.waiting[id] {
			v.link(next, rec, at)
		}
		delete(v.waiting, id)
		// A digest covering more than the gap limit, or the end of an
		// open gap.
		if ch.gap != nil && d.end.After(ch.lastEnd) {
			v.revise(ch.gap, at, schema.SeverityHigh, "CloudTrail digests resumed after a gap: "+id,
				fmt.Sprintf("resolved: digest %s covers %s..%s; %d log files were read during the gap", id, d.DigestStartTime, d.DigestEndTime, ch.gapLogs),
				map[string]string{"status": "resolved", "digest": id, "gap_log_files": strconv.Itoa(ch.gapLogs)})
			ch.gap, ch.gapLogs = nil, 0
		} else if !d.Starting() && d.end.Sub(d.start) > v.cfg.GapAfter.D() {
			v.raise(KindGap, schema.SeverityHigh, id, at, "CloudTrail digest gap: "+id+" covers "+d.end.Sub(d.start).String(),
				fmt.Sprintf("no digest between %s and %s (longer than %s) while the trail was logging", d.DigestStartTime, d.DigestEndTime, v.cfg.GapAfter.D()),
				map[string]string{"digest": id})
			st.Problems = append(st.Problems, "covers a gap of "+d.end.Sub(d.start).String())
		}
		if d.end.After(ch.lastEnd) {
			ch.lastEnd = d.end
		}
	}
	for _, lf := range d.LogFiles {
		lid := ObjectID(lf.S3Object)
		l := &listing{id: lid, sha: strings.ToLower(lf.HashValue), digest: id, at: at}
		if r, ok := v.logs[lid]; ok {
			v.compare(r, l, at)
			continue
		}
		if old, ok := v.listed[lid]; ok && old.sha == l.sha {
			continue
		}
		v.listed[lid] = l
	}
}

// unexplained raises the high finding for a starting digest nothing explains.
func (v *Verifier) unexplained(d *digestRec, at time.Time) {
	if d.start != nil {
		return
	}
	d.start = v.raise(KindChainStart, schema.SeverityHigh, d.id, at,
		"CloudTrail digest chain restarted without an explaining call: "+d.id,
		fmt.Sprintf("starting digest (previous digest fields null) for %s..%s and no StartLogging, CreateTrail or UpdateTrail call between %s and its end",
			d.d.DigestStartTime, d.d.DigestEndTime, d.d.start.Add(-v.cfg.ExplainWindow.D()).Format(time.RFC3339)),
		map[string]string{"digest": d.id, "status": "unexplained"})
	if d.status != nil {
		d.status.Problems = append(d.status.Problems, "starting digest, unexplained")
	}
}

// verifySig checks a digest's signature when both it and the key are known.
func (v *Verifier) verifySig(ctx context.Context, d *digestRec, at time.Time) {
	if d.sig == "" || d.sigState != 0 {
		return
	}
	bad := func(why string) {
		d.sigState = -1
		d.status.Signature = "INVALID"
		d.status.Problems = append(d.status.Problems, why)
		v.raise(KindBadSignature, schema.SeverityCritical, d.id, at, "CloudTrail digest signature invalid: "+d.id, why,
			map[string]string{"fingerprint": d.d.Fingerprint})
	}
	sig, err := hex.DecodeString(d.sig)
	if err != nil {
		bad("signature is not hex")
		return
	}
	k, err := v.keys.Key(ctx, d.d.Fingerprint, d.d.end)
	if errors.Is(err, ErrNoKey) {
		bad("no CloudTrail public key has fingerprint " + d.d.Fingerprint)
		return
	}
	if err != nil {
		d.sigErr = err.Error()
		d.status.Signature = "error: " + err.Error()
		return
	}
	h := sha256.Sum256([]byte(d.toSign))
	if err := rsa.VerifyPKCS1v15(k.Key, crypto.SHA256, h[:], sig); err != nil {
		bad("SHA256withRSA verification failed with the key of fingerprint " + d.d.Fingerprint)
		return
	}
	d.sigState, d.sigErr = 1, ""
	d.status.Signature = "valid"
}

// link checks that next's previous-digest fields match p.
func (v *Verifier) link(next, p *digestRec, at time.Time) {
	next.linkPending = false
	var why []string
	if h := next.d.PreviousHashValue; h != nil && !strings.EqualFold(*h, p.sha) {
		why = append(why, fmt.Sprintf("its SHA-256 is %s, %s records %s", p.sha, next.id, *h))
	}
	prevSig := strings.ToLower(*next.d.PreviousSignature)
	if p.sig == "" {
		p.sig = prevSig
		v.verifySig(context.Background(), p, at)
	} else if p.sig != prevSig {
		why = append(why, "its signature differs from the previousDigestSignature of "+next.id)
	}
	if len(why) == 0 {
		return
	}
	if p.sigState == -1 {
		// The re-signed or altered digest is already reported.
		p.status.Problems = append(p.status.Problems, "does not match what "+next.id+" records")
		return
	}
	v.raise(KindChainBroken, schema.SeverityCritical, p.id, at, "CloudTrail digest chain broken at "+p.id,
		"digest "+p.id+" was altered or replaced: "+strings.Join(why, "; "), map[string]string{"next": next.id})
	p.status.Problems = append(p.status.Problems, "chain broken: "+strings.Join(why, "; "))
}

// Tick checks the deadlines at now (live: every CheckInterval).
func (v *Verifier) Tick(ctx context.Context, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.tick(ctx, now)
}

// Finish judges a stored trail completely: every log file and digest that
// exists has been given, so nothing is waited for. now is the newest time
// in the evidence.
func (v *Verifier) Finish(ctx context.Context, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.final = true
	for _, d := range v.digests {
		if d.d.Starting() && !d.backfill && !d.explained {
			v.unexplained(d, now)
		}
		if d.sig == "" {
			d.status.Problems = append(d.status.Problems, "no signature: no metadata, no .sig file and no later digest")
		}
	}
	v.tick(ctx, now)
}

func (v *Verifier) tick(ctx context.Context, now time.Time) {
	grace := v.cfg.ListedGrace.D()
	if v.final {
		grace = 0
	}
	for _, d := range v.digests {
		if d.sig != "" && d.sigState == 0 {
			v.verifySig(ctx, d, now)
		}
		if d.d.Starting() && !d.backfill && !d.explained && d.start == nil && !now.Before(d.at.Add(grace)) {
			v.unexplained(d, now)
		}
	}
	// Digests named as previous that never came.
	for _, list := range v.waiting {
		for _, d := range list {
			if !d.linkPending || now.Before(d.at.Add(grace)) {
				continue
			}
			d.linkPending = false
			prev := *d.d.PreviousS3Object
			v.raise(KindChainBroken, schema.SeverityCritical, ObjectID(prev), now, "CloudTrail digest missing: "+ObjectID(prev),
				"digest "+d.id+" names "+*d.d.PreviousS3Bucket+"/"+prev+" as its previous digest and it was never read (deleted or withheld)",
				map[string]string{"next": d.id})
			d.status.Problems = append(d.status.Problems, "previous digest missing: "+ObjectID(prev))
			if ch := v.chains[d.chain]; ch != nil {
				lo := time.Time{}
				for _, o := range v.digests {
					if o.chain == d.chain && !o.backfill && !o.d.end.After(d.d.start) && o.d.end.After(lo) {
						lo = o.d.end
					}
				}
				ch.breaks = append(ch.breaks, [2]time.Time{lo, d.d.start})
			}
		}
	}
	// Listed log files never read.
	for _, l := range v.listed {
		if l.missing != nil || now.Before(l.at.Add(grace)) {
			continue
		}
		l.missing = v.raise(KindLogMissing, schema.SeverityCritical, l.id, now, "CloudTrail log file missing: "+l.id,
			"digest "+l.digest+" lists it and it was never read (deleted, or never delivered to this monitor)",
			map[string]string{"digest": l.digest, "hash_digest": l.sha})
		v.problem(l.digest, "log file missing: "+l.id)
	}
	// Gaps: no digest for too long while log files keep coming.
	for _, ch := range v.chains {
		// Logging turned back on (StartLogging, trail update) starts a
		// new chain: the gap is counted from then.
		since := ch.lastEnd
		if r := v.restarts[accountOf(ch.scope)]; r.After(since) {
			since = r
		}
		if ch.gap != nil || ch.lastEnd.IsZero() || now.Sub(since) <= v.cfg.GapAfter.D()+v.cfg.DeliverySlack.D() {
			continue
		}
		n := 0
		for _, r := range v.logs {
			if !r.checked && scope(r.id) == ch.scope && r.at.After(since) {
				n++
			}
		}
		if n == 0 {
			continue
		}
		ch.gapLogs = n
		ch.gap = v.raise(KindGap, schema.SeverityHigh, ch.scope, now, "CloudTrail digests stopped for "+ch.scope,
			fmt.Sprintf("no digest since %s (more than %s) while %d log files were read", ch.lastEnd.Format(time.RFC3339), v.cfg.GapAfter.D(), n),
			map[string]string{"last_digest_end": ch.lastEnd.Format(time.RFC3339)})
	}
	if !v.final {
		v.prune(now)
	}
	// Log files no digest lists.
	for _, r := range v.logs {
		if r.checked || r.unlisted != nil || r.covered {
			continue
		}
		t := r.at
		limit := now
		if v.final {
			limit = v.lastEnd(scope(r.id))
		}
		if limit.Before(t.Add(v.cfg.UnlistedAfter.D())) {
			continue
		}
		// Read after the newest digest of its scope: part of a possible
		// gap, judged by the gap check, not as one unlisted file.
		if !v.final && t.After(v.lastEnd(scope(r.id))) {
			continue
		}
		if covered, later := v.coveredByChain(r, t); covered || later {
			r.covered = covered
			continue
		}
		r.unlisted = v.raise(KindUnlisted, schema.SeverityMedium, r.id, now, "CloudTrail log file in no digest: "+r.id,
			fmt.Sprintf("read at %s and no digest lists it after %s (delivery lag, or a file CloudTrail did not write)", t.Format(time.RFC3339), v.cfg.UnlistedAfter.D()),
			map[string]string{"hash_read": r.sha})
	}
}

// coveredByChain reports whether an unlisted log file is already part of
// an open gap or of a missing digest's window.
// The second result asks to check it again later.
func (v *Verifier) coveredByChain(r *logRec, t time.Time) (covered, later bool) {
	sc := scope(r.id)
	nt, ok := NameTime(r.id)
	if !ok {
		nt = t
	}
	for _, ch := range v.chains {
		if ch.scope != sc {
			continue
		}
		if ch.gap != nil && t.After(ch.lastEnd) {
			return true, false
		}
		for _, b := range ch.breaks {
			if nt.After(b[0]) && !nt.After(b[1]) {
				return true, false
			}
		}
	}
	// A digest whose previous one has not come yet may still cover it:
	// wait (not marked covered).
	for _, list := range v.waiting {
		for _, d := range list {
			if d.linkPending && scope(d.id) == sc && !nt.After(d.d.start) {
				return false, true
			}
		}
	}
	return false, false
}

// lastEnd is the newest digest end of a scope.
func (v *Verifier) lastEnd(sc string) time.Time {
	var t time.Time
	for _, ch := range v.chains {
		if ch.scope == sc && ch.lastEnd.After(t) {
			t = ch.lastEnd
		}
	}
	return t
}

// retention is how long a digest is kept for the chain checks of the next
// ones (live).
const retention = 72 * time.Hour

// prune forgets digests that no later digest will name any more.
func (v *Verifier) prune(now time.Time) {
	for id, d := range v.digests {
		if now.Sub(d.d.end) > retention && !d.linkPending && (d.start == nil || d.explained || !d.d.Starting()) {
			delete(v.digests, id)
		}
	}
	for id, list := range v.waiting {
		keep := list[:0]
		for _, d := range list {
			if now.Sub(d.d.end) <= retention {
				keep = append(keep, d)
			}
		}
		if len(keep) == 0 {
			delete(v.waiting, id)
		} else {
			v.waiting[id] = keep
		}
	}
}
