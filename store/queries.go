package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"auditwatch/internal/resname"
	"auditwatch/schema"
	chschema "auditwatch/schema/clickhouse"
	"auditwatch/store/chsql"
)

// ErrUnknownQuery is returned for a query name not in the catalog.
var ErrUnknownQuery = errors.New("unknown query")

// ErrQueryArgs is returned when a query's required argument is missing or bad.
var ErrQueryArgs = errors.New("bad query arguments")

// QueryArgs are the inputs of a runbook query. All of them reach the
// database as bound parameters.
type QueryArgs struct {
	// Since is the start of the time window (events at or after it).
	Since time.Time
	// Until is the end of the window (at or before it; zero: no end).
	Until time.Time
	// Severity keeps findings at or above it; Detector keeps one
	// detector's findings (findings only).
	Severity string
	Detector string
	// ID is a finding id or dedupe key (the finding query).
	ID        string
	Resource  string
	Principal string
	// IP is an address or a CIDR prefix; ASN and Country select the
	// addresses of an autonomous system or a country instead (the ip
	// query; network context must have been on when events were stored).
	IP        string
	ASN       uint32
	Country   string
	AccessKey string
	// Limit caps the rows returned (0 means 1000).
	Limit uint64
}

// QuerySpec is one runbook query.
type QuerySpec struct {
	Name    string
	Summary string
	// Needs lists the QueryArgs fields the query requires (one of them,
	// when there are several).
	Needs []string
	// DefaultSince is the window used when no --since is given.
	DefaultSince time.Duration
	// SQL is the text with {name:Type} placeholders and the database
	// written as "auditwatch." (replaced by the configured database).
	SQL string
	// Variants are alternate SQL texts chosen by which argument is set.
	Variants map[string]string
}

// noEnd is the window's end without --until: 2100-01-01, inside every
// server's Date range (18.x Dates overflow near 2106).
const noEnd = 4102444800

// Window filters by day partition first (pruning) and then by time.
const window = `day >= toDate(toDateTime({since:UInt32}, 'UTC')) AND day <= toDate(toDateTime({until:UInt32}, 'UTC'))
  AND time >= toDateTime({since:UInt32}, 'UTC') AND time <= toDateTime({until:UInt32}, 'UTC')`

// blastSQL is the blast-radius query over principal_events for one
// match expression: one scan, each event fanned out (arrayJoin) into its
// resource, address, principal, action and failure, then grouped.
func blastSQL(match string) string {
	return `SELECT kind, value, uniqExact(id) AS events, uniqExactIf(id, failed) AS failures,
       min(time) AS first_seen, max(time) AS last_seen
FROM (
    SELECT id, time, outcome = 'failure' AS failed,
           arrayJoin([('resource', resource), ('source_ip', source_ip), ('principal', principal), ('action', action),
                      ('failure', if(outcome = 'failure', concat(action, ' ', resource, ' ', failure_kind, ' ', error), ''))]) AS kv,
           tupleElement(kv, 1) AS kind, tupleElement(kv, 2) AS value
    FROM auditwatch.principal_events
    WHERE ` + match + ` AND ` + window + `
)
WHERE NOT (kind = 'failure' AND value = '')
GROUP BY kind, value
ORDER BY kind, events DESC, value
LIMIT {limit:UInt64}`
}

// networkSQL is the ip query for the addresses of an AS or a country:
// each principal and resource with the addresses and networks seen.
func networkSQL(match string) string {
	return `SELECT principal, any(principal_name) AS principal_name, resource,
       uniqExact(id) AS events, uniqExactIf(id, outcome = 'failure') AS failures,
       arrayStringConcat(arraySlice(arraySort(groupUniqArray(source_ip)), 1, 5), ' ') AS source_ips,
       any(country) AS country_code, any(asn) AS as_number, any(as_org) AS as_name,
       min(time) AS first_seen, max(time) AS last_seen
FROM auditwatch.ip_events
WHERE ` + match + ` AND ` + window + `
GROUP BY principal, resource
ORDER BY events DESC, principal, resource
LIMIT {limit:UInt64}`
}

// Queries is the runbook query catalog; docs/RUNBOOK.md shows each SQL.
var Queries = map[string]QuerySpec{
	"who-accessed": {
		Name:         "who-accessed",
		Summary:      "principals and source IPs that touched a resource, with counts and first/last time",
		Needs:        []string{"resource"},
		DefaultSince: 24 * time.Hour,
		SQL: `SELECT principal, any(principal_name) AS principal_name, source_ip,
       uniqExact(id) AS events, uniqExactIf(id, outcome = 'failure') AS failures,
       arrayStringConcat(arraySlice(arraySort(groupUniqArray(action)), 1, 5), ' ') AS actions,
       min(time) AS first_seen, max(time) AS last_seen
FROM auditwatch.events
WHERE (resource = {resource:String} OR resource IN (
        SELECT resource FROM auditwatch.resource_names
        WHERE resource_name IN ({name0:String}, {name1:String}, {name2:String}, {name3:String})))
  AND ` + window + `
GROUP BY principal, source_ip
ORDER BY events DESC, principal, source_ip
LIMIT {limit:UInt64}`,
	},
	"principal": {
		Name:         "principal",
		Summary:      "everything a principal did, by action and resource",
		Needs:        []string{"principal"},
		DefaultSince: 7 * 24 * time.Hour,
		SQL: `SELECT action, resource, uniqExact(id) AS events, uniqExactIf(id, outcome = 'failure') AS failures,
       arrayStringConcat(arraySlice(arraySort(groupUniqArray(source_ip)), 1, 5), ' ') AS source_ips,
       min(time) AS first_seen, max(time) AS last_seen
FROM auditwatch.principal_events
WHERE principal = {principal:String} AND ` + window + `
GROUP BY action, resource
ORDER BY events DESC, action, resource
LIMIT {limit:UInt64}`,
	},
	"ip": {
		Name:         "ip",
		Summary:      "every principal and resource seen from an address or CIDR",
		Needs:        []string{"ip", "asn", "country"},
		DefaultSince: 7 * 24 * time.Hour,
		Variants: map[string]string{
			"asn":     networkSQL("asn = {asn:UInt32}"),
			"country": networkSQL("country = {country:String}"),
		},
		SQL: `SELECT principal, any(principal_name) AS principal_name, resource,
       uniqExact(id) AS events, uniqExactIf(id, outcome = 'failure') AS failures,
       arrayStringConcat(arraySlice(arraySort(groupUniqArray(source_ip)), 1, 5), ' ') AS source_ips,
       min(time) AS first_seen, max(time) AS last_seen
FROM auditwatch.ip_events
WHERE ip >= unhex({ip_lo:String}) AND ip <= unhex({ip_hi:String}) AND ` + window + `
GROUP BY principal, resource
ORDER BY events DESC, principal, resource
LIMIT {limit:UInt64}`,
	},
	"blast-radius": {
		Name:         "blast-radius",
		Summary:      "every resource, IP, principal, action and failure of an access key or principal",
		Needs:        []string{"access_key", "principal"},
		DefaultSince: 30 * 24 * time.Hour,
		Variants: map[string]string{
			"access_key": blastSQL(`principal IN (
        SELECT principal FROM auditwatch.access_keys
        WHERE access_key = {access_key:String} AND day >= toDate(toDateTime({since:UInt32}, 'UTC')))
      AND access_key = {access_key:String}`),
			"principal": blastSQL("principal = {principal:String}"),
		},
	},
	"failures": {
		Name:         "failures",
		Summary:      "top failing principals and source IPs",
		DefaultSince: time.Hour,
		SQL: `SELECT principal, any(principal_name) AS principal_name, source_ip,
       uniqExact(id) AS failures, uniqExact(resource) AS resources,
       arrayStringConcat(arraySlice(arraySort(groupUniqArray(failure_kind)), 1, 5), ' ') AS kinds,
       min(time) AS first_seen, max(time) AS last_seen
FROM auditwatch.events
WHERE outcome = 'failure' AND ` + window + `
GROUP BY principal, source_ip
ORDER BY failures DESC, principal, source_ip
LIMIT {limit:UInt64}`,
	},
	"credentials": {
		Name:         "credentials",
		Summary:      "access keys and Vault token accessors a principal used: what to revoke (--format commands prints the commands)",
		Needs:        []string{"principal"},
		DefaultSince: 30 * 24 * time.Hour,
		SQL: `SELECT kind, value, uniqExact(id) AS events, min(time) AS first_seen, max(time) AS last_seen
FROM (
    SELECT id, time, arrayJoin([('access_key', access_key), ('token_accessor', token_accessor)]) AS kv,
           tupleElement(kv, 1) AS kind, tupleElement(kv, 2) AS value
    FROM auditwatch.principal_events
    WHERE principal = {principal:String} AND ` + window + `
)
WHERE value != ''
GROUP BY kind, value
ORDER BY kind, last_seen DESC, value
LIMIT {limit:UInt64}`,
	},
	"finding": {
		Name:         "finding",
		Summary:      "every revision of one finding (by id or dedupe key), with its reason and event ids",
		Needs:        []string{"id"},
		DefaultSince: 30 * 24 * time.Hour,
		SQL: `SELECT revision, id, time, detector, severity, principal, source_ip, resource, count,
       first_time AS first_seen, last_time AS last_seen, reason, summary,
       arrayStringConcat(arraySlice(event_ids, 1, 20), ' ') AS event_ids, dedupe_key
FROM (
    SELECT *
    FROM auditwatch.findings
    WHERE dedupe_key IN (
        SELECT dedupe_key FROM auditwatch.findings
        WHERE (id = {id:String} OR dedupe_key = {id:String}) AND ` + window + `)
      AND ` + window + `
    ORDER BY revision, time
    LIMIT 1 BY revision
)
ORDER BY revision
LIMIT {limit:UInt64}`,
	},
	"findings": {
		Name:         "findings",
		Summary:      "findings raised (latest revision of each incident; Sigma findings with the rule's title and author)",
		DefaultSince: 24 * time.Hour,
		SQL: `SELECT id, detector, severity,
       attr_values[indexOf(attr_keys, 'rule_title')] AS rule_title, attr_values[indexOf(attr_keys, 'author')] AS author,
       principal, source_ip, resource, count, revision,
       first_time AS first_seen, last_time AS last_seen, reason, summary,
       arrayStringConcat(arraySlice(event_ids, 1, 20), ' ') AS event_ids, dedupe_key, time
FROM (
    SELECT *
    FROM auditwatch.findings
    WHERE ` + window + `
      AND ({detector:String} = '' OR detector = {detector:String})
      AND indexOf(['info', 'low', 'medium', 'high', 'critical'], severity) >= {min_severity:UInt32}
    ORDER BY revision DESC, time DESC
    LIMIT 1 BY dedupe_key
)
ORDER BY time DESC, dedupe_key
LIMIT {limit:UInt64}`,
	},
}

// nameParams binds name0..name3: every canonical name the typed resource
// can mean (resname.Candidates), the first repeated to fill the slots.
func nameParams(resource string) chsql.Params {
	c := resname.Candidates(resource)
	ps := make(chsql.Params, 0, resname.MaxCandidates)
	for i := 0; i < resname.MaxCandidates; i++ {
		v := c[0]
		if i < len(c) {
			v = c[i]
		}
		ps = append(ps, chsql.Str(fmt.Sprintf("name%d", i), v))
	}
	return ps
}

// nearSQL lists stored resource names containing a word of the asked
// name, for an empty who-accessed answer.
const nearSQL = `SELECT resource_name, uniqExact(id) AS events
FROM auditwatch.events
WHERE position(lower(resource_name), lower({needle:String})) > 0 AND ` + window + `
GROUP BY resource_name
ORDER BY events DESC, resource_name
LIMIT 5`

// nearNeedle is the word of a resource name to look for: the longest path
// segment after the mount (or the whole name).
func nearNeedle(resource string) string {
	c := resname.Candidates(resource)
	name := c[len(c)-1]
	if i := strings.LastIndex(name, ":"); i >= 0 {
		name = name[i+1:]
	}
	segs := strings.Split(strings.Trim(name, "/"), "/")
	if len(segs) > 1 {
		segs = segs[1:]
	}
	best := ""
	for _, s := range segs {
		if len(s) > len(best) {
			best = s
		}
	}
	return best
}

// QueryNames lists the catalog in a stable order.
func QueryNames() []string {
	var out []string
	for n := range Queries {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// WithDB rewrites the catalog's "auditwatch." database prefix.
func WithDB(sql, db string) string {
	if db == "auditwatch" {
		return sql
	}
	return strings.ReplaceAll(sql, "auditwatch.", db+".")
}

// Clustered rewrites a catalog query for a cluster (docs/STORAGE.md
// "Beyond one server"): the outer query reads the Distributed tables and
// each IN subquery the shard's own replicated table, so every shard
// evaluates it against its own rows, where the lookup rows of its events
// are (one writer writes a shard's events, resource names, access keys and
// findings). A plain IN of a Distributed table inside a distributed query is
// refused by the server, and GLOBAL IN reads no index on 18.16 (measured:
// blast-radius by key 0.07 s with IN, 0.5 s with GLOBAL IN, 10M events).
func Clustered(sql, db string) string {
	re := regexp.MustCompile(`( IN \(\s*SELECT [^()]*? FROM ` + regexp.QuoteMeta(db) + `\.)(\w+)`)
	return re.ReplaceAllString(sql, "${1}${2}"+chschema.LocalSuffix)
}

// Build returns the SQL and bound parameters of a runbook query.
func Build(name string, a QueryArgs, db string) (string, chsql.Params, error) {
	spec, ok := Queries[name]
	if !ok {
		return "", nil, fmt.Errorf("%w %q (have %s)", ErrUnknownQuery, name, strings.Join(QueryNames(), ", "))
	}
	if a.Since.IsZero() {
		return "", nil, fmt.Errorf("%s: since is required: %w", name, ErrQueryArgs)
	}
	if a.Limit == 0 {
		a.Limit = 1000
	}
	since := chsql.ClampTime(a.Since).Unix()
	until := int64(noEnd)
	if !a.Until.IsZero() {
		if a.Until.Before(a.Since) {
			return "", nil, fmt.Errorf("%s: --until %s is before --since %s: %w", name, a.Until.UTC().Format(time.RFC3339), a.Since.UTC().Format(time.RFC3339), ErrQueryArgs)
		}
		until = chsql.ClampTime(a.Until).Unix()
	}
	ps := chsql.Params{chsql.U32("since", uint32(since)), chsql.U32("until", uint32(until)), chsql.U64("limit", a.Limit)}
	if name != "findings" && (a.Severity != "" || a.Detector != "") {
		return "", nil, fmt.Errorf("%s: --severity and --detector apply to findings only: %w", name, ErrQueryArgs)
	}
	if name != "finding" && a.ID != "" {
		return "", nil, fmt.Errorf("%s: --id applies to finding only: %w", name, ErrQueryArgs)
	}
	sql := spec.SQL
	switch name {
	case "who-accessed":
		if a.Resource == "" {
			return "", nil, fmt.Errorf("%s: --resource is required: %w", name, ErrQueryArgs)
		}
		ps = append(ps, chsql.Str("resource", a.Resource))
		ps = append(ps, nameParams(a.Resource)...)
	case "principal", "credentials":
		if a.Principal == "" {
			return "", nil, fmt.Errorf("%s: --principal is required: %w", name, ErrQueryArgs)
		}
		ps = append(ps, chsql.Str("principal", a.Principal))
	case "ip":
		set := 0
		for _, v := range []bool{a.IP != "", a.ASN != 0, a.Country != ""} {
			if v {
				set++
			}
		}
		switch {
		case set > 1:
			return "", nil, fmt.Errorf("%s: give one of --ip, --asn and --country: %w", name, ErrQueryArgs)
		case a.ASN != 0:
			sql = spec.Variants["asn"]
			ps = append(ps, chsql.U32("asn", a.ASN))
		case a.Country != "":
			cc := strings.ToUpper(strings.TrimSpace(a.Country))
			if len(cc) != 2 || cc[0] < 'A' || cc[0] > 'Z' || cc[1] < 'A' || cc[1] > 'Z' {
				return "", nil, fmt.Errorf("%s: --country %q: want a two-letter ISO 3166 code: %w", name, a.Country, ErrQueryArgs)
			}
			sql = spec.Variants["country"]
			ps = append(ps, chsql.Str("country", cc))
		case a.IP == "":
			return "", nil, fmt.Errorf("%s: --ip, --asn or --country is required: %w", name, ErrQueryArgs)
		}
		if a.IP == "" {
			break
		}
		lo, hi, err := chsql.IPRange(a.IP)
		if err != nil {
			return "", nil, fmt.Errorf("%s: --ip: %w", name, errors.Join(err, ErrQueryArgs))
		}
		ps = append(ps, chsql.Str("ip_lo", fmt.Sprintf("%X", lo[:])), chsql.Str("ip_hi", fmt.Sprintf("%X", hi[:])))
	case "finding":
		if a.ID == "" {
			return "", nil, fmt.Errorf("%s: --id is required: %w", name, ErrQueryArgs)
		}
		ps = append(ps, chsql.Str("id", a.ID))
	case "findings":
		rank := 0
		if a.Severity != "" {
			sev, err := schema.ParseSeverity(a.Severity)
			if err != nil {
				return "", nil, fmt.Errorf("%s: --severity: %w", name, errors.Join(err, ErrQueryArgs))
			}
			rank = sev.Rank()
		}
		// indexOf is 1-based: info is 1, as Rank.
		ps = append(ps, chsql.Str("detector", a.Detector), chsql.U32("min_severity", uint32(rank)))
	case "blast-radius":
		switch {
		case a.AccessKey != "" && a.Principal != "":
			return "", nil, fmt.Errorf("%s: give --access-key or --principal, not both: %w", name, ErrQueryArgs)
		case a.AccessKey != "":
			sql = spec.Variants["access_key"]
			ps = append(ps, chsql.Str("access_key", a.AccessKey))
		case a.Principal != "":
			sql = spec.Variants["principal"]
			ps = append(ps, chsql.Str("principal", a.Principal))
		default:
			return "", nil, fmt.Errorf("%s: --access-key or --principal is required: %w", name, ErrQueryArgs)
		}
	}
	sql = WithDB(sql, db)
	if err := chsql.Check(sql, ps); err != nil {
		return "", nil, err
	}
	return sql, ps, nil
}

// Query runs a runbook query.
func (d *DB) Query(ctx context.Context, name string, a QueryArgs) (*Result, error) {
	if a.Limit == 0 || a.Limit > d.cfg.Query.MaxResultRows {
		a.Limit = min(d.cfg.Query.MaxResultRows, 1000)
	}
	sql, ps, err := Build(name, a, d.cfg.Database)
	if err != nil {
		return nil, err
	}
	if d.cfg.Backend == BackendClickHouse && d.cfg.ClickHouse.Cluster.Enabled() {
		sql = Clustered(sql, d.cfg.Database)
	}
	res, err := d.b.Query(ctx, sql, ps)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", name, err)
	}
	if name == "who-accessed" && len(res.Rows) == 0 {
		if needle := nearNeedle(a.Resource); len(needle) >= 2 {
			near, err := d.b.Query(ctx, WithDB(nearSQL, d.cfg.Database), chsql.Params{
				ps[0], ps[1], chsql.Str("needle", needle)})
			if err == nil && len(near.Rows) > 0 {
				var names []string
				for _, r := range near.Rows {
					names = append(names, fmt.Sprint(r[0]))
				}
				res.Notes = append(res.Notes, fmt.Sprintf("no rows; %d resources match %q: %s", len(names), needle, strings.Join(names, ", ")))
			}
		}
	}
	return res, nil
}
