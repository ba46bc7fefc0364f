-- resource_name: the one canonical name of the resource (internal/resname
-- Name: the Vault logical path without KV v2's data/ or metadata/, the
-- Secrets Manager secret name without ARN or random suffix, the KMS key id
-- or alias), written by the inserter beside the raw resource. Runbook
-- queries match it against every name the typed input can mean, so
-- secret/payments/db, secret/data/payments/db, prod-db and its ARN all
-- find the same rows. Rows stored before this migration read it as their
-- raw resource (the DEFAULT), which queries also match.
ALTER TABLE {{.DB}}.events ADD COLUMN resource_name String DEFAULT resource AFTER resource;
{{if .Modern}}
-- Sorted by resource, a granule holds few names: a bloom filter on the
-- name skips the rest when a query matches by name.
ALTER TABLE {{.DB}}.events ADD INDEX resource_name_idx resource_name TYPE bloom_filter(0.01) GRANULARITY 1;
{{end}}
