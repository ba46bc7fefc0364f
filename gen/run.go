package gen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Sources of records returned by Next.
const (
	SourceCloudTrail = "cloudtrail"
	SourceVault      = "vault"
)

// Next renders the next client request, appending it to dst, and reports its
// source. A CloudTrail request is one compact JSON record followed by '\n';
// a Vault request is its request entry and its response entry, each a JSON
// line. ok is false when all Config.Events requests have been rendered.
func (g *Generator) Next(dst []byte) (out []byte, src string, ok bool) {
	if !g.nextOp() {
		return dst, "", false
	}
	g.count++
	o := &g.cur
	if o.kind >= vLoginAppRole {
		return g.appendVault(dst, o), SourceVault, true
	}
	dst = g.appendCloudTrail(dst, o)
	return append(dst, '\n'), SourceCloudTrail, true
}

// WriteVault writes every request to w as Vault/OpenBao audit lines; the
// population must have no AWS principals (Config.CloudTrailShare 0).
func (g *Generator) WriteVault(ctx context.Context, w io.Writer) (Stats, error) {
	return g.Run(ctx, Output{Vault: w})
}

// WriteCloudTrail writes every request to w as CloudTrail records, one per
// line; the population must have no Vault principals (CloudTrailShare 1).
func (g *Generator) WriteCloudTrail(ctx context.Context, w io.Writer) (Stats, error) {
	return g.Run(ctx, Output{CloudTrail: w})
}

// Output says where Run writes. A source whose writer is nil is an error
// when the population has principals of that source.
type Output struct {
	// Vault receives Vault/OpenBao audit entries as JSON lines.
	Vault io.Writer
	// CloudTrail receives CloudTrail records, one per line.
	CloudTrail io.Writer
	// CloudTrailS3, when set instead of CloudTrail, receives records as S3
	// delivery objects.
	CloudTrailS3 *S3Writer
	// Combined, when set instead of the others, receives every record of
	// both sources in one stream, in event-time order.
	Combined io.Writer
	// Flush, when set, is called after each paced batch (Config.Rate > 0)
	// and at the end.
	Flush func() error
}

// Stats counts what Run wrote.
type Stats struct {
	Events           int   // client requests
	CloudTrailEvents int   // CloudTrail records
	VaultEvents      int   // Vault requests (two lines each)
	Bytes            int64 // bytes written (uncompressed)
}

// ErrNoOutput is returned by Run when a source has no writer.
var ErrNoOutput = errors.New("no output for source")

const flushAt = 256 << 10

// Run renders every request into out. With Config.Rate > 0 it writes in
// wall time at that rate, in batches of about 50 ms, calling out.Flush after
// each. It stops early with ctx's error when ctx is done.
func (g *Generator) Run(ctx context.Context, out Output) (Stats, error) {
	var st Stats
	combined := out.Combined != nil
	if combined {
		if out.Vault != nil || out.CloudTrail != nil || out.CloudTrailS3 != nil {
			return st, errors.New("gen: Output.Combined excludes the other outputs")
		}
		out.Vault = out.Combined
	}
	if len(g.pop.vault) > 0 && out.Vault == nil {
		return st, fmt.Errorf("%w: vault", ErrNoOutput)
	}
	if len(g.pop.ct) > 0 && out.CloudTrail == nil && out.CloudTrailS3 == nil && !combined {
		return st, fmt.Errorf("%w: cloudtrail", ErrNoOutput)
	}
	vbuf := make([]byte, 0, flushAt+64<<10)
	cbuf := make([]byte, 0, flushAt+64<<10)
	write := func(w io.Writer, b []byte) error {
		if len(b) == 0 {
			return nil
		}
		n, err := w.Write(b)
		st.Bytes += int64(n)
		return err
	}
	flushAll := func() error {
		if err := write(out.Vault, vbuf); err != nil {
			return fmt.Errorf("write vault output: %w", err)
		}
		vbuf = vbuf[:0]
		if out.CloudTrail != nil {
			if err := write(out.CloudTrail, cbuf); err != nil {
				return fmt.Errorf("write cloudtrail output: %w", err)
			}
			cbuf = cbuf[:0]
		}
		if out.Flush != nil {
			if err := out.Flush(); err != nil {
				return fmt.Errorf("flush output: %w", err)
			}
		}
		return nil
	}
	batch := 4096
	var began time.Time
	if g.cfg.Rate > 0 {
		batch = int(g.cfg.Rate / 20)
		if batch < 1 {
			batch = 1
		}
		began = time.Now()
	}
	var scratch []byte
	for {
		for i := 0; i < batch; i++ {
			var src string
			var ok bool
			if out.CloudTrailS3 != nil {
				scratch, src, ok = g.Next(scratch[:0])
				if ok && src == SourceCloudTrail {
					p := g.cur.p
					if err := out.CloudTrailS3.Add(scratch[:len(scratch)-1], g.cur.t, p.acct.id, p.acct.region); err != nil {
						return st, err
					}
					st.Bytes += int64(len(scratch))
				} else if ok {
					vbuf = append(vbuf, scratch...)
				}
			} else {
				before := len(vbuf)
				vbuf, src, ok = g.Next(vbuf)
				if ok && src == SourceCloudTrail && !combined {
					cbuf = append(cbuf, vbuf[before:]...)
					vbuf = vbuf[:before]
				}
			}
			if !ok {
				if err := flushAll(); err != nil {
					return st, err
				}
				if out.CloudTrailS3 != nil {
					if err := out.CloudTrailS3.Close(); err != nil {
						return st, err
					}
				}
				return st, nil
			}
			st.Events++
			if src == SourceVault {
				st.VaultEvents++
			} else {
				st.CloudTrailEvents++
			}
			if len(vbuf) >= flushAt || len(cbuf) >= flushAt {
				if err := flushAll(); err != nil {
					return st, err
				}
			}
		}
		if err := ctx.Err(); err != nil {
			_ = flushAll()
			if out.CloudTrailS3 != nil {
				_ = out.CloudTrailS3.Close()
			}
			return st, err
		}
		if g.cfg.Rate > 0 {
			if err := flushAll(); err != nil {
				return st, err
			}
			due := began.Add(time.Duration(float64(st.Events) / g.cfg.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
				case <-t.C:
				}
			}
		}
	}
}
