-- The same events sorted by principal, for "what did this principal do" and
-- the blast radius of a principal or access key. A second table fed by a
-- materialized view rather than a projection, because 18.x servers have no
-- projections; it carries only the columns those queries read.
CREATE TABLE IF NOT EXISTS {{.DB}}.events_by_principal (
    day Date,
    time DateTime('UTC'),
    source {{.LC}},
    id String,
    principal String,
    principal_name String,
    access_key String,
    token_hmac String,
    action {{.LC}},
    resource String,
    source_ip String,
    ip FixedString(16),
    outcome {{.LC}},
    error String,
    failure_kind {{.LC}},
    auth UInt8{{if .Modern}},
    INDEX idx_access_key access_key TYPE bloom_filter(0.01) GRANULARITY 4{{end}}
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(day)
ORDER BY (principal, time, id){{if .Modern}}
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 10000{{end}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.events_by_principal_mv TO {{.DB}}.events_by_principal AS
SELECT day, time, source, id, principal, principal_name, access_key, token_hmac, action,
       resource, source_ip, ip, outcome, error, failure_kind, auth
FROM {{.DB}}.events
