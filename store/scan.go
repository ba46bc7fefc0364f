package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"auditwatch/schema"
	"auditwatch/store/chsql"
)

// EventScanner reads stored events back in event-time order (a baseline
// learns from them).
type EventScanner interface {
	ScanEvents(ctx context.Context, since, until time.Time, fn func(evs []schema.Event) error) error
}

// scanSQL pages through events in (time, id) order after a keyset cursor.
// Times are whole seconds (the column is DateTime); policies come joined
// by the unit separator (Vault policy names never hold it).
const scanSQL = `SELECT toUInt32(time) AS t, source, id, principal, principal_name, principal_type, session, account,
       access_key, arrayStringConcat(policies, '\x1F') AS pol, token_hmac, auth_method, action, resource, mount,
       mount_type, namespace, region, source_ip, source_ip_raw, toUInt64(source_is_service) AS svc, user_agent,
       outcome, error, failure_kind, toUInt64(auth) AS au, toUInt64(read_only) AS ro, toUInt64(http_status) AS hs,
       resource_name, key_principal, key_issue, country, toUInt64(asn) AS asn_, as_org, net_label, token_accessor
FROM auditwatch.events
WHERE day >= toDate(toDateTime({since:UInt32}, 'UTC')) AND day <= toDate(toDateTime({until:UInt32}, 'UTC'))
  AND time >= toDateTime({since:UInt32}, 'UTC') AND time <= toDateTime({until:UInt32}, 'UTC')
  AND (time > toDateTime({after:UInt32}, 'UTC') OR (time = toDateTime({after:UInt32}, 'UTC') AND id > {after_id:String}))
ORDER BY time, id
LIMIT {limit:UInt64}`

// scanRecordsSQL is scanSQL's keyset over the original records (the raw
// column) alone.
const scanRecordsSQL = `SELECT toUInt32(time) AS t, source, id, raw
FROM auditwatch.events
WHERE day >= toDate(toDateTime({since:UInt32}, 'UTC')) AND day <= toDate(toDateTime({until:UInt32}, 'UTC'))
  AND time >= toDateTime({since:UInt32}, 'UTC') AND time <= toDateTime({until:UInt32}, 'UTC')
  AND (time > toDateTime({after:UInt32}, 'UTC') OR (time = toDateTime({after:UInt32}, 'UTC') AND id > {after_id:String}))
ORDER BY time, id
LIMIT {limit:UInt64}`

// ScanEvents hands fn the events stored with times in [since, until], in
// (time, id) order, a page at a time; a row a retried insert wrote twice
// (not merged yet) is handed on once. Event times are whole seconds.
func (d *DB) ScanEvents(ctx context.Context, since, until time.Time, fn func(evs []schema.Event) error) error {
	return d.scanKeyset(ctx, scanSQL, since, until, func(rows [][]any) error {
		evs := make([]schema.Event, 0, len(rows))
		for _, row := range rows {
			ev, err := eventRow(row)
			if err != nil {
				return fmt.Errorf("storage: scan events: %w", err)
			}
			evs = append(evs, ev)
		}
		return fn(evs)
	})
}

// ScanRecords hands fn the original records (raw column) of the events
// stored with times in [since, until], in the order and with the
// duplicate handling of ScanEvents; noRaw counts the events of the page
// stored without their record (raw_records: false).
func (d *DB) ScanRecords(ctx context.Context, since, until time.Time, fn func(raws []string, noRaw int) error) error {
	return d.scanKeyset(ctx, scanRecordsSQL, since, until, func(rows [][]any) error {
		raws := make([]string, 0, len(rows))
		noRaw := 0
		for _, row := range rows {
			if len(row) != 4 {
				return fmt.Errorf("storage: scan records: %w: %d columns", errScanColumns, len(row))
			}
			raw := cellString(row[3])
			if raw == "" {
				noRaw++
				continue
			}
			raws = append(raws, raw)
		}
		return fn(raws, noRaw)
	})
}

// scanKeyset pages query (columns t and id at 0 and 2; the since, until,
// after, after_id and limit parameters of scanSQL) from since to until and
// hands handle each page's rows, without a row repeating the one before
// it (a block written twice and not merged yet).
func (d *DB) scanKeyset(ctx context.Context, query string, since, until time.Time, handle func(rows [][]any) error) error {
	page := min(uint64(50_000), d.cfg.Query.MaxResultRows)
	if page == 0 {
		page = 50_000
	}
	s, u := uint32(chsql.ClampTime(since).Unix()), uint32(chsql.ClampTime(until).Unix())
	sql := WithDB(query, d.cfg.Database)
	after, afterID := s, ""
	first := true
	for {
		ps := chsql.Params{chsql.U32("since", s), chsql.U32("until", u), chsql.U32("after", after),
			chsql.Str("after_id", afterID), chsql.U64("limit", page)}
		if first {
			// The first page includes the first second whole.
			ps[2] = chsql.U32("after", s-min(s, 1))
			first = false
		}
		res, err := d.b.Query(ctx, sql, ps)
		if err != nil {
			return fmt.Errorf("storage: scan events: %w", err)
		}
		rows := make([][]any, 0, len(res.Rows))
		for _, row := range res.Rows {
			if len(row) < 3 {
				return fmt.Errorf("storage: scan events: %w: %d columns", errScanColumns, len(row))
			}
			t, id := uint32(cellUint(row[0])), cellString(row[2])
			if t == after && id == afterID {
				continue // a duplicate row of the last event
			}
			after, afterID = t, id
			rows = append(rows, row)
		}
		if len(rows) > 0 {
			if err := handle(rows); err != nil {
				return err
			}
		}
		if uint64(len(res.Rows)) < page {
			return nil
		}
	}
}

var errScanColumns = errors.New("unexpected row shape")

// eventRow is one scanSQL row as an event (resource_name, column 28, is
// derived from the event and not read back).
func eventRow(r []any) (schema.Event, error) {
	if len(r) != 36 {
		return schema.Event{}, fmt.Errorf("%w: %d columns", errScanColumns, len(r))
	}
	str := func(i int) string { return cellString(r[i]) }
	num := func(i int) uint64 { return cellUint(r[i]) }
	ev := schema.Event{
		Time:   time.Unix(int64(num(0)), 0).UTC(),
		Source: str(1), ID: str(2), Principal: str(3), PrincipalName: str(4), PrincipalType: str(5),
		Session: str(6), Account: str(7), AccessKey: str(8), TokenHMAC: str(10), AuthMethod: str(11),
		Action: str(12), Resource: str(13), Mount: str(14), MountType: str(15), Namespace: str(16),
		Region: str(17), SourceIP: str(18), SourceIPRaw: str(19), SourceIsService: num(20) != 0,
		UserAgent: str(21), Outcome: str(22), Error: str(23), FailureKind: str(24), Auth: num(25) != 0,
		ReadOnly: num(26) != 0, HTTPStatus: int(num(27)), KeyPrincipal: str(29), KeyIssue: str(30),
		Country: str(31), ASN: int(num(32)), ASOrg: str(33), NetLabel: str(34), TokenAccessor: str(35),
	}
	if p := str(9); p != "" {
		ev.Policies = strings.Split(p, "\x1f")
	}
	return ev, nil
}

// cellString is a result cell as text.
func cellString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// cellUint is a numeric result cell (any of the forms the backends return).
func cellUint(v any) uint64 {
	switch v := v.(type) {
	case uint64:
		return v
	case int64:
		return uint64(max(v, 0))
	case uint32:
		return uint64(v)
	case uint16:
		return uint64(v)
	case uint8:
		return uint64(v)
	case float64:
		return uint64(max(v, 0))
	case string:
		n, _ := strconv.ParseUint(v, 10, 64)
		return n
	}
	return 0
}
