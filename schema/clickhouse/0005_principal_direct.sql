-- events_by_principal is written by the inserter itself, as a second block
-- next to each events block (on its own connection, concurrently), instead
-- of through a materialized view: the view ran inside the events insert,
-- on the same thread, and cost about 40% of its throughput. The inserter
-- writes both blocks with the same deduplication token and retries both
-- on failure, so a block lands once in each table (current servers by
-- token; on 18.x the ReplacingMergeTree key and uniqExact(id) in every
-- query). access_keys is now fed from events_by_principal, so it runs on
-- the second connection too. Every row already stored was copied by the
-- old views, so nothing needs a backfill.
DROP TABLE IF EXISTS {{.DB}}.events_by_principal_mv;

DROP TABLE IF EXISTS {{.DB}}.access_keys_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.access_keys_by_principal_mv TO {{.DB}}.access_keys AS
SELECT day, access_key, principal FROM {{.DB}}.events_by_principal WHERE access_key != ''
