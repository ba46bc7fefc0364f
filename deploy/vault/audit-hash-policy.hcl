# Lets an incident responder (or auditwatch's runbook tooling) compute the
# HMAC that an audit device would write for a known value — e.g. to find a
# leaked token's uses in the audit trail — without any other access.
# `vault write sys/audit-hash/file input=<token>` returns the hmac-sha256:…
# string to search for with `auditwatch query` or in ClickHouse.
# The path segment is the audit device's mount path, not its type: the file
# device enabled at file/ and the socket device enabled at auditwatch/
# (deploy/vault/README.md, openbao-audit.hcl). Each device has its own salt,
# so hash through the device whose entries you search.
path "sys/audit-hash/file" {
  capabilities = ["update"]
}

path "sys/audit-hash/auditwatch" {
  capabilities = ["update"]
}

# Read-only view of which audit devices are enabled (to notice one being disabled).
path "sys/audit" {
  capabilities = ["read", "sudo"]
}
