-- The same events sorted by principal, for "what did this principal do" and
-- the blast radius of a principal or access key. A second table fed by a
-- materialized view rather than a projection, because 18.x servers have no
-- projections; it carries only the columns those queries read (each
-- column here costs insert throughput).
CREATE TABLE IF NOT EXISTS {{.DB}}.events_by_principal (
    day Date,
    time DateTime('UTC'),
    id String,
    principal String,
    access_key String,
    action {{.LC}},
    resource String,
    source_ip String,
    outcome {{.LC}},
    error String,
    failure_kind {{.LC}}{{if .Modern}},
    INDEX idx_access_key access_key TYPE bloom_filter(0.01) GRANULARITY 4{{end}}
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(day)
ORDER BY (principal, time, id){{if .Modern}}
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 10000{{end}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.events_by_principal_mv TO {{.DB}}.events_by_principal AS
SELECT day, time, id, principal, access_key, action, resource, source_ip, outcome, error, failure_kind
FROM {{.DB}}.events
