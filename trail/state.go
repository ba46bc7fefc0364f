package trail

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"auditwatch/schema"
)

// The verifier's state survives a restart: what was read and is still
// waited for (listed log files, log files in no digest yet, digests named
// as previous, starting digests to explain, open gaps) and the findings
// those will revise.
type snapshot struct {
	Version  int                  `json:"version"`
	Logs     []snapLog            `json:"logs"`
	Listed   []snapListing        `json:"listed"`
	Digests  []snapDigest         `json:"digests"`
	Chains   map[string]snapChain `json:"chains"`
	Events   []schema.Event       `json:"events"`
	Restarts map[string]time.Time `json:"restarts"`
	// Checked: id, SHA-256, digest of compared log files, oldest first.
	Checked [][3]string `json:"checked"`
}

type snapLog struct {
	ID, Name, SHA string
	At            time.Time
	Unlisted      *schema.Finding `json:",omitempty"`
	Covered       bool            `json:",omitempty"`
}

type snapListing struct {
	ID, SHA, Digest string
	At              time.Time
	Missing         *schema.Finding `json:",omitempty"`
}

type snapDigest struct {
	ID          string
	Content     []byte
	Sig         string
	SigState    int
	At          time.Time
	LinkPending bool            `json:",omitempty"`
	Start       *schema.Finding `json:",omitempty"`
	Explained   bool            `json:",omitempty"`
}

type snapChain struct {
	Scope   string
	LastEnd time.Time
	Gap     *schema.Finding `json:",omitempty"`
	GapLogs int             `json:",omitempty"`
	Breaks  [][2]time.Time  `json:",omitempty"`
}

func openOf(f *schema.Finding) *open {
	if f == nil {
		return nil
	}
	return &open{f: *f}
}

func findingOf(o *open) *schema.Finding {
	if o == nil {
		return nil
	}
	f := o.f
	return &f
}

// Save writes the state to path (atomically: a temporary file renamed).
func (v *Verifier) Save(path string) error {
	v.mu.Lock()
	snap := snapshot{Version: 1, Chains: map[string]snapChain{}, Events: v.events, Restarts: v.restarts}
	for _, r := range v.logs {
		snap.Logs = append(snap.Logs, snapLog{ID: r.id, Name: r.name, SHA: r.sha, At: r.at, Unlisted: findingOf(r.unlisted), Covered: r.covered})
	}
	for _, l := range v.listed {
		snap.Listed = append(snap.Listed, snapListing{ID: l.id, SHA: l.sha, Digest: l.digest, At: l.at, Missing: findingOf(l.missing)})
	}
	for _, d := range v.digests {
		snap.Digests = append(snap.Digests, snapDigest{ID: d.id, Content: d.content, Sig: d.sig, SigState: d.sigState, At: d.at,
			LinkPending: d.linkPending, Start: findingOf(d.start), Explained: d.explained})
	}
	for _, id := range v.checkedFIFO {
		c := v.checked[id]
		snap.Checked = append(snap.Checked, [3]string{id, c.sha, c.digest})
	}
	for k, c := range v.chains {
		snap.Chains[k] = snapChain{Scope: c.scope, LastEnd: c.lastEnd, Gap: findingOf(c.gap), GapLogs: c.gapLogs, Breaks: c.breaks}
	}
	b, err := json.Marshal(snap)
	v.mu.Unlock()
	if err != nil {
		return fmt.Errorf("trail state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("trail state: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("trail state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("trail state: %w", err)
	}
	return nil
}

// Load restores the state Save wrote (a missing file is a fresh start).
func (v *Verifier) Load(path string) error {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("trail state: %w", err)
	}
	var snap snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return fmt.Errorf("trail state %s: %w", path, err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, l := range snap.Logs {
		v.logs[l.ID] = &logRec{id: l.ID, name: l.Name, sha: l.SHA, at: l.At, unlisted: openOf(l.Unlisted), covered: l.Covered}
	}
	for _, l := range snap.Listed {
		v.listed[l.ID] = &listing{id: l.ID, sha: l.SHA, digest: l.Digest, at: l.At, missing: openOf(l.Missing)}
	}
	for _, sd := range snap.Digests {
		d, err := ParseDigest(sd.Content)
		if err != nil {
			continue
		}
		st := &DigestStatus{ID: sd.ID, End: d.end, Backfill: IsBackfill(sd.ID), Starting: d.Starting(), LogFiles: len(d.LogFiles)}
		rec := &digestRec{id: sd.ID, chain: chainKey(sd.ID), d: d, content: sd.Content, sha: sha256Hex(sd.Content),
			toSign: SigningString(d, sd.Content), sig: sd.Sig, sigState: sd.SigState, at: sd.At, backfill: IsBackfill(sd.ID),
			linkPending: sd.LinkPending, start: openOf(sd.Start), explained: sd.Explained, status: st}
		v.digests[sd.ID] = rec
		if !rec.backfill && !d.Starting() {
			if _, ok := v.digests[d.PreviousID()]; !ok {
				v.waiting[d.PreviousID()] = append(v.waiting[d.PreviousID()], rec)
			}
		}
	}
	// A previous digest restored after the one naming it: not waiting.
	for id := range v.waiting {
		if _, ok := v.digests[id]; ok {
			delete(v.waiting, id)
		}
	}
	for k, c := range snap.Chains {
		v.chains[k] = &chainRec{scope: c.Scope, lastEnd: c.LastEnd, gap: openOf(c.Gap), gapLogs: c.GapLogs, breaks: c.Breaks}
	}
	v.events = snap.Events
	v.restarts = snap.Restarts
	for _, c := range snap.Checked {
		v.remember(c[0], checkedLog{sha: c[1], digest: c[2]})
	}
	return nil
}
