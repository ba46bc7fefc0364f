package chsql

import (
	"encoding/binary"

	"auditwatch/internal/resname"
	"auditwatch/schema"
)

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStrs(b []byte, xs []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(xs)))
	for _, x := range xs {
		b = appendStr(b, x)
	}
	return b
}

func b01(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// AppendEventRowBinary appends ev as one RowBinary row in EventColumns
// order: no escaping at all, so it is both faster to write and to parse
// than TabSeparated.
func AppendEventRowBinary(b []byte, ev *schema.Event) []byte {
	t := ClampTime(ev.Time)
	sec := t.Unix()
	b = binary.LittleEndian.AppendUint16(b, uint16(sec/86400))
	b = binary.LittleEndian.AppendUint32(b, uint32(sec))
	for _, s := range [...]string{ev.Source, ev.ID, ev.Principal, ev.PrincipalName, ev.PrincipalType, ev.Session, ev.Account, ev.AccessKey} {
		b = appendStr(b, s)
	}
	b = appendStrs(b, ev.Policies)
	for _, s := range [...]string{ev.TokenHMAC, ev.AuthMethod, ev.Action, ev.Resource, ev.Mount, ev.MountType, ev.Namespace, ev.Region, ev.SourceIP, ev.SourceIPRaw} {
		b = appendStr(b, s)
	}
	ip := IP16(ev.SourceIP)
	b = append(b, ip[:]...)
	b = append(b, b01(ev.SourceIsService))
	b = appendStr(b, ev.UserAgent)
	for _, s := range [...]string{ev.Outcome, ev.Error, ev.FailureKind} {
		b = appendStr(b, s)
	}
	b = append(b, b01(ev.Auth), b01(ev.ReadOnly))
	st := ev.HTTPStatus
	if st < 0 || st > 65535 {
		st = 0
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(st))
	b = appendStr(b, resname.Name(ev))
	b = appendStr(b, ev.KeyPrincipal)
	b = appendStr(b, ev.KeyIssue)
	b = appendStr(b, ev.Country)
	b = binary.LittleEndian.AppendUint32(b, ASN32(ev.ASN))
	b = appendStr(b, ev.ASOrg)
	b = appendStr(b, ev.NetLabel)
	b = appendStr(b, ev.TokenAccessor)
	return appendBytes(b, ev.Raw)
}

// ASN32 is the event's AS number as the UInt32 column holds it (0 when
// out of range).
func ASN32(n int) uint32 {
	if n < 0 || n > 1<<32-1 {
		return 0
	}
	return uint32(n)
}

// ResourceNameColumns is the column list of every resource_names insert.
var ResourceNameColumns = []string{"resource_name", "resource"}

// ResourceNames returns the distinct (resource_name, resource) pairs of
// evs, in first-seen order.
func ResourceNames(evs []schema.Event) [][2]string {
	seen := map[[2]string]bool{}
	var out [][2]string
	for i := range evs {
		p := [2]string{resname.Name(&evs[i]), evs[i].Resource}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// AppendResourceNamesRowBinary appends pairs as RowBinary rows of
// resource_names.
func AppendResourceNamesRowBinary(b []byte, pairs [][2]string) []byte {
	for _, p := range pairs {
		b = appendStr(b, p[0])
		b = appendStr(b, p[1])
	}
	return b
}

// AppendIPRowBinary appends ev as one RowBinary row of ip_events, in
// IPColumns order.
func AppendIPRowBinary(b []byte, ev *schema.Event) []byte {
	sec := ClampTime(ev.Time).Unix()
	b = binary.LittleEndian.AppendUint16(b, uint16(sec/86400))
	b = binary.LittleEndian.AppendUint32(b, uint32(sec))
	ip := IP16(ev.SourceIP)
	b = append(b, ip[:]...)
	for _, s := range [...]string{ev.ID, ev.Principal, ev.PrincipalName, ev.Resource, ev.SourceIP, ev.Outcome, ev.Country} {
		b = appendStr(b, s)
	}
	b = binary.LittleEndian.AppendUint32(b, ASN32(ev.ASN))
	return appendStr(b, ev.ASOrg)
}

// AppendPrincipalRowBinary appends ev as one RowBinary row of
// principal_events, in PrincipalColumns order.
func AppendPrincipalRowBinary(b []byte, ev *schema.Event) []byte {
	sec := ClampTime(ev.Time).Unix()
	b = binary.LittleEndian.AppendUint16(b, uint16(sec/86400))
	b = binary.LittleEndian.AppendUint32(b, uint32(sec))
	for _, s := range [...]string{ev.ID, ev.Principal, ev.AccessKey, ev.Action, ev.Resource, ev.SourceIP, ev.Outcome, ev.Error, ev.FailureKind, ev.TokenAccessor} {
		b = appendStr(b, s)
	}
	return b
}

// AppendFindingRowBinary appends f as one RowBinary row in FindingColumns order.
func AppendFindingRowBinary(b []byte, f *schema.Finding) []byte {
	t := ClampTime(f.Time)
	sec := t.Unix()
	b = binary.LittleEndian.AppendUint16(b, uint16(sec/86400))
	b = binary.LittleEndian.AppendUint32(b, uint32(sec))
	for _, s := range [...]string{f.ID, f.Detector, string(f.Severity), f.Principal, f.PrincipalName, f.Resource, f.SourceIP, f.Source, f.Account} {
		b = appendStr(b, s)
	}
	b = binary.LittleEndian.AppendUint32(b, clampU32(f.Count))
	b = appendStrs(b, f.EventIDs)
	for _, s := range [...]string{f.Summary, f.Reason, f.DedupeKey} {
		b = appendStr(b, s)
	}
	b = binary.LittleEndian.AppendUint32(b, clampU32(f.Revision))
	b = binary.LittleEndian.AppendUint32(b, uint32(ClampTime(f.FirstTime).Unix()))
	b = binary.LittleEndian.AppendUint32(b, uint32(ClampTime(f.LastTime).Unix()))
	b = append(b, b01(f.Late))
	keys, vals := Attributes(f.Attributes)
	b = appendStrs(b, keys)
	b = appendStrs(b, vals)
	return appendStr(b, f.IncidentID)
}
