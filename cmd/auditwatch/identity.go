package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"go.yaml.in/yaml/v3"

	"auditwatch/config"
	"auditwatch/identity"
	"auditwatch/schema"
)

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

// enricher is the detect stage's Enrich hook for l (nil for no linker).
func enricher(l *identity.Linker) func(context.Context, *schema.Event, []schema.Finding) []schema.Finding {
	if l == nil {
		return nil
	}
	return l.Process
}

// closeLinker closes l if there is one.
func closeLinker(l *identity.Linker) {
	if l != nil {
		l.Close()
	}
}

// replayLinker opens the linker of replay: the `identity:` section of the
// config at path (defaults without one), its links kept under stateDir
// when replay keeps state, else in memory.
func replayLinker(path, stateDir string, logger *slog.Logger) (*identity.Linker, error) {
	var n *yaml.Node
	if path != "" {
		root, err := config.Load(path)
		if err != nil {
			return nil, err
		}
		n = &root.Identity
	}
	dir := ""
	if stateDir != "" {
		dir = filepath.Join(stateDir, "identity")
	}
	return openLinker(n, dir, logger)
}
