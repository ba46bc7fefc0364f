package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"auditwatch/internal/awscfg"
	"auditwatch/internal/escape"
	"auditwatch/schema"
	"auditwatch/trail"
)

func init() {
	register("trail", command{
		summary: "verify a stored CloudTrail trail's digests and log files (trail verify)",
		run:     runTrail,
	})
}

func trailMain(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprintln(stderr, "usage: auditwatch trail verify [flags] PATH|s3://bucket/prefix")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return 0
		}
		return 2
	}
	return runTrailVerify(ctx, args[1:], stdout, stderr)
}

func runTrailVerify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := newFlagSet("trail verify", stderr, "[flags] PATH|s3://bucket/prefix", commands["trail"].summary)
	var startS, endS, keysFile, region, endpoint, s3Endpoint string
	var pathStyle bool
	fl.StringVar(&startS, "start", "", "check digests ending at or after this time (RFC 3339); default: all")
	fl.StringVar(&endS, "end", "", "check digests ending up to an hour after this time (RFC 3339); default: all")
	fl.StringVar(&keysFile, "public-keys", "", "file of public keys (PEM, or the JSON `aws cloudtrail list-public-keys` prints) instead of calling ListPublicKeys")
	fl.StringVar(&region, "region", os.Getenv("AWS_REGION"), "AWS region of the trail (ListPublicKeys and S3)")
	fl.StringVar(&endpoint, "endpoint", "", "CloudTrail endpoint override")
	fl.StringVar(&s3Endpoint, "s3-endpoint", "", "S3 endpoint override")
	fl.BoolVar(&pathStyle, "path-style", false, "address S3 buckets in the path")
	fl.Usage = func() {
		fmt.Fprintln(stderr, "usage: auditwatch trail verify [flags] PATH|s3://bucket/prefix")
		fmt.Fprintln(stderr, "Checks every digest's signature and chain and every listed log file's SHA-256, as CloudTrail documents")
		fmt.Fprintln(stderr, "log file integrity validation. In a directory a digest's signature is read from DIGEST.json.gz.sig (hex)")
		fmt.Fprintln(stderr, "or taken from the next digest. One line per digest and per failure, then a summary; exit 1 on any failure.")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fl.NArg() != 1 {
		fl.Usage()
		return 2
	}
	var start, end time.Time
	for _, f := range []struct {
		name, v string
		t       *time.Time
	}{{"--start", startS, &start}, {"--end", endS, &end}} {
		if f.v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, f.v)
		if err != nil {
			fmt.Fprintf(stderr, "trail verify: %s %q: want RFC 3339 (2026-11-03T08:00:00Z)\n", f.name, escape.String(escape.Terminal, f.v))
			return 2
		}
		*f.t = t
	}
	target := fl.Arg(0)
	needAWS := keysFile == "" || strings.HasPrefix(target, "s3://")
	var acfg aws.Config
	if needAWS {
		ac := awscfg.Config{Region: region, Endpoint: endpoint}
		if err := ac.Validate(); err != nil {
			fmt.Fprintf(stderr, "trail verify: %v (set --region or AWS_REGION)\n", err)
			return 2
		}
		var err error
		if acfg, err = ac.Load(ctx); err != nil {
			fmt.Fprintf(stderr, "trail verify: %v\n", err)
			return 2
		}
	}
	var keys trail.KeySource
	if keysFile != "" {
		b, err := os.ReadFile(keysFile)
		if err != nil {
			fmt.Fprintf(stderr, "trail verify: public keys: %v\n", err)
			return 2
		}
		sk, err := trail.ParseKeysFile(b)
		if err != nil {
			fmt.Fprintf(stderr, "trail verify: %s: %v\n", escape.String(escape.Terminal, keysFile), err)
			return 2
		}
		keys = sk
	} else {
		keys = &trail.APIKeys{API: cloudtrail.NewFromConfig(acfg)}
	}
	var st trail.Store
	if rest, ok := strings.CutPrefix(target, "s3://"); ok {
		bucket, prefix, _ := strings.Cut(rest, "/")
		if bucket == "" {
			fmt.Fprintf(stderr, "trail verify: %q: no bucket\n", escape.String(escape.Terminal, target))
			return 2
		}
		cl := s3.NewFromConfig(acfg, func(o *s3.Options) {
			o.UsePathStyle = pathStyle
			if s3Endpoint != "" {
				o.BaseEndpoint = aws.String(s3Endpoint)
			}
		})
		st = trail.S3Store{API: cl, Bucket: bucket, Prefix: prefix}
	} else {
		if fi, err := os.Stat(target); err != nil || !fi.IsDir() {
			fmt.Fprintf(stderr, "trail verify: %q: not a directory\n", escape.String(escape.Terminal, target))
			return 2
		}
		st = trail.DirStore{Root: target}
	}
	v := trail.NewVerifier(trail.Config{}, keys, nil)
	v.Report = true
	stats, err := trail.Scan(ctx, st, v, start, end)
	if err != nil {
		fmt.Fprintf(stderr, "trail verify: %s\n", escape.String(escape.Terminal, err.Error()))
		return 2
	}
	return reportTrail(stdout, v, stats)
}

// reportTrail prints one line per digest and per failure, and a summary;
// it returns 1 when anything failed (a starting digest is not a failure).
func reportTrail(w io.Writer, v *trail.Verifier, stats trail.ScanStats) int {
	failures := 0
	valid, invalid := 0, 0
	for _, st := range v.Statuses() {
		kind := "digest"
		if st.Backfill {
			kind = "digest (backfill)"
		}
		if st.Starting {
			kind = "digest (starting)"
		}
		if st.Signature == "valid" {
			valid++
		} else {
			invalid++
		}
		fields := []string{kind, st.ID, st.End.UTC().Format(time.RFC3339), st.Signature, fmt.Sprintf("%d log files", st.LogFiles)}
		if len(st.Problems) > 0 {
			fields = append(fields, strings.Join(st.Problems, "; "))
		}
		fmt.Fprintln(w, columns(fields...))
	}
	latest := map[string]schema.Finding{}
	var order []string
	for _, f := range v.Take() {
		if _, ok := latest[f.DedupeKey]; !ok {
			order = append(order, f.DedupeKey)
		}
		latest[f.DedupeKey] = f
	}
	for _, k := range order {
		f := latest[k]
		kind := f.Attributes["kind"]
		label := "FAIL"
		if kind == trail.KindChainStart || f.Attributes["status"] == "resolved" {
			label = "NOTE"
		} else {
			failures++
		}
		fmt.Fprintln(w, columns(label, string(f.Severity), kind, f.Summary, f.Reason))
	}
	unverified := invalid
	fmt.Fprintf(w, "summary: %d digests (%d valid, %d not valid), %d log files read, %d failures\n",
		stats.Digests, valid, unverified, stats.LogFiles, failures)
	if failures > 0 || unverified > 0 {
		return 1
	}
	return 0
}

// columns joins fields with tabs, each escaped for the terminal (a field
// from a file can hold no tab, newline or escape sequence).
func columns(fields ...string) string {
	for i, f := range fields {
		fields[i] = escape.String(escape.Terminal, f)
	}
	return strings.Join(fields, "\t")
}
