-- Every normalized audit event (schema.Event), one row per event.
--
-- Sorted by resource then time: "who accessed this secret" reads one narrow
-- range. ReplacingMergeTree keyed by the full sort key (which ends in the
-- event id) removes rows that a retried insert wrote twice; runbook queries
-- count uniqExact(id) so their answers are exact even before a merge.
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
    http_status UInt16{{if .Modern}},
    INDEX idx_principal principal TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_access_key access_key TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_source_ip source_ip TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_ip ip TYPE minmax GRANULARITY 4,
    INDEX idx_token token_hmac TYPE bloom_filter(0.01) GRANULARITY 4{{end}}
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(day)
ORDER BY (resource, time, id){{if .Modern}}
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 10000{{end}}
