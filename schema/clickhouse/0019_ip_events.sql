-- ip_events: the columns of the ip query, sorted by address, written by
-- the inserter beside each events block (like principal_events). events
-- is sorted by resource, so an address was a scan of the window's ip
-- column and then of the matching granules' other columns (10M generated
-- events, 18.16: 0.6-0.9 s for 7 days). Week partitions and 1,024-row
-- granules as principal_events. Network context (country, AS) is here too:
-- the ip query by --asn or --country scans these narrow rows instead of
-- the events table. Backfilled from the events stored before.
CREATE TABLE IF NOT EXISTS {{.DB}}.ip_events (
    day Date,
    time DateTime('UTC'),
    ip FixedString(16),
    id String,
    principal String,
    principal_name String,
    resource String,
    source_ip String,
    outcome {{.LC}},
    country {{.LC}},
    asn UInt32,
    as_org String
) ENGINE = ReplacingMergeTree()
PARTITION BY toMonday(day)
ORDER BY (ip, time, id)
SETTINGS index_granularity = 1024{{if .Modern}}, non_replicated_deduplication_window = 10000{{end}};

INSERT INTO {{.DB}}.ip_events (day, time, ip, id, principal, principal_name, resource, source_ip, outcome, country, asn, as_org)
SELECT day, time, ip, id, principal, principal_name, resource, source_ip, outcome, country, asn, as_org FROM {{.DB}}.events
