package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"

	"auditwatch/config"
	"auditwatch/identity"
	"auditwatch/netinfo"
	"auditwatch/schema"
)

// enrichment is what the detect stage does to each event before the
// detectors: network context (netinfo) and credential linking (identity).
// Either may be nil.
type enrichment struct {
	geo    *netinfo.DB
	linker *identity.Linker
	travel *netinfo.Travel // with a city database or country centroids
	// share, when set, publishes the linker's changes to the other detect
	// instances (the Kafka links topic) at each checkpoint
	share func(ctx context.Context, ss []identity.Shared) error
}

// openEnrichment opens both from the root config's geo: and identity:
// sections; links are kept in linkDir ("" keeps them in memory).
func openEnrichment(root *config.Config, linkDir string, logger *slog.Logger) (*enrichment, error) {
	var geoN, idN *yaml.Node
	if root != nil {
		geoN, idN = &root.Geo, &root.Identity
	}
	gc, err := netinfo.FromNode(geoN)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := gc.Validate(); err != nil {
		return nil, fmt.Errorf("config: geo: %w", err)
	}
	e := &enrichment{}
	if gc.Enabled() {
		if e.geo, err = netinfo.Open(gc); err != nil {
			return nil, err
		}
		if (e.geo.HasCity() || e.geo.Centroids() != nil) && !gc.Travel.Disabled {
			if e.travel, err = netinfo.NewTravel(gc.Travel, netinfo.TravelOptions{Centroids: e.geo.Centroids(), Dir: linkDir}); err != nil {
				e.Close()
				return nil, err
			}
		}
	} else if !gc.Disabled {
		logger.Info("network context off: no databases configured or found", "dir", gc.Dir, "hint", "make geo")
	}
	if e.linker, err = openLinker(idN, linkDir, logger); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Close closes what is open.
func (e *enrichment) Close() error {
	if e == nil {
		return nil
	}
	var errs []error
	if e.travel != nil {
		errs = append(errs, e.travel.Close())
	}
	if e.geo != nil {
		errs = append(errs, e.geo.Close())
	}
	if e.linker != nil {
		errs = append(errs, e.linker.Close())
	}
	return errors.Join(errs...)
}

// Enrich is the detect stage's Enrich hook.
func (e *enrichment) Enrich(ctx context.Context, ev *schema.Event, out []schema.Finding) []schema.Finding {
	var in netinfo.Info
	if e.geo != nil {
		in = e.geo.Enrich(ev)
	}
	if e.linker != nil {
		out = e.linker.Process(ctx, ev, out)
	}
	if e.travel != nil {
		out = e.travel.Check(ev, in, out)
	}
	return out
}

// Flush makes what enrichment remembers between events durable (impossible
// travel's last places; the links written since the last checkpoint): the
// detect stage's BeforeCheckpoint.
func (e *enrichment) Flush() error {
	if e == nil {
		return nil
	}
	if e.travel != nil {
		if err := e.travel.Flush(); err != nil {
			return err
		}
	}
	if e.linker != nil {
		if err := e.linker.Sync(); err != nil {
			return err
		}
	}
	if e.share != nil && e.linker != nil {
		if ss := e.linker.TakeShared(); len(ss) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := e.share(ctx, ss); err != nil {
				e.linker.RequeueShared(ss)
				return fmt.Errorf("share credential links: %w", err)
			}
		}
	}
	return nil
}

// flushHook returns Flush, or nil when there is nothing to flush.
func (e *enrichment) flushHook() func() error {
	if e == nil || (e.travel == nil && e.linker == nil && e.share == nil) {
		return nil
	}
	return e.Flush
}

// hook returns Enrich, or nil when there is nothing to do.
func (e *enrichment) hook() func(context.Context, *schema.Event, []schema.Finding) []schema.Finding {
	if e == nil || (e.geo == nil && e.linker == nil) {
		return nil
	}
	return e.Enrich
}

// openLinker opens the credential linker of the `identity:` section with
// its store in dir ("" keeps links in memory). It returns nil when linking
// is disabled.
func openLinker(n *yaml.Node, dir string, logger *slog.Logger) (*identity.Linker, error) {
	c, err := identity.FromNode(n)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config: identity: %w", err)
	}
	if c.Disabled {
		return nil, nil
	}
	var h identity.AuditHasher
	if c.AuditHash.Address != "" {
		v, err := identity.NewVaultAuditHash(c.AuditHash, nil)
		if err != nil {
			return nil, err
		}
		h = v
	}
	return identity.New(c, identity.Options{Dir: dir, Hasher: h, Logger: logger.With("component", "identity")})
}

// replayEnrichment opens replay's enrichment: the config at path
// (defaults without one), links kept under stateDir when replay keeps
// state, else in memory.
func replayEnrichment(path, stateDir string, logger *slog.Logger) (*enrichment, error) {
	var root *config.Config
	if path != "" {
		r, err := config.Load(path)
		if err != nil {
			return nil, err
		}
		root = r
	}
	dir := ""
	if stateDir != "" {
		dir = filepath.Join(stateDir, "identity")
	}
	return openEnrichment(root, dir, logger)
}
