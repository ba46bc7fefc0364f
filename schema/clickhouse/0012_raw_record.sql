-- raw: the original record each event was made of (a CloudTrail record, or
-- the Vault/OpenBao response entry), so that Sigma rules and backtests
-- from the store see what replay sees. Empty when the pipeline keeps no
-- records (raw_records: false) and for rows stored before. Every
-- MergeTree column is compressed by blocks (LZ4 by default); current
-- servers get ZSTD, which roughly halves JSON text again.
ALTER TABLE {{.DB}}.events ADD COLUMN raw String DEFAULT ''{{if .Modern}} CODEC(ZSTD(3)){{end}};
