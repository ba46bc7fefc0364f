package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"auditwatch/ingest"
	"auditwatch/internal/escape"
)

func init() {
	register("normalize", command{
		summary: "normalize CloudTrail / Vault audit logs to JSON lines",
		run:     runNormalize,
	})
}

func normalizeMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fl := newFlagSet("normalize", stderr, "[flags] PATH...", commands["normalize"].summary)
	opts := ingest.DefaultOptions()
	fl.StringVar(&opts.Format, "format", opts.Format, "input format: auto, cloudtrail or vault")
	fl.IntVar(&opts.MaxRecordBytes, "max-record-bytes", opts.MaxRecordBytes, "maximum size of one record")
	fl.IntVar(&opts.MaxDepth, "max-depth", opts.MaxDepth, "maximum JSON nesting depth of one record")
	fl.Int64Var(&opts.MaxGzipBytes, "max-gzip-bytes", opts.MaxGzipBytes, "maximum decompressed size of one .gz input")
	fl.IntVar(&opts.MaxPending, "max-pending", opts.MaxPending, "maximum Vault requests waiting for their response")
	fl.Usage = func() {
		fmt.Fprintln(stderr, "usage: auditwatch normalize [flags] PATH... (files, directories, .gz, - for stdin)")
		fmt.Fprintln(stderr, "Writes one normalized event per line on stdout; bad records and a summary go to stderr.")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := opts.Validate(); err != nil {
		fmt.Fprintf(stderr, "normalize: %v\n", err)
		return 2
	}
	paths := fl.Args()
	if len(paths) == 0 {
		fl.Usage()
		return 2
	}
	opts.Stdin = stdin

	recErrs := newCappedWriter(stderr, "normalize", maxRecordErrors)
	out := bufio.NewWriterSize(stdout, 256<<10)
	var (
		total  ingest.Stats
		inputs int
		buf    []byte
	)
	err := ingest.OpenPaths(paths, opts, func(name string, r *ingest.Reader) error {
		inputs++
		// what this input read counts even when it is cut short
		defer func() { total = total.Add(r.Stats()) }()
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			ev, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				fmt.Fprintf(recErrs, "normalize: %s\n", escape.String(escape.Terminal, err.Error()))
				continue
			}
			buf = ev.AppendJSON(buf[:0])
			buf = append(buf, '\n')
			if _, werr := out.Write(buf); werr != nil {
				return fmt.Errorf("write output: %w", werr)
			}
		}
		return nil
	})
	if ferr := out.Flush(); ferr != nil && err == nil {
		err = fmt.Errorf("write output: %w", ferr)
	}
	recErrs.Summary()
	fmt.Fprintf(stderr, "normalize: %d inputs, %d records, %d events, %d rejected, %d skipped, %d vault requests without response\n",
		inputs, total.Records, total.Events, total.Rejected, total.Skipped, total.Unpaired)
	if err != nil {
		fmt.Fprintf(stderr, "normalize: %s\n", escape.String(escape.Terminal, err.Error()))
		return 1
	}
	if total.Rejected > 0 {
		return 2
	}
	return 0
}
