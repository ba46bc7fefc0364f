package alert

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"auditwatch/alert/notify"
)

// Resend requests: `auditwatch deadletter resend` cannot open the ledger
// while the stage that owns it runs (bbolt locks it), so it drops a
// request file into the resend spool, <dir of state_path>/resend/, and
// the running router (which watches it) replays the dead-letter file
// through its own outputs, writes the result next to the request and
// removes the request. A request left by a crash is served again after
// the restart; Replay is idempotent, so that sends nothing twice.

// ResendRequest asks a running router to Replay a dead-letter file.
type ResendRequest struct {
	File      string    `json:"file"`
	Output    string    `json:"output,omitempty"`
	Requested time.Time `json:"requested"`
}

// ResendResult is what the router did with a ResendRequest.
type ResendResult struct {
	Stats    ReplayStats `json:"stats"`
	Error    string      `json:"error,omitempty"`
	Finished time.Time   `json:"finished"`
}

// resendPoll is how often a delivering router looks for requests.
const resendPoll = time.Second

// ResendDir is the resend spool of the router configured by cfg (empty
// without an on-disk ledger).
func ResendDir(cfg Config) string {
	if cfg.StatePath == "" {
		return ""
	}
	return filepath.Join(filepath.Dir(cfg.StatePath), "resend")
}

// RequestResend writes req into the spool dir and returns its id.
func RequestResend(dir string, req ResendRequest) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("resend spool: %w", err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := time.Now().UTC().Format("20060102T150405.000000000Z") + "-" + hex.EncodeToString(b[:])
	raw, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	if err := writeAtomic(filepath.Join(dir, id+".req"), raw); err != nil {
		return "", fmt.Errorf("resend spool: %w", err)
	}
	return id, nil
}

// WaitResend waits for the result of request id (polling), removes it
// and returns it.
func WaitResend(ctx context.Context, dir, id string) (ResendResult, error) {
	path := filepath.Join(dir, id+".done")
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		raw, err := os.ReadFile(path)
		if err == nil {
			var res ResendResult
			if err := json.Unmarshal(raw, &res); err != nil {
				return res, fmt.Errorf("resend result %s: %w", path, err)
			}
			_ = os.Remove(path)
			return res, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return ResendResult{}, fmt.Errorf("resend result: %w", err)
		}
		select {
		case <-ctx.Done():
			return ResendResult{}, fmt.Errorf("no answer from the running stage (is it running, with this config?); request %s stays queued: %w",
				filepath.Join(dir, id+".req"), ctx.Err())
		case <-t.C:
		}
	}
}

// serveResends serves the resend spool until ctx ends.
func (r *Router) serveResends(ctx context.Context, dir string) {
	t := time.NewTicker(resendPoll)
	defer t.Stop()
	for {
		r.serveResendsOnce(ctx, dir)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Router) serveResendsOnce(ctx context.Context, dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return // no spool yet
	}
	var ids []string
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), ".req"); ok && e.Type().IsRegular() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		reqPath := filepath.Join(dir, id+".req")
		var res ResendResult
		raw, err := os.ReadFile(reqPath)
		var req ResendRequest
		if err == nil {
			err = json.Unmarshal(raw, &req)
		}
		if err == nil && req.File == "" {
			err = errors.New("no dead-letter file named")
		}
		if err == nil {
			r.log.Info("resending dead letters on request", "file", notify.SanitizeLine(req.File, 200), "output", notify.SanitizeLine(req.Output, 64))
			res.Stats, err = r.Replay(ctx, req.File, req.Output)
			if ctx.Err() != nil {
				return // stopping: the request stays for the next start
			}
		}
		if err != nil {
			res.Error = notify.SanitizeLine(err.Error(), 512)
		}
		res.Finished = r.clock.Now().UTC()
		out, _ := json.Marshal(res)
		if werr := writeAtomic(filepath.Join(dir, id+".done"), out); werr != nil {
			r.log.Error("resend result not written; the request is served again", "err", werr)
			continue
		}
		_ = os.Remove(reqPath)
	}
}

// writeAtomic writes b to path through a synced temporary file and a rename.
func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
