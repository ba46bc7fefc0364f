package trail

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"auditwatch/ingest"
	"auditwatch/ingest/source"
)

// Store is a stored trail: CloudTrail log and digest files.
type Store interface {
	// List returns the names of every object.
	List(ctx context.Context) ([]string, error)
	// Open returns an object's raw content and, for a digest, its hex
	// signature ("" when the store has none for it).
	Open(ctx context.Context, name string) (io.ReadCloser, string, error)
	// Display is how an object is named in reports.
	Display(name string) string
}

// DirStore is a trail copied to a directory (e.g. with `aws s3 sync`); a
// digest's signature is in a sibling DIGEST.sig file holding the hex
// signature, when present.
type DirStore struct{ Root string }

// List walks the directory.
func (d DirStore) List(_ context.Context) ([]string, error) {
	var out []string
	err := filepath.WalkDir(d.Root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("walk %s: %w", p, err)
		}
		if e.Type().IsRegular() {
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// Open opens a file and reads its sibling signature.
func (d DirStore) Open(_ context.Context, name string) (io.ReadCloser, string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, "", err
	}
	var sig string
	if IsDigestName(name) {
		if b, err := os.ReadFile(name + ".sig"); err == nil {
			sig = strings.TrimSpace(string(b))
		}
	}
	return f, sig, nil
}

// Display is the path.
func (d DirStore) Display(name string) string { return name }

// S3API is the part of the S3 client S3Store uses.
type S3API interface {
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// S3Store is a trail in an S3 bucket under a prefix; a digest's signature
// is its object's `signature` metadata.
type S3Store struct {
	API            S3API
	Bucket, Prefix string
}

// List lists every key under the prefix.
func (s S3Store) List(ctx context.Context) ([]string, error) {
	var out []string
	in := &s3.ListObjectsV2Input{Bucket: aws.String(s.Bucket)}
	if s.Prefix != "" {
		in.Prefix = aws.String(s.Prefix)
	}
	for {
		page, err := s.API.ListObjectsV2(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list s3://%s/%s: %w", s.Bucket, s.Prefix, err)
		}
		for _, o := range page.Contents {
			out = append(out, aws.ToString(o.Key))
		}
		if !aws.ToBool(page.IsTruncated) || page.NextContinuationToken == nil {
			return out, nil
		}
		in.ContinuationToken = page.NextContinuationToken
	}
}

// Open gets an object.
func (s S3Store) Open(ctx context.Context, key string) (io.ReadCloser, string, error) {
	out, err := s.API.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)})
	if err != nil {
		return nil, "", fmt.Errorf("get s3://%s/%s: %w", s.Bucket, key, err)
	}
	return out.Body, out.Metadata["signature"], nil
}

// Display is the s3:// URL.
func (s S3Store) Display(key string) string { return "s3://" + s.Bucket + "/" + key }

// maxObjectBytes caps one object's decompressed size in a scan.
const maxObjectBytes = 1 << 30

// isLogName reports whether a name is a CloudTrail log file.
func isLogName(name string) bool {
	id := ObjectID(name)
	return strings.Contains(id, "/CloudTrail/") && (strings.HasSuffix(id, ".json.gz") || strings.HasSuffix(id, ".json"))
}

// ScanStats counts what a scan read.
type ScanStats struct {
	LogFiles, Digests int
	// Newest is the newest time in the evidence.
	Newest time.Time
}

// Scan reads a stored trail into v and finishes it: log files delivered
// within [start-1h, end+1h] and digests ending within [start, end+1h]
// (zero times: no bound). Trail management calls in the log files explain
// starting digests.
func Scan(ctx context.Context, st Store, v *Verifier, start, end time.Time) (ScanStats, error) {
	var stats ScanStats
	names, err := st.List(ctx)
	if err != nil {
		return stats, err
	}
	in := func(t time.Time, lo, hi time.Time) bool {
		return (lo.IsZero() || !t.Before(lo)) && (hi.IsZero() || !t.After(hi))
	}
	var logs, digests []string
	for _, n := range names {
		t, ok := NameTime(n)
		switch {
		case IsDigestName(n):
			if !ok || in(t, start, addHour(end)) {
				digests = append(digests, n)
			}
		case isLogName(n):
			if !ok || in(t, subHour(start), addHour(end)) {
				logs = append(logs, n)
			}
		}
	}
	sort.Strings(logs)
	for _, n := range logs {
		at, _ := NameTime(n)
		if err := scanLog(ctx, st, v, n, at); err != nil {
			return stats, err
		}
		stats.LogFiles++
		if at.After(stats.Newest) {
			stats.Newest = at
		}
	}
	sort.Slice(digests, func(i, j int) bool {
		a, _ := NameTime(digests[i])
		b, _ := NameTime(digests[j])
		if !a.Equal(b) {
			return a.Before(b)
		}
		return digests[i] < digests[j]
	})
	for _, n := range digests {
		rc, sig, err := st.Open(ctx, n)
		if err != nil {
			return stats, err
		}
		content, rerr := source.ReadMaybeGzip(rc, maxObjectBytes)
		rc.Close()
		at, _ := NameTime(n)
		if rerr != nil {
			content = nil
		}
		v.Digest(ctx, st.Display(n), content, sig, at)
		stats.Digests++
		if at.After(stats.Newest) {
			stats.Newest = at
		}
	}
	v.Finish(ctx, stats.Newest)
	return stats, nil
}

func addHour(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Add(time.Hour)
}

func subHour(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Add(-time.Hour)
}

// scanLog hashes one log file and shows its events to the verifier.
func scanLog(ctx context.Context, st Store, v *Verifier, name string, at time.Time) error {
	rc, _, err := st.Open(ctx, name)
	if err != nil {
		return err
	}
	content, err := source.ReadMaybeGzip(rc, maxObjectBytes)
	rc.Close()
	if err != nil {
		// Unreadable: its hash cannot match what a digest lists.
		v.LogFile(st.Display(name), "unreadable: "+err.Error(), at)
		return nil
	}
	sum := sha256Hex(content)
	v.LogFile(st.Display(name), sum, at)
	opts := ingest.DefaultOptions()
	opts.Format = ingest.FormatCloudTrail
	r := ingest.NewReader(bytes.NewReader(content), name, opts)
	for {
		ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if source.IsRecordError(err) {
				continue
			}
			break
		}
		if explainActions[ev.Action] {
			v.Event(&ev, at)
		}
	}
	for _, ev := range r.Flush() {
		if explainActions[ev.Action] {
			e := ev
			v.Event(&e, at)
		}
	}
	return nil
}
