# The token auditwatch's canary reads with (canary.vault.token): it reads one
# dedicated secret and asks the file audit device for its own HMAC (the salt
# check). Nothing else. Create it with
#   vault policy write auditwatch-canary canary-policy.hcl
#   vault kv put secret/auditwatch-canary canary=ok
#   vault token create -policy=auditwatch-canary -period=768h -display-name=auditwatch-canary
path "secret/data/auditwatch-canary" {
  capabilities = ["read"]
}

path "sys/audit-hash/file" {
  capabilities = ["update"]
}
