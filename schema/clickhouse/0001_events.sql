-- Every normalized audit event (schema.Event), one row per event.
--
-- Sorted by resource then time: "who accessed this secret" reads one narrow
-- range. ReplacingMergeTree keyed by the full sort key (which ends in the
-- event id) removes rows that a retried insert wrote twice; runbook queries
-- count uniqExact(id) so their answers are exact even before a merge.
-- No skip index here: sorted by resource, every granule holds events of
-- most principals, keys and addresses, so a bloom filter on them would skip
-- nothing and only slow inserts (measured). Principal and access-key lookups
-- go to events_by_principal, where they do pay.
-- ip is the source address as 16 bytes (IPv4 mapped into IPv6, zeros when
-- the record has none), so CIDR queries are byte-range comparisons that
-- work on every server version.
CREATE TABLE IF NOT EXISTS {{.DB}}.events (
    day Date,
    time DateTime('UTC'),
    source {{.LC}},
    id String,
    principal String,
    principal_name String,
    principal_type {{.LC}},
    session String,
    account {{.LC}},
    access_key String,
    policies Array(String),
    token_hmac String,
    auth_method {{.LC}},
    action {{.LC}},
    resource String,
    mount {{.LC}},
    mount_type {{.LC}},
    namespace {{.LC}},
    region {{.LC}},
    source_ip String,
    source_ip_raw String,
    ip FixedString(16),
    source_is_service UInt8,
    user_agent String,
    outcome {{.LC}},
    error String,
    failure_kind {{.LC}},
    auth UInt8,
    read_only UInt8,
    http_status UInt16
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(day)
ORDER BY (resource, time, id){{if .Modern}}
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 10000{{end}}
