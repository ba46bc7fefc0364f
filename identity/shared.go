package identity

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Shared is one change of what a linker knows, as several detect
// instances exchange it (the Kafka deployment partitions events by
// principal, so a Vault issue and the CloudTrail uses of its key, or the
// keys of one Vault identity, may be handled by different instances).
// Exactly one field is set. Applying a change is a merge: idempotent,
// order-independent, and never loses what the receiver knew.
type Shared struct {
	Issue  *Issue        `json:"issue,omitempty"`
	Nets   *SharedNets   `json:"nets,omitempty"`
	Family *SharedFamily `json:"family,omitempty"`
	Revoke *SharedRevoke `json:"revoke,omitempty"`
}

// SharedNets is the networks a Vault identity's keys were used from.
type SharedNets struct {
	Principal string         `json:"principal"`
	First     time.Time      `json:"first"`
	Nets      []netip.Prefix `json:"nets"`
}

// SharedFamily is the AWS principal family a Vault role's keys belong to.
type SharedFamily struct {
	Role   string `json:"role"`
	Family string `json:"family"`
}

// SharedRevoke is a body-form revocation not yet matched to a lease.
type SharedRevoke struct {
	LeaseHMAC string    `json:"lease_hmac"`
	At        time.Time `json:"at"`
}

// Key is the record key of a change: one per issue, identity, role or
// revocation, so a compacted topic keeps the latest of each.
func (s *Shared) Key() string {
	switch {
	case s.Issue != nil:
		return string(issueKey(s.Issue))
	case s.Nets != nil:
		return "n:" + s.Nets.Principal
	case s.Family != nil:
		return "f:" + s.Family.Role
	case s.Revoke != nil:
		return "v:" + s.Revoke.LeaseHMAC
	}
	return ""
}

// maxShared bounds the changes waiting to be taken (TakeShared); past it
// the oldest are dropped and counted.
const maxShared = 100_000

// ShareChanges makes the linker keep its changes for TakeShared.
func (l *Linker) ShareChanges() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sharing = true
}

// share queues a change. l.mu is held.
func (l *Linker) share(s Shared) {
	if !l.sharing {
		return
	}
	if len(l.shared) >= maxShared {
		l.shared = l.shared[1:]
		l.stats.SharedDropped++
	}
	l.shared = append(l.shared, s)
}

// TakeShared returns the changes since the last call (the detect stage
// publishes them at each checkpoint, before committing its input).
func (l *Linker) TakeShared() []Shared {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.shared
	l.shared = nil
	return out
}

// Apply merges a change another instance shared. It is written through to
// the store and not shared again.
func (l *Linker) Apply(s Shared) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	sharing := l.sharing
	l.sharing = false
	defer func() { l.sharing = sharing }()
	switch {
	case s.Issue != nil:
		return l.applyIssue(s.Issue)
	case s.Nets != nil:
		n := s.Nets
		ns := l.nets[n.Principal]
		if ns == nil {
			ns = &netState{First: n.First}
			l.nets[n.Principal] = ns
		}
		changed := false
		if !n.First.IsZero() && (ns.First.IsZero() || n.First.Before(ns.First)) {
			ns.First, changed = n.First, true
		}
		for _, p := range n.Nets {
			if len(ns.Nets) < maxNets && !slices.Contains(ns.Nets, p) {
				ns.Nets, changed = append(ns.Nets, p), true
			}
		}
		if changed {
			l.putNets(n.Principal, ns)
		}
	case s.Family != nil:
		if _, known := l.roleFam[s.Family.Role]; !known {
			l.roleFam[s.Family.Role] = s.Family.Family
			l.saveFamily(s.Family.Role, s.Family.Family)
		}
	case s.Revoke != nil:
		l.revokeHMAC(s.Revoke.LeaseHMAC, s.Revoke.At)
	default:
		return fmt.Errorf("identity: shared change with nothing in it")
	}
	return nil
}

// applyIssue merges a shared issue. l.mu is held.
func (l *Linker) applyIssue(in *Issue) error {
	if in.Key == "" && in.KeyHMAC == "" && in.Session == nil {
		return fmt.Errorf("identity: shared issue without a key")
	}
	is := *in
	prev := l.lookupIssue(&is)
	if prev == nil && is.Key != "" && is.KeyHMAC != "" {
		// resolved elsewhere: the local copy is still indexed by HMAC
		prev = l.byHMAC[is.KeyHMAC]
	}
	if prev == nil && is.Request != "" {
		for _, o := range l.order {
			if o != nil && o.Request == is.Request {
				prev = o
				break
			}
		}
	}
	if prev == nil {
		if is.KeyHMAC != "" && is.Key == "" {
			if k, ok := l.hashOf.reverse(is.KeyHMAC); ok {
				is.Key = k
			}
		}
		l.stats.Issued++
		l.index(&is)
		l.saveIssue(&is)
		return nil
	}
	changed := false
	if prev.Key == "" && is.Key != "" {
		if l.byHMAC[prev.KeyHMAC] == prev {
			delete(l.byHMAC, prev.KeyHMAC)
		}
		prev.Key = is.Key
		l.byKey[is.Key] = prev
		changed = true
	}
	if !is.Revoked.IsZero() && (prev.Revoked.IsZero() || is.Revoked.Before(prev.Revoked)) {
		prev.Revoked = is.Revoked
		changed = true
	}
	if prev.AWSPrincipal == "" && is.AWSPrincipal != "" {
		prev.AWSPrincipal = is.AWSPrincipal
		changed = true
	}
	if prev.LeaseHMAC == "" && is.LeaseHMAC != "" {
		prev.LeaseHMAC = is.LeaseHMAC
		changed = true
	}
	if changed {
		l.saveIssue(prev)
	}
	return nil
}

// MarshalShared and UnmarshalShared are a change's wire form (JSON).
func MarshalShared(s Shared) ([]byte, error) { return json.Marshal(s) }

// UnmarshalShared reads a change's wire form.
func UnmarshalShared(b []byte) (Shared, error) {
	var s Shared
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("identity: shared change: %w", err)
	}
	if s.Key() == "" {
		return s, fmt.Errorf("identity: shared change with nothing in it")
	}
	return s, nil
}

// RequeueShared puts back changes TakeShared returned that could not be
// published, ahead of newer ones.
func (l *Linker) RequeueShared(ss []Shared) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.shared = append(ss, l.shared...)
	if n := len(l.shared) - maxShared; n > 0 {
		l.shared = l.shared[n:]
		l.stats.SharedDropped += uint64(n)
	}
}
