package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/valyala/fastjson"

	"auditwatch/ingest/cloudtrail"
	"auditwatch/ingest/intern"
	"auditwatch/ingest/jsonx"
	"auditwatch/ingest/vault"
	"auditwatch/schema"
)

type item struct {
	ev    schema.Event
	err   error
	after int64 // SafeOffset once this item has been returned
}

// Reader normalizes one input stream. It is not safe for concurrent use.
type Reader struct {
	name  string
	opts  Options
	sc    *jsonx.Scanner
	p     fastjson.Parser
	inner fastjson.Parser // LookupEvents' CloudTrailEvent strings
	arena fastjson.Arena
	pair  *vault.Pairer
	vp    vault.Parser
	cp    cloudtrail.Parser
	// strs shares repeated strings between events (bounded)
	strs *intern.Table

	queue []item
	qhead int
	safe  int64
	stats Stats
	done  bool
	// readErrShown: the read error was already reported with the record
	// it cut short
	readErrShown bool
	evbuf        []schema.Event
	// want is the copy of an event WantRaw is asked about: handing it
	// the parser's own event would move that event to the heap for every
	// record
	want schema.Event
	// ct is the event an in-place CloudTrail record is read into: the
	// reader's own, so that WantRaw is handed it without a copy
	ct schema.Event
	// framed turns the one-object-per-line fast path off, treeOnly its
	// in-place Vault and CloudTrail reading (tests compare the paths)
	framed, treeOnly bool
}

// NewReader returns a Reader over r; name identifies the input in errors.
// A gzip stream (by its magic bytes) is decompressed by Decompress,
// bounded by opts.MaxGzipBytes and opts.MaxGzipRatio.
func NewReader(r io.Reader, name string, opts Options) *Reader {
	opts = opts.withDefaults()
	src, _ := Decompress(r, opts)
	strs := intern.New(0, 0)
	return &Reader{
		name: name,
		opts: opts,
		sc:   jsonx.NewScanner(src, jsonx.Limits{MaxRecordBytes: opts.MaxRecordBytes, MaxDepth: opts.MaxDepth}),
		pair: vault.NewPairer(opts.MaxPending),
		vp:   vault.Parser{Strings: strs, Now: opts.Now, MaxDepth: opts.MaxDepth},
		cp:   cloudtrail.Parser{Strings: strs, MaxDepth: opts.MaxDepth},
		strs: strs,
	}
}

// Name is the input name given to NewReader.
func (r *Reader) Name() string { return r.name }

// Stats returns the counts so far.
func (r *Reader) Stats() Stats {
	s := r.stats
	s.Unpaired = r.pair.Unpaired
	s.Evicted = r.pair.Evicted
	s.InternResets = r.strs.Resets
	return s
}

// SafeOffset is the number of input bytes wholly handled: every record
// before it has had its events returned by Next. A Vault request entry
// waiting for its response holds it back. For a gzip input the offset
// counts decompressed bytes.
func (r *Reader) SafeOffset() int64 {
	s := r.safe
	if off, ok := r.pair.Oldest(); ok && off < s {
		s = off
	}
	return s
}

// Flush returns the Vault request entries still waiting for a response
// as request-only events (a live tail calls it when the input is idle).
func (r *Reader) Flush() []schema.Event {
	evs := r.pair.Flush(nil)
	r.stats.Events += int64(len(evs))
	if r.qhead >= len(r.queue) {
		r.safe = r.sc.Offset()
	}
	return evs
}

func (r *Reader) push(it item) { r.queue = append(r.queue, it) }

// Next returns the next event, io.EOF at the end of input, or a
// *RecordError for a bad record (call Next again to go on). Any other
// error means the input could not be read; Next then returns io.EOF.
func (r *Reader) Next() (schema.Event, error) {
	for {
		if r.qhead < len(r.queue) {
			it := r.queue[r.qhead]
			r.queue[r.qhead] = item{}
			r.qhead++
			if r.qhead == len(r.queue) {
				r.queue, r.qhead = r.queue[:0], 0
			}
			r.safe = it.after
			if it.err != nil {
				r.stats.Rejected++
				return schema.Event{}, it.err
			}
			r.stats.Events++
			return it.ev, nil
		}
		if r.done {
			return schema.Event{}, io.EOF
		}
		if line, ok := r.sc.PeekLineDeep(); ok && !r.framed {
			// one object per line: parse it where it lies and skip the
			// framing scan; anything refused here is framed again by
			// Next, which reports it exactly. An ordinary Vault entry or
			// CloudTrail record is read in place without building a tree.
			if r.opts.Format != FormatCloudTrail && !r.treeOnly {
				if en, err, ok := r.vp.ParseLine(line); ok {
					if r.keep(&en.Event, line) {
						en.Event.Raw = append([]byte(nil), line...)
					}
					rec := r.sc.TakeLine()
					r.stats.Records++
					if err != nil {
						r.recErr(rec, err)
					} else if ev, ok := r.pairVaultOne(rec, &en); ok {
						return ev, nil
					}
					if r.qhead >= len(r.queue) {
						r.safe = rec.End
					}
					continue
				}
			}
			// the in-place readers refuse records nested beyond the
			// limit themselves; the tree parser needs the line checked
			if r.opts.Format != FormatVault && !r.treeOnly {
				// an ordinary CloudTrail record, read in place too
				ev := &r.ct
				*ev = schema.Event{}
				if err, ok := r.cp.ParseLine(line, cloudtrail.Fallback{Now: r.opts.Now}, ev); ok {
					if err == nil && (r.keepOwn(ev, line) || cloudtrail.IssuesCredentials(ev)) {
						ev.Raw = append([]byte(nil), line...)
					}
					rec := r.sc.TakeLine()
					r.stats.Records++
					if err != nil {
						r.recErr(rec, err)
					} else if r.qhead >= len(r.queue) {
						// nothing queued before it: return it without
						// the round trip through the queue
						r.safe = rec.End
						r.stats.Events++
						return *ev, nil
					} else {
						r.push(item{ev: *ev, after: rec.End})
					}
					if r.qhead >= len(r.queue) {
						r.safe = rec.End
					}
					continue
				}
			}
			if !r.sc.DepthOK(line) {
				line = nil
			}
			if line != nil {
				if v, err := r.p.ParseBytes(line); err == nil {
					rec := r.sc.TakeLine()
					r.stats.Records++
					r.object(rec, v)
					if r.qhead >= len(r.queue) {
						r.safe = rec.End
					}
					continue
				}
			}
			// refused, or too deep: Next frames it and reports it
		}
		rec, err := r.sc.Next()
		if err != nil {
			r.done = true
			end := r.sc.Offset()
			for _, ev := range r.pair.Flush(nil) {
				r.push(item{ev: ev, after: end})
			}
			if err != io.EOF && !r.readErrShown {
				r.push(item{err: &RecordError{Input: r.name, Record: int(r.stats.Records) + 1, Offset: end, Err: fmt.Errorf("%w: %w", ErrRead, err)}, after: end})
			}
			if len(r.queue) > 0 {
				r.queue[len(r.queue)-1].after = end
			}
			r.safe = end
			continue
		}
		r.stats.Records++
		r.record(rec)
		if r.qhead >= len(r.queue) {
			r.safe = rec.End
		}
	}
}

func (r *Reader) recErr(rec jsonx.Record, err error) {
	raw := rec.Data[:min(len(rec.Data), MaxRawExcerpt)]
	r.push(item{err: &RecordError{Input: r.name, Line: rec.Line, Record: rec.Num, Offset: rec.Offset, Err: err, Raw: append([]byte(nil), raw...)}, after: rec.End})
}

// record normalizes one framed record into queued items.
func (r *Reader) record(rec jsonx.Record) {
	if rec.Err != nil {
		err := rec.Err
		if errors.Is(err, jsonx.ErrNotJSON) && isServerLog(rec.Data) {
			err = fmt.Errorf("%w: %q", ErrServerLog, rec.Data)
		}
		if errors.Is(err, jsonx.ErrTruncated) {
			if rerr := r.sc.Err(); rerr != nil {
				err = fmt.Errorf("%w: %w", ErrRead, rerr)
				r.readErrShown = true
			}
		}
		r.recErr(rec, err)
		return
	}
	v, err := r.p.ParseBytes(rec.Data)
	if err != nil {
		r.recErr(rec, fmt.Errorf("%w: %w", ErrInvalidJSON, err))
		return
	}
	if v.Type() != fastjson.TypeObject {
		r.recErr(rec, fmt.Errorf("%w: %s is not a JSON object", ErrInvalidJSON, v.Type()))
		return
	}
	r.object(rec, v)
}

// object normalizes one parsed record, a JSON object.
func (r *Reader) object(rec jsonx.Record, v *fastjson.Value) {
	fb := cloudtrail.Fallback{Now: r.opts.Now}
	switch rec.Kind {
	case jsonx.KindRecords:
		r.cloudTrail(rec, v, fb)
		return
	case jsonx.KindEvents:
		r.lookupEvent(rec, v)
		return
	}
	switch {
	case v.Get("Records") != nil && v.Get("Records").Type() == fastjson.TypeArray:
		for _, e := range v.GetArray("Records") {
			r.cloudTrail(rec, e, fb)
		}
	case v.Get("Events") != nil && v.Get("Events").Type() == fastjson.TypeArray:
		for _, e := range v.GetArray("Events") {
			r.lookupEvent(rec, e)
		}
	case cloudtrail.IsDigest(v):
		r.stats.Skipped++
	case v.Get("detail-type") != nil && v.Get("detail") != nil:
		r.eventBridge(rec, v)
	case cloudtrail.IsRecord(v):
		r.cloudTrail(rec, v, fb)
	case cloudtrail.IsLowercaseRecord(v):
		r.arena.Reset()
		r.cloudTrail(rec, cloudtrail.CamelCase(v, &r.arena), fb)
	case vault.IsEntry(v):
		r.vaultEntry(rec, v)
	default:
		r.recErr(rec, ErrUnrecognized)
	}
}

func (r *Reader) cloudTrail(rec jsonx.Record, v *fastjson.Value, fb cloudtrail.Fallback) {
	if r.opts.Format == FormatVault {
		r.recErr(rec, fmt.Errorf("%w: a CloudTrail record, but the format is %q", ErrWrongFormat, r.opts.Format))
		return
	}
	var ev schema.Event
	if err := r.cp.Parse(v, fb, &ev); err != nil {
		r.recErr(rec, err)
		return
	}
	if r.keep(&ev, nil) || cloudtrail.IssuesCredentials(&ev) {
		ev.Raw = v.MarshalTo(nil)
	}
	r.push(item{ev: ev, after: rec.End})
}

// lookupEvent handles one element of LookupEvents output: the record is
// the JSON string in CloudTrailEvent.
func (r *Reader) lookupEvent(rec jsonx.Record, v *fastjson.Value) {
	s := v.GetStringBytes("CloudTrailEvent")
	if s == nil {
		r.recErr(rec, fmt.Errorf("%w: LookupEvents entry without a CloudTrailEvent string", ErrUnrecognized))
		return
	}
	if len(s) > r.opts.MaxRecordBytes {
		r.recErr(rec, fmt.Errorf("%w: CloudTrailEvent of %d bytes", jsonx.ErrTooLarge, len(s)))
		return
	}
	if d := depth(s); d > r.opts.MaxDepth {
		r.recErr(rec, fmt.Errorf("%w: CloudTrailEvent (limit %d)", jsonx.ErrTooDeep, r.opts.MaxDepth))
		return
	}
	inner, err := r.inner.ParseBytes(s)
	if err != nil {
		r.recErr(rec, fmt.Errorf("%w: CloudTrailEvent: %w", ErrInvalidJSON, err))
		return
	}
	fb := cloudtrail.Fallback{Now: r.opts.Now}
	if t, ok := cloudtrail.ParseTime(string(v.GetStringBytes("EventTime"))); ok {
		fb.Time = t
	}
	r.cloudTrail(rec, inner, fb)
}

// eventBridge handles an EventBridge envelope carrying a CloudTrail record
// in "detail".
func (r *Reader) eventBridge(rec jsonx.Record, v *fastjson.Value) {
	detail := v.Get("detail")
	if detail.Type() != fastjson.TypeObject || !cloudtrail.IsRecord(detail) {
		r.recErr(rec, fmt.Errorf("%w: EventBridge event of detail-type %q carries no CloudTrail record", ErrUnrecognized, v.GetStringBytes("detail-type")))
		return
	}
	fb := cloudtrail.Fallback{Now: r.opts.Now, Account: string(v.GetStringBytes("account")), Region: string(v.GetStringBytes("region"))}
	if t, ok := cloudtrail.ParseTime(string(v.GetStringBytes("time"))); ok {
		fb.Time = t
	}
	r.cloudTrail(rec, detail, fb)
}

func (r *Reader) vaultEntry(rec jsonx.Record, v *fastjson.Value) {
	if r.opts.Format == FormatCloudTrail {
		r.recErr(rec, fmt.Errorf("%w: a Vault audit entry, but the format is %q", ErrWrongFormat, r.opts.Format))
		return
	}
	en, err := r.vp.Parse(v)
	if err != nil {
		r.recErr(rec, err)
		return
	}
	if r.keep(&en.Event, nil) {
		en.Event.Raw = v.MarshalTo(nil)
	}
	r.pairVault(rec, &en)
}

// keep reports whether ev keeps its original record (Options.KeepRaw,
// WantRaw).
func (r *Reader) keep(ev *schema.Event, raw []byte) bool {
	if !r.opts.KeepRaw {
		return false
	}
	if r.opts.WantRaw == nil {
		return true
	}
	r.want = *ev
	ok := r.opts.WantRaw(&r.want, raw)
	// the one field WantRaw may set: what it found, for the event's consumer
	ev.Mark = r.want.Mark
	r.want = schema.Event{}
	return ok
}

// keepOwn is keep for an event the reader owns (r.ct): WantRaw is handed
// it itself.
func (r *Reader) keepOwn(ev *schema.Event, raw []byte) bool {
	if !r.opts.KeepRaw {
		return false
	}
	if r.opts.WantRaw == nil {
		return true
	}
	return r.opts.WantRaw(ev, raw)
}

// pairVaultOne is pairVault for Next's fast path: when nothing is queued
// and the entry completes exactly one event, it returns that event
// (consumed, as Next would return it from the queue) instead of queueing
// it.
func (r *Reader) pairVaultOne(rec jsonx.Record, en *vault.Entry) (schema.Event, bool) {
	if r.qhead < len(r.queue) {
		r.pairVault(rec, en)
		return schema.Event{}, false
	}
	r.evbuf = r.pair.AddRef(en, rec.Offset, r.evbuf[:0])
	if len(r.evbuf) != 1 {
		r.queueEvents(rec)
		return schema.Event{}, false
	}
	ev := r.evbuf[0]
	r.evbuf[0] = schema.Event{}
	r.safe = rec.End
	r.stats.Events++
	return ev, true
}

// pairVault hands a parsed entry to the pairer and queues what it
// completes.
func (r *Reader) pairVault(rec jsonx.Record, en *vault.Entry) {
	r.evbuf = r.pair.AddRef(en, rec.Offset, r.evbuf[:0])
	r.queueEvents(rec)
}

// queueEvents queues the events pairVault got for rec from the pairer.
func (r *Reader) queueEvents(rec jsonx.Record) {
	for i, ev := range r.evbuf {
		after := rec.Offset
		if i == len(r.evbuf)-1 {
			after = rec.End
		}
		r.push(item{ev: ev, after: after})
	}
	clear(r.evbuf)
}

// depth is the bracket nesting depth of JSON text (strings skipped).
func depth(b []byte) int {
	d, m := 0, 0
	in, esc := false, false
	for _, c := range b {
		switch {
		case in:
			if esc {
				esc = false
			} else if c == '\\' {
				esc = true
			} else if c == '"' {
				in = false
			}
		case c == '"':
			in = true
		case c == '{' || c == '[':
			d++
			m = max(m, d)
		case c == '}' || c == ']':
			d--
		}
	}
	return m
}

// isServerLog recognizes a Vault/OpenBao server (operational) log line:
// "2019-12-18T20:26:12.000Z [INFO]  core: ...".
func isServerLog(b []byte) bool {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' {
		return false
	}
	i := bytes.IndexByte(b, ' ')
	if i < 0 || i+2 >= len(b) || b[i+1] != '[' {
		return false
	}
	for _, lvl := range [...]string{"[TRACE]", "[DEBUG]", "[INFO]", "[WARN]", "[ERROR]"} {
		if bytes.HasPrefix(b[i+1:], []byte(lvl)) {
			return true
		}
	}
	return false
}
