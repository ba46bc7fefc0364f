-- token_accessor: the Vault token's accessor (clear with hmac_accessor=false
-- on the audit device, else its HMAC), beside token_hmac, in both event
-- tables. Revoking a token needs its accessor (`vault token revoke
-- -accessor`); the credentials query lists them per principal and
-- `auditwatch query token-accessor` finds the clear accessor of an HMAC.
ALTER TABLE {{.DB}}.events ADD COLUMN token_accessor String DEFAULT '' AFTER token_hmac;

ALTER TABLE {{.DB}}.events_by_principal ADD COLUMN token_accessor String DEFAULT '' AFTER access_key;
