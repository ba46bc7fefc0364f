-- resource_names: which raw resources each canonical name (events.resource_name)
-- stands for, one row per pair, written by the inserter beside each events
-- block (its distinct pairs: a handful of rows). who-accessed reads it first,
-- so a name in any form becomes a set of raw resources and the events
-- query stays a range read of the events sort key instead of a scan of the
-- window. Backfilled from the events stored before.
CREATE TABLE IF NOT EXISTS {{.DB}}.resource_names (
    resource_name String,
    resource String
) ENGINE = ReplacingMergeTree()
ORDER BY (resource_name, resource);

INSERT INTO {{.DB}}.resource_names (resource_name, resource) SELECT DISTINCT resource_name, resource FROM {{.DB}}.events;
