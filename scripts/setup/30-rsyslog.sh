# Installs rsyslog with its OpenSSL network stream driver for the alert/syslog
# integration tests. Idempotent; sourced by scripts/test.sh. The tests start
# their own rsyslogd in the foreground (own config, pid file, work dir and
# loopback port); the package's system service is never used.
if ! command -v rsyslogd >/dev/null 2>&1 || ! dpkg -s rsyslog-openssl >/dev/null 2>&1; then
	echo "installing rsyslog and rsyslog-openssl"
	if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2>/dev/null)" ]; then
		apt-get -o DPkg::Lock::Timeout=600 update
	fi
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends rsyslog rsyslog-openssl ||
		{ apt-get -o DPkg::Lock::Timeout=600 update &&
			DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends rsyslog rsyslog-openssl; }
fi
if [ -z "${AUDITWATCH_RSYSLOGD:-}" ]; then
	AUDITWATCH_RSYSLOGD="$(command -v rsyslogd || echo /usr/sbin/rsyslogd)"
	export AUDITWATCH_RSYSLOGD
fi
