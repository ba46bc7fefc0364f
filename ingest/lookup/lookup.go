// Package lookup owns the CloudTrail LookupEvents poller: it reads the
// account's management events through the CloudTrail API for trails that
// are not delivered to S3, at most Rate requests per second per account
// and region (a token bucket shared by every poller of that account and
// region in the process), following NextToken, and resumes from its
// checkpoint: the time of the last event handled plus the ids of the
// events at exactly that time (CloudTrail times have one-second
// resolution, so several events share a time). It never asks for events
// older than the API's 90-day window.
//
// Each poll reads the window from the checkpoint to now minus Delay
// (CloudTrail delivers events late), at most Chunk wide while catching up.
// The API returns a window newest first; the poller sorts it oldest first
// and publishes it in batches, each batch carrying the position after it.
package lookup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	cttypes "github.com/aws/aws-sdk-go-v2/service/cloudtrail/types"
	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/ingest/source"
	"auditwatch/schema"
)

// Chunk bounds one poll's window while catching up, so one window's
// events fit in memory.
const Chunk = time.Hour

// windowMargin keeps the oldest asked time safely inside the 90 days.
const windowMargin = 10 * time.Minute

// API is the part of the CloudTrail client the poller uses.
type API interface {
	LookupEvents(ctx context.Context, in *cloudtrail.LookupEventsInput, opts ...func(*cloudtrail.Options)) (*cloudtrail.LookupEventsOutput, error)
}

// Position is the poller's checkpoint.
type Position struct {
	// Time: every event before it, and those at it listed in IDs, are
	// handled.
	Time time.Time `json:"time"`
	IDs  []string  `json:"ids,omitempty"`
}

// Clock is the time the poller and its rate bucket read and wait on;
// tests inject a virtual one so no assertion depends on the wall clock.
type Clock interface {
	Now() time.Time
	// Sleep waits d or until ctx ends (then it returns ctx.Err()).
	Sleep(ctx context.Context, d time.Duration) error
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (wallClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Poller polls LookupEvents.
type Poller struct {
	cfg   Config
	name  string
	parse source.Parser
	cp    source.Checkpoints
	api   API
	lim   *Bucket
	log   *slog.Logger
	m     *source.Metrics
	rej   *source.Rejector
	clock Clock

	requests prometheus.Counter
	clamped  prometheus.Counter
}

// New builds the poller and its CloudTrail client from cfg.
func New(cfg Config, name string, parse source.Parser, cp source.Checkpoints, logger *slog.Logger, m *source.Metrics, reg prometheus.Registerer) (*Poller, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("lookup %s: %w", name, err)
	}
	awsCfg, err := cfg.AWS.Load(context.Background())
	if err != nil {
		return nil, fmt.Errorf("lookup %s: %w", name, err)
	}
	return NewWithClient(cfg, name, parse, cp, cloudtrail.NewFromConfig(awsCfg), logger, m, reg)
}

// NewWithClient builds the poller on a given client.
func NewWithClient(cfg Config, name string, parse source.Parser, cp source.Checkpoints, api API, logger *slog.Logger, m *source.Metrics, reg prometheus.Registerer) (*Poller, error) {
	b, err := source.Prepare("lookup", name, &cfg, logger, m)
	if err != nil {
		return nil, err
	}
	p := &Poller{cfg: cfg, name: name, parse: parse, cp: cp, api: api, log: b.Log, m: b.M, clock: wallClock{},
		rej: b.Rej,
		lim: sharedBucket(cfg.Account+"/"+cfg.AWS.Region, cfg.Rate),
		requests: prometheus.NewCounter(prometheus.CounterOpts{Name: "auditwatch_ingest_lookup_requests_total",
			Help: "LookupEvents requests sent.", ConstLabels: prometheus.Labels{"source": name}}),
		clamped: prometheus.NewCounter(prometheus.CounterOpts{Name: "auditwatch_ingest_lookup_window_clamped_total",
			Help:        "Polls whose start was moved forward to stay inside the 90-day LookupEvents window (events older were lost).",
			ConstLabels: prometheus.Labels{"source": name}}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{p.requests, p.clamped} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("lookup %s metrics: %w", name, err)
			}
		}
	}
	return p, nil
}

// Name is the source name.
func (p *Poller) Name() string { return p.name }

// Run polls until ctx ends.
func (p *Poller) Run(ctx context.Context, pub source.Publisher) error {
	var pos Position
	if p.cp != nil {
		b, err := p.cp.Load(p.name)
		if err != nil {
			return err
		}
		if err := source.DecodePosition(b, &pos); err != nil {
			return fmt.Errorf("lookup %s: %w", p.name, err)
		}
	}
	for ctx.Err() == nil {
		caughtUp, err := p.poll(ctx, pub, &pos)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			p.m.Errors.WithLabelValues(p.name).Inc()
			p.log.Error("lookup events", "err", err)
			caughtUp = true
		}
		if caughtUp {
			_ = p.clock.Sleep(ctx, p.cfg.PollInterval.D())
		}
	}
	return nil
}

type rawEvent struct {
	t   time.Time
	id  string
	raw string
}

// window returns the next window to read from pos at now.
func (p *Poller) window(pos *Position, now time.Time) (start, end time.Time, caughtUp bool) {
	end = now.Add((-p.cfg.Delay).D()).Truncate(time.Second)
	start = pos.Time
	if start.IsZero() {
		start = now.Add((-p.cfg.Lookback).D()).Truncate(time.Second)
	}
	if floor := now.Add(-Window + windowMargin).Truncate(time.Second); start.Before(floor) {
		p.clamped.Inc()
		p.log.Warn("checkpoint older than the LookupEvents window; events before it can no longer be read", "checkpoint", start, "from", floor)
		start, pos.Time, pos.IDs = floor, floor, nil
	}
	caughtUp = true
	if end.Sub(start) > Chunk {
		end, caughtUp = start.Add(Chunk), false
	}
	return start, end, caughtUp
}

// poll reads one window and publishes it oldest first.
func (p *Poller) poll(ctx context.Context, pub source.Publisher, pos *Position) (bool, error) {
	start, end, caughtUp := p.window(pos, p.clock.Now())
	if !end.After(start) {
		return true, nil
	}
	var evs []rawEvent
	in := &cloudtrail.LookupEventsInput{StartTime: aws.Time(start), EndTime: aws.Time(end), MaxResults: aws.Int32(50)}
	if p.cfg.EventSource != "" {
		in.LookupAttributes = []cttypes.LookupAttribute{{AttributeKey: cttypes.LookupAttributeKeyEventSource, AttributeValue: aws.String(p.cfg.EventSource)}}
	}
	for {
		if err := p.lim.wait(ctx, p.clock); err != nil {
			return false, err
		}
		p.requests.Inc()
		out, err := p.api.LookupEvents(ctx, in)
		if err != nil {
			return false, fmt.Errorf("LookupEvents %s..%s: %w", start.Format(time.RFC3339), end.Format(time.RFC3339), err)
		}
		for _, e := range out.Events {
			if e.CloudTrailEvent == nil || e.EventTime == nil {
				p.m.Rejected.WithLabelValues(p.name).Inc()
				continue
			}
			evs = append(evs, rawEvent{t: e.EventTime.UTC(), id: aws.ToString(e.EventId), raw: *e.CloudTrailEvent})
		}
		if out.NextToken == nil || *out.NextToken == "" {
			break
		}
		in.NextToken = out.NextToken
	}
	sort.Slice(evs, func(i, j int) bool {
		if !evs[i].t.Equal(evs[j].t) {
			return evs[i].t.Before(evs[j].t)
		}
		return evs[i].id < evs[j].id
	})
	// Drop what the checkpoint covers (and repeats within the window).
	kept := evs[:0]
	seen := map[string]bool{}
	for _, e := range evs {
		if e.t.Before(pos.Time) || e.t.Equal(pos.Time) && slices.Contains(pos.IDs, e.id) || seen[e.id] {
			continue
		}
		seen[e.id] = true
		kept = append(kept, e)
	}
	// pos advances only past what was published.
	for i := 0; i < len(kept); i += p.cfg.BatchSize {
		batch := kept[i:min(i+p.cfg.BatchSize, len(kept))]
		next := clonePos(*pos)
		for _, e := range batch {
			if e.t.Equal(next.Time) {
				next.IDs = append(next.IDs, e.id)
			} else {
				next.Time, next.IDs = e.t, []string{e.id}
			}
		}
		if err := p.publish(ctx, pub, batch, next); err != nil {
			return false, err
		}
		*pos = next
	}
	// The whole window is read: the position moves to its end.
	next := clonePos(*pos)
	if !end.Equal(next.Time) {
		next.Time, next.IDs = end, nil
	}
	if err := pub.Publish(ctx, source.Batch{Source: p.name, Position: source.EncodeCursor(next)}); err != nil {
		return false, err
	}
	*pos = next
	return caughtUp, nil
}

func clonePos(p Position) Position {
	p.IDs = slices.Clone(p.IDs)
	return p
}

// publish parses a run of raw events and publishes it with pos.
func (p *Poller) publish(ctx context.Context, pub source.Publisher, batch []rawEvent, pos Position) error {
	var buf bytes.Buffer
	for _, e := range batch {
		buf.WriteString(e.raw)
		buf.WriteByte('\n')
	}
	rr := p.parse(&buf, "cloudtrail:LookupEvents/"+p.name)
	out := make([]schema.Event, 0, len(batch))
	for {
		ev, err := rr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		p.m.Records.WithLabelValues(p.name).Inc()
		if err != nil {
			p.rej.Record(err)
			if !source.IsRecordError(err) {
				break
			}
			continue
		}
		out = append(out, ev)
	}
	out = append(out, rr.Flush()...)
	p.m.Events.WithLabelValues(p.name).Add(float64(len(out)))
	return pub.Publish(ctx, source.Batch{Source: p.name, Events: out, Position: source.EncodeCursor(clonePos(pos))})
}

// Bucket spaces requests at least 1/rate apart, measured from the moment
// the previous caller was let through (not from when its slot was
// reserved), so a caller delayed by the scheduler cannot end up sending
// right before the next one: AWS allows LookupEvents 2 requests/s per
// account and region.
type Bucket struct {
	mu   sync.Mutex
	rate float64
	last time.Time
	// turn serializes waiters, so each computes its time from the
	// previous caller's actual release.
	turn chan struct{}
}

var (
	bucketsMu sync.Mutex
	buckets   = map[string]*Bucket{}
)

// sharedBucket returns the process-wide bucket of key (account/region);
// the lowest configured rate wins.
func sharedBucket(key string, rate float64) *Bucket {
	bucketsMu.Lock()
	defer bucketsMu.Unlock()
	b := buckets[key]
	if b == nil {
		b = &Bucket{rate: rate, turn: make(chan struct{}, 1)}
		buckets[key] = b
	}
	b.mu.Lock()
	if rate < b.rate {
		b.rate = rate
	}
	b.mu.Unlock()
	return b
}

// Wait blocks until a request may be sent.
func (b *Bucket) Wait(ctx context.Context) error { return b.wait(ctx, wallClock{}) }

func (b *Bucket) wait(ctx context.Context, clock Clock) error {
	select {
	case b.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-b.turn }()
	b.mu.Lock()
	at := b.last.Add(time.Duration(float64(time.Second) / b.rate))
	b.mu.Unlock()
	if d := at.Sub(clock.Now()); d > 0 {
		if err := clock.Sleep(ctx, d); err != nil {
			return err
		}
	}
	b.mu.Lock()
	b.last = clock.Now()
	b.mu.Unlock()
	return nil
}
