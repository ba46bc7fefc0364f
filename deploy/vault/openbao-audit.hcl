# OpenBao 2.x server configuration: declarative audit devices. OpenBao
# prefers audit devices in the server config over the API; auditwatch reads
# either the file (filetail source) or the socket (socket source).

audit "file" "file" {
  options {
    file_path = "/var/log/openbao/audit.log"
    # keep values HMAC'd (the default); auditwatch never needs plaintext
  }
}

audit "socket" "auditwatch" {
  options {
    address     = "auditwatch-socket.auditwatch.svc:9090"
    socket_type = "tcp"
    # OpenBao/Vault block requests when every audit device fails: keep the
    # file device above as the second device so a socket outage never stops
    # the secret store.
  }
}
