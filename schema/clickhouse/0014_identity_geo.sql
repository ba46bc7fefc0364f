-- Who is behind a Vault-issued AWS key and where an address is (packages
-- identity and netinfo): key_principal is the AWS principal of a key Vault
-- issued (the event's principal then names the Vault identity), key_issue
-- how it was issued; country, asn, as_org and net_label the network
-- context of source_ip. Rows stored before read the defaults.
ALTER TABLE {{.DB}}.events ADD COLUMN key_principal String DEFAULT '';
ALTER TABLE {{.DB}}.events ADD COLUMN key_issue String DEFAULT '';
ALTER TABLE {{.DB}}.events ADD COLUMN country String DEFAULT '';
ALTER TABLE {{.DB}}.events ADD COLUMN asn UInt32 DEFAULT 0;
ALTER TABLE {{.DB}}.events ADD COLUMN as_org String DEFAULT '';
ALTER TABLE {{.DB}}.events ADD COLUMN net_label String DEFAULT '';
