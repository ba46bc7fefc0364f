# syntax=docker/dockerfile:1
# auditwatch: one static binary; the stage is the command
# (`auditwatch ingest|detect|alert|run --config FILE`).
#
#   docker build -t auditwatch:dev .

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# CGO off: the embedded ClickHouse (chdb) backend loads libchdb at run time
# and is not used in containers; the clickhouse backend is pure Go.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/auditwatch ./cmd/auditwatch
# The state directory, owned by the runtime user so a fresh named volume
# mounted there inherits a writable owner.
RUN mkdir -p /out/state

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/auditwatch /usr/local/bin/auditwatch
COPY --from=build --chown=65532:65532 /out/state /var/lib/auditwatch
# 65532 is distroless's nonroot user; state lives on a mounted volume.
USER 65532:65532
WORKDIR /var/lib/auditwatch
# 9464: /metrics, /healthz, /readyz (http.listen); 9090: the Vault/OpenBao
# socket audit device listener (socket source).
EXPOSE 9464 9090
ENTRYPOINT ["/usr/local/bin/auditwatch"]
CMD ["--help"]
