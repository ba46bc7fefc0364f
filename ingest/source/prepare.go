package source

import (
	"fmt"
	"log/slog"
)

// Config is a source's config section: defaults and validation (the
// config convention).
type Config interface {
	SetDefaults()
	Validate() error
}

// Base is what every source is built with besides its config: its logger
// (naming the source), its metrics and its rejector.
type Base struct {
	Log *slog.Logger
	M   *Metrics
	Rej *Rejector
}

// Prepare is the start of every source's constructor: it fills cfg's
// defaults and validates it (errors name the source as "kind name: …"),
// and returns the source's Base; a nil logger discards and nil metrics
// are registered nowhere.
func Prepare(kind, name string, cfg Config, logger *slog.Logger, m *Metrics) (Base, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return Base{}, fmt.Errorf("%s %s: %w", kind, name, err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	log := logger.With("source", name)
	return Base{Log: log, M: m, Rej: NewRejector(name, log, m)}, nil
}
