package incident

import (
	"errors"

	"auditwatch/schema"
)

// MetaKey is the checkpoint meta entry holding the correlator's state.
const MetaKey = "incident/open"

// Detector is a detector engine with a checkpoint (pipeline.Detector).
type Detector interface {
	Process(ev schema.Event) []schema.Finding
	Checkpoint(meta map[string][]byte) error
	Meta() (map[string][]byte, error)
	Close() error
}

// Stage is a Detector whose findings carry incident ids: the correlation
// runs on the detector's findings before anything hands them on, and its
// state is saved in the detector's checkpoint.
type Stage struct {
	Detector
	c *Correlator
}

// Wrap correlates d's findings, restoring the state its last checkpoint
// saved.
func Wrap(d Detector, cfg Config) (*Stage, error) {
	if d == nil {
		return nil, ErrNoDetector
	}
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	meta, err := d.Meta()
	if err != nil {
		return nil, err
	}
	if err := c.RestoreState(meta[MetaKey]); err != nil {
		return nil, err
	}
	return &Stage{Detector: d, c: c}, nil
}

// Process runs the detector and correlates its findings.
func (s *Stage) Process(ev schema.Event) []schema.Finding {
	fs := s.Detector.Process(ev)
	s.c.Assign(fs)
	return fs
}

// Join correlates findings raised beside the detector for the same event
// (the detect stage's Enrich hook: credential linking, impossible travel),
// so they join incidents exactly like the detector's own. A wrapped
// detector with a Join of its own (a filter) sees them first; what it
// keeps is returned.
func (s *Stage) Join(fs []schema.Finding) []schema.Finding {
	if j, ok := s.Detector.(joiner); ok {
		fs = j.Join(fs)
	}
	s.c.Assign(fs)
	return fs
}

// Note hands a note (an event of another partition, pipeline.Noter) to
// the wrapped detector and correlates what it raises.
func (s *Stage) Note(ev schema.Event) []schema.Finding {
	n, ok := s.Detector.(interface {
		Note(schema.Event) []schema.Finding
	})
	if !ok {
		return nil
	}
	fs := n.Note(ev)
	s.c.Assign(fs)
	return fs
}

// Drain releases the wrapped detector's event-time reorder buffer
// (pipeline.Drainer) and correlates what it raises.
func (s *Stage) Drain() []schema.Finding {
	d, ok := s.Detector.(drainer)
	if !ok {
		return nil
	}
	fs := d.Drain()
	s.c.Assign(fs)
	return fs
}

// Buffered is the wrapped detector's reorder buffer length (0 without one).
func (s *Stage) Buffered() int {
	d, ok := s.Detector.(drainer)
	if !ok {
		return 0
	}
	return d.Buffered()
}

type joiner interface {
	Join(fs []schema.Finding) []schema.Finding
}

type drainer interface {
	Drain() []schema.Finding
	Buffered() int
}

// Checkpoint saves the correlator's state with the detector's.
func (s *Stage) Checkpoint(meta map[string][]byte) error {
	b, err := s.c.MarshalState()
	if err != nil {
		return err
	}
	m := make(map[string][]byte, len(meta)+1)
	for k, v := range meta {
		m[k] = v
	}
	m[MetaKey] = b
	return s.Detector.Checkpoint(m)
}

// NeedCheckpoint forwards the wrapped detector's request for an early
// checkpoint (detect.Engine: unsaved state reached its memory share).
func (s *Stage) NeedCheckpoint() bool {
	nc, ok := s.Detector.(interface{ NeedCheckpoint() bool })
	return ok && nc.NeedCheckpoint()
}

// Config is the stage's correlation configuration.
func (s *Stage) Config() Config { return s.c.cfg }

// Correlator returns the stage's correlator (findings from other stages of
// the same partition, such as credential linking, join through it).
func (s *Stage) Correlator() *Correlator { return s.c }

// Unwrap returns the wrapped detector.
func (s *Stage) Unwrap() Detector { return s.Detector }

// ErrNoDetector is returned by Wrap with a nil detector.
var ErrNoDetector = errors.New("incident: no detector")
