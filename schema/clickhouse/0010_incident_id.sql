-- incident_id: the incident a finding belongs to (schema.Finding.IncidentID,
-- set by the correlation stage): findings of one attack share it, so a
-- runbook query or a dashboard can list an incident's findings together.
-- Findings stored before this migration have none.
ALTER TABLE {{.DB}}.findings ADD COLUMN incident_id String DEFAULT '' AFTER dedupe_key;
