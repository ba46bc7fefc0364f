package syslog

import (
	"strconv"
	"time"

	"auditwatch/internal/escape"
)

// Header is an RFC 5424 header. Empty fields are sent as the NILVALUE "-".
type Header struct {
	Facility  int // 0..23
	Severity  int // 0..7
	Timestamp time.Time
	Hostname  string
	AppName   string
	ProcID    string
	MsgID     string
}

// SDParam is one structured-data parameter.
type SDParam struct{ Name, Value string }

// headerField keeps the printable US-ASCII of s except space (RFC 5424's
// PRINTUSASCII), replacing anything else with '_', cut to max bytes, and
// gives "-" for an empty field.
func headerField(s string, max int) string {
	if s == "" {
		return "-"
	}
	b := []byte(s)
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	if len(b) > max {
		b = b[:max]
	}
	return string(b)
}

// sdName keeps what RFC 5424 allows in an SD-NAME.
func sdName(s string) string {
	b := []byte(headerField(s, 32))
	for i, c := range b {
		if c == '=' || c == ']' || c == '"' {
			b[i] = '_'
		}
	}
	return string(b)
}

// SDValue is what an SD-PARAM value carries of s: CleanValue's result with
// CR and LF also turned into U+FFFD, so a frame never holds a raw line
// break for receivers that split on them.
func SDValue(s string) string { return escape.Clean(escape.SDParam, s) }

// EscapeSDValue escapes an SD-PARAM value: \ " and ] are escaped after SDValue.
func EscapeSDValue(s string) string { return escape.String(escape.SDParam, s) }

// AppendMessage appends one RFC 5424 message (no framing) to b.
func AppendMessage(b []byte, h Header, sdID string, params []SDParam, msg string) []byte {
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(h.Facility*8+h.Severity), 10)
	b = append(b, ">1 "...)
	if h.Timestamp.IsZero() {
		b = append(b, '-')
	} else {
		b = h.Timestamp.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	}
	b = append(b, ' ')
	b = append(b, headerField(h.Hostname, 255)...)
	b = append(b, ' ')
	b = append(b, headerField(h.AppName, 48)...)
	b = append(b, ' ')
	b = append(b, headerField(h.ProcID, 128)...)
	b = append(b, ' ')
	b = append(b, headerField(h.MsgID, 32)...)
	b = append(b, ' ')
	if sdID == "" || len(params) == 0 {
		b = append(b, '-')
	} else {
		b = append(b, '[')
		b = append(b, sdName(sdID)...)
		for _, p := range params {
			b = append(b, ' ')
			b = append(b, sdName(p.Name)...)
			b = append(b, '=', '"')
			b = append(b, EscapeSDValue(p.Value)...)
			b = append(b, '"')
		}
		b = append(b, ']')
	}
	if msg != "" {
		b = append(b, ' ')
		b = append(b, msg...)
	}
	return b
}

// AppendFrame appends msg with RFC 6587 octet-counting framing:
// "<length> <msg>".
func AppendFrame(b, msg []byte) []byte {
	b = strconv.AppendInt(b, int64(len(msg)), 10)
	b = append(b, ' ')
	return append(b, msg...)
}
