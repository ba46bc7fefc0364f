# auditwatch — make targets. `make demo` and `make test` are the README's two commands.
GO ?= go
BIN := bin/auditwatch

.PHONY: build demo test lint fuzz fuzz-smoke bench bench-normalize bench-store chdb clean

build:
	$(GO) build -o $(BIN) ./cmd/auditwatch

# The main job on the embedded default, over the bundled demo data.
demo: build
	scripts/demo.sh

# Installs and starts what the tests need, then runs every test (race detector) and a fuzz smoke run.
test:
	scripts/test.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

# Long fuzzing: every fuzz target for FUZZTIME each.
FUZZTIME ?= 60s
fuzz:
	scripts/fuzz.sh $(FUZZTIME)

fuzz-smoke:
	scripts/fuzz.sh 8s

# Full benchmarks (one core, as the targets are stated).
BENCHTIME ?= 1x
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -cpu=1 ./...

# Fetch libchdb.so (embedded ClickHouse for the default storage backend) into .cache/chdb/.
chdb:
	scripts/fetch-chdb.sh

# Storage benchmarks on 10,000,000 generated events: insert rows/s and each
# runbook query's time, on embedded chDB and on a ClickHouse server the
# benchmark starts (scripts/setup/20-clickhouse.sh installs both).
BENCH_ROWS ?= 10000000
bench-store: chdb
	CHDB_LIB_PATH=$$(scripts/fetch-chdb.sh) AUDITWATCH_BENCH_ROWS=$(BENCH_ROWS) \
		$(GO) test -run='^$$' -bench=. -benchtime=5x -timeout=3h ./store/

clean:
	rm -rf bin

# Normalize throughput: the Go benchmark (one core) and the command on a
# ~100k-record mixed file written to /dev/null.
bench-normalize: build
	$(GO) test -run='^$$' -bench=BenchmarkNormalize -benchtime=5x -cpu=1 ./ingest
	$(GO) test -run='^$$' -bench=BenchmarkNormalize -benchtime=1x -cpu=1 ./ingest -args -bench-out=$(CURDIR)/bin/bench-input.jsonl >/dev/null
	time -p env GOMAXPROCS=1 $(BIN) normalize bin/bench-input.jsonl >/dev/null
