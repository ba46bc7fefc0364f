# Lets an incident responder (or auditwatch's runbook tooling) compute the
# HMAC that an audit device would write for a known value — e.g. to find a
# leaked token's uses in the audit trail — without any other access.
# `vault write sys/audit-hash/file input=<token>` returns the hmac-sha256:…
# string to search for with `auditwatch query` or in ClickHouse.
path "sys/audit-hash/file" {
  capabilities = ["update"]
}

path "sys/audit-hash/socket" {
  capabilities = ["update"]
}

# Read-only view of which audit devices are enabled (to notice one being disabled).
path "sys/audit" {
  capabilities = ["read", "sudo"]
}
