package syslog

import (
	"errors"
	"strconv"
	"strings"
)

// The small parsers below read back what the encoders write; the fuzz and
// integration tests compare their output with the original values.

// parseCEF splits a CEF record into its 7 header fields (version first,
// without "CEF:") and its extension pairs, unescaping both.
func parseCEF(s string) (header []string, ext [][2]string, err error) {
	rest, ok := strings.CutPrefix(s, "CEF:")
	if !ok {
		return nil, nil, errors.New("no CEF: prefix")
	}
	var cur strings.Builder
	i := 0
	for len(header) < 7 {
		if i >= len(rest) {
			return nil, nil, errors.New("header ends early")
		}
		c := rest[i]
		switch {
		case c == '\\':
			if i+1 >= len(rest) {
				return nil, nil, errors.New("dangling backslash in header")
			}
			switch rest[i+1] {
			case '\\', '|':
				cur.WriteByte(rest[i+1])
			case 'r':
				cur.WriteByte('\r')
			case 'n':
				cur.WriteByte('\n')
			default:
				return nil, nil, errors.New("bad header escape")
			}
			i += 2
		case c == '|':
			header = append(header, cur.String())
			cur.Reset()
			i++
		case c == '\r' || c == '\n':
			return nil, nil, errors.New("raw line break in header")
		default:
			cur.WriteByte(c)
			i++
		}
	}
	ext, err = parseExtension(rest[i:])
	return header, ext, err
}

func isKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// keyAt reports the length of "key=" at s[0:], or 0.
func keyAt(s string) int {
	j := 0
	for j < len(s) && isKeyChar(s[j]) {
		j++
	}
	if j == 0 || j >= len(s) || s[j] != '=' {
		return 0
	}
	return j + 1
}

func parseExtension(s string) ([][2]string, error) {
	var out [][2]string
	if s == "" {
		return nil, nil
	}
	i := 0
	for i < len(s) {
		n := keyAt(s[i:])
		if n == 0 {
			return nil, errors.New("expected key= at " + strconv.Itoa(i))
		}
		key := s[i : i+n-1]
		i += n
		var v strings.Builder
		for i < len(s) {
			c := s[i]
			if c == '\\' {
				if i+1 >= len(s) {
					return nil, errors.New("dangling backslash in extension")
				}
				switch s[i+1] {
				case '\\', '=':
					v.WriteByte(s[i+1])
				case 'r':
					v.WriteByte('\r')
				case 'n':
					v.WriteByte('\n')
				default:
					return nil, errors.New("bad extension escape")
				}
				i += 2
				continue
			}
			if c == '=' {
				return nil, errors.New("unescaped = in a value")
			}
			if c == '\r' || c == '\n' {
				return nil, errors.New("raw line break in extension")
			}
			if c == ' ' && keyAt(s[i+1:]) > 0 {
				i++
				break
			}
			v.WriteByte(c)
			i++
		}
		out = append(out, [2]string{key, v.String()})
	}
	return out, nil
}

type parsedSyslog struct {
	pri                                 int
	timestamp, host, app, procid, msgid string
	sdID                                string
	params                              [][2]string
	msg                                 string
}

// parseFrame reads one octet-counted frame and returns the message and
// what follows it.
func parseFrame(b string) (msg, rest string, err error) {
	sp := strings.IndexByte(b, ' ')
	if sp <= 0 {
		return "", "", errors.New("no length")
	}
	n, err := strconv.Atoi(b[:sp])
	if err != nil || n < 0 || sp+1+n > len(b) {
		return "", "", errors.New("bad length")
	}
	return b[sp+1 : sp+1+n], b[sp+1+n:], nil
}

func parseRFC5424(m string) (parsedSyslog, error) {
	var p parsedSyslog
	if !strings.HasPrefix(m, "<") {
		return p, errors.New("no PRI")
	}
	end := strings.Index(m, ">1 ")
	if end < 0 {
		return p, errors.New("no version")
	}
	var err error
	if p.pri, err = strconv.Atoi(m[1:end]); err != nil {
		return p, err
	}
	rest := m[end+3:]
	fields := make([]string, 5)
	for i := range fields {
		sp := strings.IndexByte(rest, ' ')
		if sp < 0 {
			return p, errors.New("short header")
		}
		fields[i], rest = rest[:sp], rest[sp+1:]
	}
	p.timestamp, p.host, p.app, p.procid, p.msgid = fields[0], fields[1], fields[2], fields[3], fields[4]
	if strings.HasPrefix(rest, "-") {
		rest = rest[1:]
	} else {
		if !strings.HasPrefix(rest, "[") {
			return p, errors.New("no SD")
		}
		i := 1
		for i < len(rest) && rest[i] != ' ' && rest[i] != ']' {
			i++
		}
		p.sdID = rest[1:i]
		for i < len(rest) && rest[i] == ' ' {
			i++
			eq := strings.IndexByte(rest[i:], '=')
			if eq < 0 || i+eq+1 >= len(rest) || rest[i+eq+1] != '"' {
				return p, errors.New("bad SD param")
			}
			name := rest[i : i+eq]
			i += eq + 2
			var v strings.Builder
			for {
				if i >= len(rest) {
					return p, errors.New("unterminated SD value")
				}
				c := rest[i]
				if c == '\\' && i+1 < len(rest) && (rest[i+1] == '"' || rest[i+1] == '\\' || rest[i+1] == ']') {
					v.WriteByte(rest[i+1])
					i += 2
					continue
				}
				if c == '"' {
					i++
					break
				}
				if c == ']' {
					return p, errors.New("unescaped ] in SD value")
				}
				v.WriteByte(c)
				i++
			}
			p.params = append(p.params, [2]string{name, v.String()})
		}
		if i >= len(rest) || rest[i] != ']' {
			return p, errors.New("SD not closed")
		}
		rest = rest[i+1:]
	}
	if rest != "" {
		if rest[0] != ' ' {
			return p, errors.New("no space before MSG")
		}
		p.msg = rest[1:]
	}
	return p, nil
}
