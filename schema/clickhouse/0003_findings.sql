-- Every finding (schema.Finding). Revisions of one incident share the
-- dedupe_key; a retried insert of the same revision is collapsed by the
-- ReplacingMergeTree key (detector, id, revision). Attributes are two
-- parallel arrays because 18.x servers have no Map type.
CREATE TABLE IF NOT EXISTS {{.DB}}.findings (
    day Date,
    time DateTime('UTC'),
    id String,
    detector {{.LC}},
    severity {{.LC}},
    principal String,
    principal_name String,
    resource String,
    source_ip String,
    source {{.LC}},
    account {{.LC}},
    count UInt32,
    event_ids Array(String),
    summary String,
    reason String,
    dedupe_key String,
    revision UInt32,
    first_time DateTime('UTC'),
    last_time DateTime('UTC'),
    late UInt8,
    attr_keys Array(String),
    attr_values Array(String)
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(day)
ORDER BY (detector, time, id, revision){{if .Modern}}
SETTINGS non_replicated_deduplication_window = 1000{{end}}
