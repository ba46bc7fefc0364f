package detect

import (
	"encoding/binary"
	"errors"
	"time"

	"auditwatch/schema"
)

var errShortVarint = errors.New("truncated varint record")

func encodeVarints(xs ...int64) []byte {
	b := make([]byte, 0, 10*len(xs))
	for _, x := range xs {
		b = binary.AppendVarint(b, x)
	}
	return b
}

func decodeVarints(b []byte, n int) ([]int64, error) {
	out := make([]int64, n)
	for i := range out {
		x, k := binary.Varint(b)
		if k <= 0 {
			return nil, errShortVarint
		}
		out[i] = x
		b = b[k:]
	}
	return out, nil
}

// eventStrings lists the string fields of schema.Event in codec order.
// TestEventCodecCoversSchema fails when schema.Event gains a field the
// codec does not carry.
func eventStrings(ev *schema.Event) [31]*string {
	return [31]*string{&ev.Source, &ev.ID, &ev.Principal, &ev.PrincipalName, &ev.PrincipalType, &ev.Session,
		&ev.Account, &ev.AccessKey, &ev.TokenHMAC, &ev.AuthMethod, &ev.Action, &ev.Resource, &ev.Mount,
		&ev.MountType, &ev.Namespace, &ev.Region, &ev.SourceIP, &ev.SourceIPRaw, &ev.UserAgent, &ev.Outcome,
		&ev.Error, &ev.FailureKind, &ev.IssuedKey, &ev.LeaseID, &ev.KeyPrincipal, &ev.KeyIssue,
		&ev.InvokedBy, &ev.Country, &ev.ASOrg, &ev.NetLabel, &ev.TokenAccessor}
}

// appendEvent encodes ev compactly (buffered events are persisted at every
// checkpoint, so this is on the hot path of a checkpoint).
func appendEvent(b []byte, seq uint64, ev *schema.Event) []byte {
	b = binary.AppendUvarint(b, seq)
	b = binary.AppendVarint(b, ev.Time.Unix())
	b = binary.AppendUvarint(b, uint64(ev.Time.Nanosecond()))
	for _, p := range eventStrings(ev) {
		b = binary.AppendUvarint(b, uint64(len(*p)))
		b = append(b, *p...)
	}
	b = binary.AppendUvarint(b, uint64(len(ev.Policies)))
	for _, p := range ev.Policies {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	var flags byte
	if ev.SourceIsService {
		flags |= 1
	}
	if ev.Auth {
		flags |= 2
	}
	if ev.ReadOnly {
		flags |= 4
	}
	b = append(b, flags)
	b = binary.AppendVarint(b, int64(ev.HTTPStatus))
	b = binary.AppendVarint(b, int64(ev.ASN))
	// the original record, for rules that read it after release
	b = binary.AppendUvarint(b, uint64(len(ev.Raw)))
	return append(b, ev.Raw...)
}

var errBadEvent = errors.New("corrupt buffered event")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	x, k := binary.Uvarint(d.b)
	if k <= 0 {
		d.err = errBadEvent
		return 0
	}
	d.b = d.b[k:]
	return x
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	x, k := binary.Varint(d.b)
	if k <= 0 {
		d.err = errBadEvent
		return 0
	}
	d.b = d.b[k:]
	return x
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errBadEvent
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// readEvent decodes one event written by appendEvent.
func (d *decoder) readEvent(ev *schema.Event) uint64 {
	seq := d.uvarint()
	sec := d.varint()
	ns := d.uvarint()
	if ns >= 1e9 {
		d.err = errBadEvent
	}
	ev.Time = time.Unix(sec, int64(ns)).UTC()
	for _, p := range eventStrings(ev) {
		*p = d.str()
	}
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err = errBadEvent
		return 0
	}
	ev.Policies = nil
	for i := uint64(0); i < n && d.err == nil; i++ {
		ev.Policies = append(ev.Policies, d.str())
	}
	if d.err != nil || len(d.b) == 0 {
		d.err = errBadEvent
		return 0
	}
	flags := d.b[0]
	d.b = d.b[1:]
	ev.SourceIsService, ev.Auth, ev.ReadOnly = flags&1 != 0, flags&2 != 0, flags&4 != 0
	ev.HTTPStatus = int(d.varint())
	ev.ASN = int(d.varint())
	ev.Raw = nil
	if raw := d.str(); raw != "" {
		ev.Raw = []byte(raw)
	}
	if d.err != nil {
		return 0
	}
	return seq
}
