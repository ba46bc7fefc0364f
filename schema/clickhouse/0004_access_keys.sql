-- Which principal used which access key, by day: a small table sorted by
-- key, so a blast radius by access key reads events_by_principal through
-- its principal index instead of scanning every key (18.x servers have no
-- bloom-filter index to skip with). Filled by a materialized view, then
-- backfilled from events already stored (a key seen twice is harmless:
-- the table is only read as a set).
CREATE TABLE IF NOT EXISTS {{.DB}}.access_keys (
    day Date,
    access_key String,
    principal String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(day)
ORDER BY (access_key, principal);

CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.access_keys_mv TO {{.DB}}.access_keys AS
SELECT day, access_key, principal FROM {{.DB}}.events WHERE access_key != '';

INSERT INTO {{.DB}}.access_keys (day, access_key, principal)
SELECT day, access_key, principal FROM {{.DB}}.events WHERE access_key != ''
