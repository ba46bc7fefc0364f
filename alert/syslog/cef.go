package syslog

import (
	"strconv"
	"strings"

	"auditwatch/alert/notify"
	"auditwatch/internal/escape"
	"auditwatch/schema"
)

// CEF is ArcSight's Common Event Format, version 0:
//
//	CEF:0|Vendor|Product|Version|SignatureID|Name|Severity|k1=v1 k2=v2 …
//
// Header fields escape \ and | (and CR/LF as \r \n); extension values
// escape \ and = and CR/LF as \r \n. Other control characters and invalid
// UTF-8 cannot be carried faithfully by syslog receivers or terminals, so
// CleanValue turns them into U+FFFD before escaping.

// CleanValue is what a CEF value carries of s once a receiver undoes the
// escaping: control characters other than CR and LF, DEL, C1 controls,
// zero-width and bidi controls and invalid UTF-8 become U+FFFD
// (internal/escape). Values free of them are returned unchanged.
func CleanValue(s string) string { return escape.Clean(escape.CEFExtension, s) }

// EscapeHeader escapes a CEF header field (internal/escape).
func EscapeHeader(s string) string { return escape.String(escape.CEFHeader, s) }

// EscapeExtension escapes a CEF extension value (internal/escape).
func EscapeExtension(s string) string { return escape.String(escape.CEFExtension, s) }

// CEF severity (0-10) of a finding severity.
func cefSeverity(s schema.Severity) int {
	switch s {
	case schema.SeverityCritical:
		return 10
	case schema.SeverityHigh:
		return 8
	case schema.SeverityMedium:
		return 5
	case schema.SeverityLow:
		return 3
	case schema.SeverityInfo:
		return 1
	}
	return 0
}

// cefRecord builds one CEF line from header fields and ordered extension
// pairs (empty values are left out).
type cefRecord struct {
	Vendor, Product, Version, SignatureID, Name string
	Severity                                    int
	Ext                                         [][2]string
}

func (c *cefRecord) add(k, v string) {
	if v != "" {
		c.Ext = append(c.Ext, [2]string{k, v})
	}
}

func (c *cefRecord) String() string {
	var b strings.Builder
	b.WriteString("CEF:0|")
	for _, h := range []string{c.Vendor, c.Product, c.Version, c.SignatureID, c.Name} {
		b.WriteString(EscapeHeader(h))
		b.WriteByte('|')
	}
	b.WriteString(strconv.Itoa(c.Severity))
	b.WriteByte('|')
	for i, kv := range c.Ext {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(kv[0])
		b.WriteByte('=')
		b.WriteString(EscapeExtension(kv[1]))
	}
	return b.String()
}

func millis(t interface{ UnixMilli() int64 }) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// FindingCEF renders an alert as CEF. The extension uses CEF dictionary
// keys where one fits (rt, start, end, cnt, act, suser, suid, src, msg,
// externalId, cat) and labelled custom strings for the rest.
func FindingCEF(a notify.Alert, version string) string {
	f := a.Finding
	c := cefRecord{Vendor: "auditwatch", Product: "auditwatch", Version: version,
		SignatureID: f.Detector, Name: f.Summary, Severity: cefSeverity(f.Severity)}
	if c.Name == "" {
		c.Name = f.Detector
	}
	if !f.Time.IsZero() {
		c.add("rt", millis(f.Time))
	}
	if !f.FirstTime.IsZero() {
		c.add("start", millis(f.FirstTime))
	}
	if !f.LastTime.IsZero() {
		c.add("end", millis(f.LastTime))
	}
	c.add("cnt", strconv.Itoa(max(f.Count, 1)))
	c.add("cat", string(f.Severity))
	c.add("act", f.Detector)
	c.add("externalId", f.ID)
	c.add("suid", f.Principal)
	c.add("suser", f.PrincipalName)
	c.add("src", f.SourceIP)
	c.add("msg", f.Reason)
	c.add("cs1Label", "resource")
	c.add("cs1", f.Resource)
	c.add("cs2Label", "dedupeKey")
	c.add("cs2", f.DedupeKey)
	c.add("cs3Label", "eventIds")
	c.add("cs3", strings.Join(f.EventIDs, ","))
	c.add("cs4Label", "logSource")
	c.add("cs4", f.Source)
	if f.Account != "" {
		c.add("cs5Label", "account")
		c.add("cs5", f.Account)
	}
	if len(f.Attributes) > 0 {
		var b strings.Builder
		for i, k := range notify.SortedAttributeKeys(f.Attributes) {
			if i > 0 {
				b.WriteByte(';')
			}
			b.WriteString(k + ":" + f.Attributes[k])
		}
		c.add("cs6Label", "attributes")
		c.add("cs6", b.String())
	}
	if ts := f.Attributes["techniques"]; ts != "" {
		c.add("flexString1Label", "mitreAttackTechniques")
		c.add("flexString1", ts)
	}
	if title := f.Attributes["rule_title"]; title != "" {
		c.add("flexString2Label", "ruleTitleAndAuthor")
		c.add("flexString2", title+" (author: "+f.Attributes["author"]+")")
	}
	c.add("cn1Label", "revision")
	c.add("cn1", strconv.Itoa(f.Revision))
	c.add("cn2Label", "groupRepeat")
	c.add("cn2", strconv.Itoa(a.Repeat))
	return c.String()
}

// EventCEF renders a raw normalized event as CEF (signature "event").
func EventCEF(ev schema.Event, version string) string {
	sev := 1
	if ev.Failed() {
		sev = 3
	}
	c := cefRecord{Vendor: "auditwatch", Product: "auditwatch", Version: version,
		SignatureID: "event", Name: ev.Action, Severity: sev}
	if !ev.Time.IsZero() {
		c.add("rt", millis(ev.Time))
	}
	c.add("externalId", ev.ID)
	c.add("act", ev.Action)
	c.add("outcome", ev.Outcome)
	c.add("suid", ev.Principal)
	c.add("suser", ev.PrincipalName)
	c.add("src", ev.SourceIP)
	c.add("requestClientApplication", ev.UserAgent)
	c.add("reason", ev.Error)
	c.add("cs1Label", "resource")
	c.add("cs1", ev.Resource)
	c.add("cs4Label", "logSource")
	c.add("cs4", ev.Source)
	if ev.Account != "" {
		c.add("cs5Label", "account")
		c.add("cs5", ev.Account)
	}
	if ev.SourceIPRaw != "" && ev.SourceIPRaw != ev.SourceIP {
		c.add("cs6Label", "sourceIpRaw")
		c.add("cs6", ev.SourceIPRaw)
	}
	return c.String()
}
