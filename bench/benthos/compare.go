package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
)

// compare reads two files of JSON lines, events of normalize (a) and of the
// Benthos pipeline (b), matches them by "id" and writes to w how many
// events each has, how many of a's are missing from b, and per field how
// many matched events differ, with one example each. A field one side
// leaves out counts as its zero value (normalize omits empty optional
// fields). It returns the number of differences.
func compare(a, b string, w io.Writer) (int, error) {
	ea, err := readEvents(a)
	if err != nil {
		return 0, err
	}
	eb, err := readEvents(b)
	if err != nil {
		return 0, err
	}
	diff := map[string]int{}
	example := map[string]string{}
	missing := 0
	for id, x := range ea {
		y, ok := eb[id]
		if !ok {
			missing++
			continue
		}
		for _, f := range fieldsOf(x, y) {
			vx, vy := valueOr(x, f), valueOr(y, f)
			if !reflect.DeepEqual(vx, vy) {
				diff[f]++
				if _, ok := example[f]; !ok {
					example[f] = fmt.Sprintf("%v / %v", vx, vy)
				}
			}
		}
	}
	fmt.Fprintf(w, "compare: %d events in %s, %d in %s, %d of the first missing from the second\n", len(ea), a, len(eb), b, missing)
	fields := make([]string, 0, len(diff))
	for f := range diff {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	n := missing
	for _, f := range fields {
		fmt.Fprintf(w, "compare: %s differs in %d events (e.g. %s)\n", f, diff[f], example[f])
		n += diff[f]
	}
	return n, nil
}

func readEvents(path string) (map[string]map[string]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	evs := map[string]map[string]any{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 1; sc.Scan(); line++ {
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		id, _ := ev["id"].(string)
		evs[id] = ev
	}
	return evs, sc.Err()
}

func fieldsOf(x, y map[string]any) []string {
	seen := map[string]bool{}
	var fs []string
	for _, m := range []map[string]any{x, y} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				fs = append(fs, k)
			}
		}
	}
	return fs
}

// valueOr is m[f], or the zero value of a field normalize leaves out when
// empty.
func valueOr(m map[string]any, f string) any {
	if v, ok := m[f]; ok && v != nil {
		return v
	}
	switch f {
	case "policies":
		return []any{}
	case "auth", "read_only", "source_is_service":
		return false
	case "http_status", "asn":
		return float64(0)
	}
	return ""
}
