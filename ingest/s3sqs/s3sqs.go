// Package s3sqs owns the CloudTrail S3+SQS source: it long-polls an SQS
// queue for the bucket's object-created notifications (direct S3 events,
// S3 events wrapped by SNS, or CloudTrail's own SNS notices), reads each
// new log object (gzip) from S3 and publishes its records.
//
// A message is deleted only once every event of every object it names has
// been durably taken downstream (each batch's Done). While a message is
// being handled its visibility timeout is extended, so a slow object is
// not handed to another reader meanwhile. Digest files (CloudTrail-Digest/)
// are skipped, or, with an Integrity hook (SetIntegrity), handed to it with
// their `signature` metadata, and every log file's SHA-256 (uncompressed,
// as read) with them. A redelivered or duplicated notification is tolerated: an
// object already fully handled (same bucket, key and version tag) is
// skipped from a bounded memory of recent objects, and anything read twice
// after a crash carries the same deterministic event ids.
package s3sqs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/ingest"
	"auditwatch/ingest/source"
	"auditwatch/schema"
)

// ErrNotification marks an SQS message body that is not an object
// notification this source understands.
var ErrNotification = errors.New("not an S3 object notification")

// maxRemembered bounds the memory of fully handled objects.
const maxRemembered = 100_000

// SQSAPI is the part of the SQS client the source uses.
type SQSAPI interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
}

// S3API is the part of the S3 client the source uses.
type S3API interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// Source reads CloudTrail objects announced on an SQS queue.
type Source struct {
	cfg   Config
	name  string
	parse source.Parser
	log   *slog.Logger
	m     *source.Metrics
	rej   *source.Rejector
	sqs   SQSAPI
	s3    S3API

	messages   *prometheus.CounterVec // by outcome
	objects    *prometheus.CounterVec // by outcome
	extensions prometheus.Counter
	evictions  prometheus.Counter

	integrity source.Integrity

	// after is the clock of the visibility extensions (tests drive it).
	after func(time.Duration) <-chan time.Time

	mu      sync.Mutex
	done    map[string]struct{}
	doneFIF []string
	wg      sync.WaitGroup
}

// New builds the source and its AWS clients from cfg.
func New(cfg Config, name string, parse source.Parser, logger *slog.Logger, m *source.Metrics, reg prometheus.Registerer) (*Source, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("s3sqs %s: %w", name, err)
	}
	awsCfg, err := cfg.AWS.Load(context.Background())
	if err != nil {
		return nil, fmt.Errorf("s3sqs %s: %w", name, err)
	}
	sq := sqs.NewFromConfig(awsCfg)
	s3c := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.UsePathStyle = cfg.PathStyle
		if cfg.S3Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.S3Endpoint)
		}
	})
	return NewWithClients(cfg, name, parse, sq, s3c, logger, m, reg)
}

// NewWithClients builds the source on given clients.
func NewWithClients(cfg Config, name string, parse source.Parser, sq SQSAPI, s3c S3API, logger *slog.Logger, m *source.Metrics, reg prometheus.Registerer) (*Source, error) {
	b, err := source.Prepare("s3sqs", name, &cfg, logger, m)
	if err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, name: name, parse: parse, log: b.Log, m: b.M, rej: b.Rej, sqs: sq, s3: s3c,
		done: map[string]struct{}{}, after: time.After,
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_ingest_s3sqs_messages_total",
			Help: "SQS messages by outcome (deleted, retried, malformed)."}, []string{"source", "outcome"}),
		objects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_ingest_s3sqs_objects_total",
			Help: "S3 objects by outcome (read, digest, duplicate, missing, failed)."}, []string{"source", "outcome"}),
		extensions: prometheus.NewCounter(prometheus.CounterOpts{Name: "auditwatch_ingest_s3sqs_visibility_extensions_total",
			Help: "Visibility timeout extensions of messages still being handled.", ConstLabels: prometheus.Labels{"source": name}}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{Name: "auditwatch_ingest_s3sqs_remembered_evictions_total",
			Help: "Handled objects forgotten from the bounded duplicate memory.", ConstLabels: prometheus.Labels{"source": name}}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{s.messages, s.objects, s.extensions, s.evictions} {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					return nil, fmt.Errorf("s3sqs %s metrics: %w", name, err)
				}
				switch c {
				case s.messages:
					s.messages = are.ExistingCollector.(*prometheus.CounterVec)
				case s.objects:
					s.objects = are.ExistingCollector.(*prometheus.CounterVec)
				}
			}
		}
	}
	return s, nil
}

// Name is the source name.
func (s *Source) Name() string { return s.name }

// SetIntegrity makes the source read digest files and hash log files for
// CloudTrail integrity validation (call before Run).
func (s *Source) SetIntegrity(i source.Integrity) { s.integrity = i }

// maxDigestBytes caps a digest file's decompressed size.
const maxDigestBytes = 64 << 20

// readDigest hands one digest object and its signature metadata to the
// integrity hook.
func (s *Source) readDigest(ctx context.Context, o Object) error {
	out, err := s.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(o.Bucket), Key: aws.String(o.Key)})
	if err != nil {
		var nsk *s3types.NoSuchKey
		if errors.As(err, &nsk) {
			s.objects.WithLabelValues(s.name, "missing").Inc()
			s.log.Warn("digest no longer exists", "bucket", o.Bucket, "key", o.Key)
			return nil
		}
		return fmt.Errorf("get s3://%s/%s: %w", o.Bucket, o.Key, err)
	}
	defer out.Body.Close()
	content, err := source.ReadMaybeGzip(out.Body, maxDigestBytes)
	if err != nil {
		s.objects.WithLabelValues(s.name, "failed").Inc()
		s.m.Rejected.WithLabelValues(s.name).Inc()
		s.log.Warn("unreadable digest object", "bucket", o.Bucket, "key", o.Key, "err", err)
		// The verifier judges an unreadable digest.
	}
	s.integrity.Digest(ctx, "s3://"+o.Bucket+"/"+o.Key, content, out.Metadata["signature"])
	return nil
}

// Object is one S3 object named by a notification.
type Object struct {
	Bucket, Key string
	// Tag tells versions of one key apart (ETag, version id or sequencer);
	// may be empty.
	Tag string
}

func (o Object) id() string { return o.Bucket + "/" + o.Key + "@" + o.Tag }

// IsDigest reports whether key is a CloudTrail digest file.
func IsDigest(key string) bool {
	return strings.Contains(key, "/CloudTrail-Digest/") || strings.HasPrefix(key, "CloudTrail-Digest/")
}

// ParseNotification returns the objects an SQS message body announces:
// an S3 event notification ({"Records":[{"s3":...}]}), the same wrapped in
// an SNS envelope, or CloudTrail's SNS notice ({"s3Bucket","s3ObjectKey"}).
// An s3:TestEvent announces nothing.
func ParseNotification(body string) ([]Object, error) {
	var env struct {
		Type    string `json:"Type"`
		Message string `json:"Message"`
	}
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotification, err)
	}
	if env.Type == "Notification" && env.Message != "" {
		body = env.Message
	}
	var n struct {
		Event   string `json:"Event"`
		Records []struct {
			EventSource string `json:"eventSource"`
			EventName   string `json:"eventName"`
			S3          struct {
				Bucket struct {
					Name string `json:"name"`
				} `json:"bucket"`
				Object struct {
					Key       string `json:"key"`
					ETag      string `json:"eTag"`
					VersionID string `json:"versionId"`
					Sequencer string `json:"sequencer"`
				} `json:"object"`
			} `json:"s3"`
		} `json:"Records"`
		S3Bucket    string   `json:"s3Bucket"`
		S3ObjectKey []string `json:"s3ObjectKey"`
	}
	if err := json.Unmarshal([]byte(body), &n); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotification, err)
	}
	switch {
	case n.Event == "s3:TestEvent":
		return nil, nil
	case n.S3Bucket != "":
		out := make([]Object, 0, len(n.S3ObjectKey))
		for _, k := range n.S3ObjectKey {
			out = append(out, Object{Bucket: n.S3Bucket, Key: k})
		}
		return out, nil
	case len(n.Records) > 0:
		var out []Object
		for i, r := range n.Records {
			if r.EventSource != "aws:s3" || !strings.HasPrefix(r.EventName, "ObjectCreated:") {
				continue
			}
			// Keys in S3 event notifications are URL-encoded (spaces as '+').
			key, err := url.QueryUnescape(r.S3.Object.Key)
			if err != nil {
				return nil, fmt.Errorf("%w: Records[%d].s3.object.key %q: %v", ErrNotification, i, r.S3.Object.Key, err)
			}
			if r.S3.Bucket.Name == "" || key == "" {
				return nil, fmt.Errorf("%w: Records[%d]: bucket or key missing", ErrNotification, i)
			}
			tag := r.S3.Object.VersionID
			if tag == "" {
				tag = r.S3.Object.ETag
			}
			if tag == "" {
				tag = r.S3.Object.Sequencer
			}
			out = append(out, Object{Bucket: r.S3.Bucket.Name, Key: key, Tag: tag})
		}
		return out, nil
	}
	return nil, ErrNotification
}

// Run receives and handles messages until ctx ends.
func (s *Source) Run(ctx context.Context, pub source.Publisher) error {
	defer s.rej.Close()
	defer s.wg.Wait()
	// Up to Parallel messages are handled at once: a slow or hostile
	// object (a million bad records, a bomb up to its cap) holds only its
	// own slot, never the good objects of the other messages. Objects are
	// parsed side by side; their batches are published one at a time.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slots := make(chan struct{}, max(1, s.cfg.Parallel))
	var handlers sync.WaitGroup
	var failOnce sync.Once
	var failed error
	fail := func(err error) {
		failOnce.Do(func() { failed = err; cancel() })
	}
	pub = &serialPublisher{next: pub}
	for ctx.Err() == nil {
		// receive only when a slot is free, so no message waits
		// received but unread longer than it must
		select {
		case slots <- struct{}{}:
			<-slots
		case <-ctx.Done():
			continue
		}
		out, err := s.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(s.cfg.QueueURL),
			MaxNumberOfMessages:         int32(s.cfg.MaxMessages),
			WaitTimeSeconds:             int32(s.cfg.WaitTime.D() / time.Second),
			VisibilityTimeout:           int32(s.cfg.VisibilityTimeout.D() / time.Second),
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameApproximateReceiveCount},
		})
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			s.m.Errors.WithLabelValues(s.name).Inc()
			s.log.Error("receive messages", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		// Every received message is kept invisible from now on, not only
		// once its turn comes: a slow (or hostile) object ahead of it must
		// not let it be redelivered and read twice.
		fs := make([]*inflight, len(out.Messages))
		for i, msg := range out.Messages {
			fs[i] = s.track(ctx, msg)
		}
		for i, msg := range out.Messages {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				// not handled: stop its visibility extension; it is
				// redelivered
				fs[i].finish(ctx.Err())
				continue
			}
			handlers.Add(1)
			go func() {
				defer handlers.Done()
				defer func() { <-slots }()
				if err := s.handle(ctx, pub, msg, fs[i]); err != nil {
					fail(err)
				}
			}()
		}
	}
	// a handler's error (it cancelled ctx) is the result; a stop from the
	// caller is not an error
	handlers.Wait()
	return failed
}

// serialPublisher publishes one batch at a time for the objects read side
// by side.
type serialPublisher struct {
	mu   sync.Mutex
	next source.Publisher
}

func (p *serialPublisher) Publish(ctx context.Context, b source.Batch) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.next.Publish(ctx, b)
}

// inflight tracks one message until its batches are all acknowledged.
type inflight struct {
	s       *Source
	receipt string
	objs    []Object
	mu      sync.Mutex
	pending int
	failed  error
	stop    chan struct{}
}

func (f *inflight) add() {
	f.mu.Lock()
	f.pending++
	f.mu.Unlock()
}

// finish records one acknowledgement (or the end of handling); the last
// one deletes the message, or leaves it for redelivery after a failure.
func (f *inflight) finish(err error) {
	f.mu.Lock()
	if err != nil && f.failed == nil {
		f.failed = err
	}
	f.pending--
	last := f.pending == 0
	failed := f.failed
	f.mu.Unlock()
	if !last {
		return
	}
	close(f.stop)
	if failed != nil {
		f.s.messages.WithLabelValues(f.s.name, "retried").Inc()
		f.s.log.Warn("message left for redelivery", "err", failed)
		return
	}
	f.s.wg.Add(1)
	go func() {
		defer f.s.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := f.s.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(f.s.cfg.QueueURL), ReceiptHandle: aws.String(f.receipt)}); err != nil {
			f.s.m.Errors.WithLabelValues(f.s.name).Inc()
			f.s.log.Warn("delete message (it will be redelivered)", "err", err)
			return
		}
		f.s.messages.WithLabelValues(f.s.name, "deleted").Inc()
		for _, o := range f.objs {
			f.s.remember(o)
		}
	}()
}

// SetClock replaces the wall clock of the visibility extensions (tests;
// call before Run).
func (s *Source) SetClock(after func(time.Duration) <-chan time.Time) { s.after = after }

// extend keeps the message invisible while it is being handled: every
// half visibility timeout it extends the timeout.
func (f *inflight) extend(ctx context.Context) {
	defer f.s.wg.Done()
	every := f.s.cfg.VisibilityTimeout.D() / 2
	for {
		select {
		case <-f.stop:
			return
		case <-ctx.Done():
			return
		case <-f.s.after(every):
		}
		_, err := f.s.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
			QueueUrl: aws.String(f.s.cfg.QueueURL), ReceiptHandle: aws.String(f.receipt),
			VisibilityTimeout: int32(f.s.cfg.VisibilityTimeout.D() / time.Second)})
		if err != nil {
			if ctx.Err() == nil {
				f.s.m.Errors.WithLabelValues(f.s.name).Inc()
				f.s.log.Warn("extend message visibility", "err", err)
			}
			continue
		}
		f.s.extensions.Inc()
	}
}

func (s *Source) seen(o Object) bool {
	if o.Tag == "" {
		o.Tag = "-"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.done[o.id()]
	return ok
}

func (s *Source) remember(o Object) {
	if o.Tag == "" {
		o.Tag = "-"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := o.id()
	if _, ok := s.done[id]; ok {
		return
	}
	s.done[id] = struct{}{}
	s.doneFIF = append(s.doneFIF, id)
	if len(s.doneFIF) > maxRemembered {
		delete(s.done, s.doneFIF[0])
		s.doneFIF = s.doneFIF[1:]
		s.evictions.Inc()
	}
}

// track starts keeping msg invisible until its handling ends.
func (s *Source) track(ctx context.Context, msg sqstypes.Message) *inflight {
	f := &inflight{s: s, receipt: aws.ToString(msg.ReceiptHandle), pending: 1, stop: make(chan struct{})}
	s.wg.Add(1)
	go f.extend(ctx)
	return f
}

// handle reads every object of msg and publishes its events; the message
// is deleted once all of them are acknowledged.
func (s *Source) handle(ctx context.Context, pub source.Publisher, msg sqstypes.Message, f *inflight) error {
	objs, err := ParseNotification(aws.ToString(msg.Body))
	if err != nil {
		// Not a notification: nothing in it can ever be read. Drop it.
		s.messages.WithLabelValues(s.name, "malformed").Inc()
		s.m.Rejected.WithLabelValues(s.name).Inc()
		s.log.Warn("malformed message deleted", "message_id", aws.ToString(msg.MessageId), "err", err)
		f.finish(nil)
		return nil
	}
	for _, o := range objs {
		switch {
		case IsDigest(o.Key):
			s.objects.WithLabelValues(s.name, "digest").Inc()
			if s.integrity != nil {
				if err := s.readDigest(ctx, o); err != nil {
					if ctx.Err() != nil {
						f.finish(ctx.Err())
						return nil
					}
					s.m.Errors.WithLabelValues(s.name).Inc()
					s.log.Error("read digest", "bucket", o.Bucket, "key", o.Key, "err", err)
					f.finish(err)
					return nil
				}
			}
			continue
		case s.seen(o):
			s.objects.WithLabelValues(s.name, "duplicate").Inc()
			continue
		}
		f.objs = append(f.objs, o)
		if err := s.readObject(ctx, pub, o, f); err != nil {
			if ctx.Err() != nil {
				f.finish(ctx.Err())
				return nil
			}
			s.objects.WithLabelValues(s.name, "failed").Inc()
			s.m.Errors.WithLabelValues(s.name).Inc()
			s.log.Error("read object", "bucket", o.Bucket, "key", o.Key, "err", err)
			f.finish(err)
			return nil
		}
	}
	f.finish(nil)
	return nil
}

// readObject streams one object through the parser in batches.
func (s *Source) readObject(ctx context.Context, pub source.Publisher, o Object, f *inflight) error {
	out, err := s.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(o.Bucket), Key: aws.String(o.Key)})
	if err != nil {
		var nsk *s3types.NoSuchKey
		if errors.As(err, &nsk) {
			// Deleted since: nothing left to read.
			s.objects.WithLabelValues(s.name, "missing").Inc()
			s.log.Warn("object no longer exists", "bucket", o.Bucket, "key", o.Key)
			return nil
		}
		return fmt.Errorf("get s3://%s/%s: %w", o.Bucket, o.Key, err)
	}
	defer out.Body.Close()
	defer s.rej.Flush()
	// The one reader for compressed input (size and ratio caps, no nested
	// gzip); the parser's limits bound each record.
	r, _ := ingest.Decompress(out.Body, ingest.DefaultOptions())
	name := "s3://" + o.Bucket + "/" + o.Key
	var hr *source.HashingReader
	if s.integrity != nil {
		hr = source.NewHashingReader(r)
		r = hr
	}
	rr := s.parse(r, name)
	batch := make([]schema.Event, 0, s.cfg.BatchSize)
	emit := func() error {
		if len(batch) == 0 {
			return nil
		}
		s.m.Events.WithLabelValues(s.name).Add(float64(len(batch)))
		f.add()
		if err := pub.Publish(ctx, source.Batch{Source: s.name, Events: batch, Done: f.finish}); err != nil {
			return fmt.Errorf("publish %s: %w", name, err)
		}
		batch = make([]schema.Event, 0, s.cfg.BatchSize)
		return nil
	}
	for {
		ev, err := rr.Next()
		switch {
		case err == nil:
			s.m.Records.WithLabelValues(s.name).Inc()
			batch = append(batch, ev)
			if len(batch) >= s.cfg.BatchSize {
				if err := emit(); err != nil {
					return err
				}
			}
			continue
		case errors.Is(err, io.EOF):
		case errors.Is(err, ingest.ErrRead) && !ingest.IsBadInput(err):
			// The download broke: the message is left for redelivery.
			return fmt.Errorf("read %s: %w", name, err)
		case errors.Is(err, ingest.ErrRead):
			// The object's content (over a gzip cap, nested, corrupt):
			// reading it again gives the same, so it is rejected, and its
			// events before the bad part are kept.
			s.objects.WithLabelValues(s.name, "rejected").Inc()
			s.rej.Input(name, err)
			continue
		case source.IsRecordError(err):
			s.m.Records.WithLabelValues(s.name).Inc()
			s.rej.Record(err)
			continue
		default:
			return fmt.Errorf("read %s: %w", name, err)
		}
		batch = append(batch, rr.Flush()...)
		if err := emit(); err != nil {
			return err
		}
		if hr != nil {
			sum, err := hr.Finish()
			if err != nil {
				return fmt.Errorf("read %s: %w", name, err)
			}
			s.integrity.LogFile(name, sum)
		}
		s.objects.WithLabelValues(s.name, "read").Inc()
		return nil
	}
}
