package sigma

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Correlation types.
const (
	CorrEventCount      = "event_count"
	CorrValueCount      = "value_count"
	CorrTemporal        = "temporal"
	CorrTemporalOrdered = "temporal_ordered"
)

// Correlation is a correlation rule's correlation section.
type Correlation struct {
	Type     string
	RuleRefs []string // ids or names, as written
	GroupBy  []string
	Timespan time.Duration
	// Conds is the count condition (AND of comparisons); empty for
	// temporal types means "all rules".
	Conds []CountCond
	// Field is value_count's field.
	Field    string
	Aliases  map[string]map[string]string // alias → rule name → field
	Generate bool

	rules   []*Rule // resolved
	groupBy [][]string
	field   []string
	// per input (as rules): the group-by paths and value_count's field
	inPaths [][][]string
	inField [][]string
}

// CountCond is one comparison of a correlation condition.
type CountCond struct {
	Op    string // gt, gte, lt, lte, eq, neq
	Value int64
}

func (c CountCond) holds(n int64) bool {
	switch c.Op {
	case "gt":
		return n > c.Value
	case "gte":
		return n >= c.Value
	case "lt":
		return n < c.Value
	case "lte":
		return n <= c.Value
	case "eq":
		return n == c.Value
	case "neq":
		return n != c.Value
	}
	return false
}

func (c *Correlation) holds(n int64) bool {
	for _, cc := range c.Conds {
		if !cc.holds(n) {
			return false
		}
	}
	return true
}

// lowerOnly reports whether the condition only bounds the count from
// above, which a stream evaluated on arrival cannot decide.
func (c *Correlation) upperOnly() bool {
	if len(c.Conds) == 0 {
		return false
	}
	for _, cc := range c.Conds {
		if cc.Op == "gt" || cc.Op == "gte" || cc.Op == "eq" {
			return false
		}
	}
	return true
}

var unsupportedCorr = map[string]bool{"value_sum": true, "value_avg": true, "value_percentile": true, "value_median": true}

func parseCorrelation(c *yaml.Node, rule *yaml.Node) (*Correlation, *perr) {
	if c.Kind != yaml.MappingNode {
		return nil, invalid(c, "correlation must be a mapping")
	}
	corr := &Correlation{}
	t := mapGet(c, "type")
	var e *perr
	if corr.Type, e = scalar(t, "correlation.type"); e != nil {
		return nil, e
	}
	switch corr.Type {
	case CorrEventCount, CorrValueCount, CorrTemporal, CorrTemporalOrdered:
	case "":
		return nil, invalid(c, "correlation.type is required")
	default:
		if unsupportedCorr[corr.Type] {
			return nil, unsupported(t, "correlation type %s is not supported (supported: event_count, value_count, temporal, temporal_ordered)", corr.Type)
		}
		return nil, invalid(t, "unknown correlation type %q", corr.Type)
	}
	if corr.RuleRefs, e = stringList(mapGet(c, "rules"), "correlation.rules"); e != nil {
		return nil, e
	}
	if len(corr.RuleRefs) == 0 {
		return nil, invalid(c, "correlation.rules names no rule")
	}
	if corr.GroupBy, e = stringList(mapGet(c, "group-by"), "correlation.group-by"); e != nil {
		return nil, e
	}
	ts := mapGet(c, "timespan")
	if ts == nil {
		ts = mapGet(c, "timeframe")
	}
	if ts == nil {
		return nil, invalid(c, "correlation.timespan is required")
	}
	if corr.Timespan, e = parseTimespan(ts); e != nil {
		return nil, e
	}
	g := mapGet(c, "generate")
	if g == nil {
		g = mapGet(rule, "generate")
	}
	if g != nil {
		b, err := strconv.ParseBool(g.Value)
		if err != nil || g.Kind != yaml.ScalarNode {
			return nil, invalid(g, "generate must be true or false")
		}
		corr.Generate = b
	}
	if cn := mapGet(c, "condition"); cn != nil {
		if cn.Kind != yaml.MappingNode {
			return nil, invalid(cn, "correlation.condition must be a mapping (e.g. gte: 10)")
		}
		for i := 0; i+1 < len(cn.Content); i += 2 {
			k, v := cn.Content[i], cn.Content[i+1]
			switch k.Value {
			case "field":
				if corr.Field, e = scalar(v, "condition.field"); e != nil {
					return nil, e
				}
			case "gt", "gte", "lt", "lte", "eq", "neq":
				n, err := strconv.ParseInt(v.Value, 10, 64)
				if err != nil || v.Kind != yaml.ScalarNode {
					return nil, invalid(v, "condition.%s must be an integer", k.Value)
				}
				corr.Conds = append(corr.Conds, CountCond{Op: k.Value, Value: n})
			default:
				return nil, invalid(k, "unknown condition operator %q (gt, gte, lt, lte, eq, neq, field)", k.Value)
			}
		}
	}
	switch corr.Type {
	case CorrEventCount, CorrValueCount:
		if len(corr.Conds) == 0 {
			return nil, invalid(c, "%s needs a condition", corr.Type)
		}
	}
	if corr.Type == CorrValueCount && corr.Field == "" {
		return nil, invalid(c, "value_count needs condition.field")
	}
	if corr.upperOnly() {
		return nil, unsupported(mapGet(c, "condition"), "a condition with only an upper bound (lt/lte) needs the end of the window, which findings raised on arrival cannot wait for")
	}
	if a := mapGet(c, "aliases"); a != nil {
		if a.Kind != yaml.MappingNode {
			return nil, invalid(a, "aliases must be a mapping")
		}
		corr.Aliases = map[string]map[string]string{}
		for i := 0; i+1 < len(a.Content); i += 2 {
			k, v := a.Content[i], a.Content[i+1]
			if v.Kind != yaml.MappingNode {
				return nil, invalid(v, "alias %s must map rule names to fields", k.Value)
			}
			m := map[string]string{}
			for j := 0; j+1 < len(v.Content); j += 2 {
				m[v.Content[j].Value] = v.Content[j+1].Value
			}
			corr.Aliases[k.Value] = m
		}
	}
	return corr, nil
}

// groupFields gives, for one referenced rule, the field paths of the
// group-by (aliases resolved).
func (c *Correlation) groupFields(ref *Rule) [][]string {
	out := make([][]string, len(c.GroupBy))
	for i, g := range c.GroupBy {
		f := g
		if a, ok := c.Aliases[g]; ok {
			if ff, ok := a[ref.Name]; ok {
				f = ff
			} else if ff, ok := a[ref.ID]; ok {
				f = ff
			}
		}
		out[i] = strings.Split(f, ".")
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
