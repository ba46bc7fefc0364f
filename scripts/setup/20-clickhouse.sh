# Sourced by scripts/test.sh. Installs what the storage integration tests
# need: Debian's ClickHouse server and client (the tests start their own
# server on loopback; the system service is not used), Debian's ZooKeeper
# (zookeeperd, which brings a JRE: the cluster test starts its own
# ZooKeeper from /usr/share/java/zookeeper.jar) and libchdb.so for the
# embedded backend. Idempotent. Exports CHDB_LIB_PATH.
if ! command -v clickhouse-server >/dev/null 2>&1 && [ ! -x /usr/sbin/clickhouse-server ]; then
	if ! apt-cache show clickhouse-server >/dev/null 2>&1; then
		apt-get update
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends clickhouse-server clickhouse-client
fi
if [ ! -f /usr/share/java/zookeeper.jar ] || ! command -v java >/dev/null 2>&1; then
	if ! apt-cache show zookeeperd >/dev/null 2>&1; then
		apt-get update
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends zookeeperd
fi
if ! command -v npm >/dev/null 2>&1; then
	if ! apt-cache show npm >/dev/null 2>&1; then
		apt-get update
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends npm
fi
CHDB_LIB_PATH="$(scripts/fetch-chdb.sh)"
export CHDB_LIB_PATH
