package store

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"auditwatch/internal/escape"
)

// Formats of WriteResult.
const (
	FormatTable = "table"
	FormatJSON  = "json"
	FormatCSV   = "csv"
)

// CellText renders one value as text (times as RFC 3339 UTC).
func CellText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	case uint64:
		return strconv.FormatUint(x, 10)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// WriteResult writes r as an aligned table (every cell escaped for the
// terminal), JSON (an array of objects; numbers stay numbers; strings
// escaped for JSON, so no raw control or bidi character) or CSV (RFC
// 4180, with a header; string cells escaped for CSV: control, zero-width
// and bidi characters as visible codes, and cells that a spreadsheet would
// run as a formula prefixed with '). Escaping is internal/escape's.
func WriteResult(w io.Writer, r *Result, format string) error {
	switch format {
	case FormatJSON:
		out := make([]map[string]any, 0, len(r.Rows))
		for _, row := range r.Rows {
			m := make(map[string]any, len(row))
			for i, v := range row {
				switch x := v.(type) {
				case time.Time:
					v = x.UTC().Format(time.RFC3339)
				case string:
					v = escape.String(escape.JSON, x)
				}
				m[r.Columns[i]] = v
			}
			out = append(out, m)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	case FormatCSV:
		cw := csv.NewWriter(w)
		cw.UseCRLF = true // RFC 4180 records end in CRLF
		if err := cw.Write(r.Columns); err != nil {
			return err
		}
		for _, row := range r.Rows {
			rec := make([]string, len(row))
			for i, v := range row {
				s := CellText(v)
				if _, isStr := v.(string); isStr {
					s = escape.String(escape.CSV, s)
				}
				rec[i] = s
			}
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
		cw.Flush()
		return cw.Error()
	case FormatTable, "":
		cells := make([][]string, 0, len(r.Rows)+1)
		cells = append(cells, r.Columns)
		for _, row := range r.Rows {
			rec := make([]string, len(row))
			for i, v := range row {
				rec[i] = escape.String(escape.Terminal, CellText(v))
			}
			cells = append(cells, rec)
		}
		width := make([]int, len(r.Columns))
		for _, row := range cells {
			for i, c := range row {
				width[i] = max(width[i], utf8.RuneCountInString(c))
			}
		}
		var b strings.Builder
		for _, row := range cells {
			for i, c := range row {
				if i > 0 {
					b.WriteString("  ")
				}
				b.WriteString(c)
				if i < len(row)-1 {
					b.WriteString(strings.Repeat(" ", width[i]-utf8.RuneCountInString(c)))
				}
			}
			b.WriteByte('\n')
		}
		if len(r.Rows) == 0 && len(r.Notes) == 0 {
			b.WriteString("(no rows)\n")
		}
		for _, n := range r.Notes {
			b.WriteString(escape.String(escape.Terminal, n) + "\n")
		}
		_, err := io.WriteString(w, b.String())
		return err
	}
	return fmt.Errorf("unknown format %q (want table, json or csv)", format)
}
