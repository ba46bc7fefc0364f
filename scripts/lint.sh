#!/usr/bin/env bash
# The lint step (`make lint`, run by scripts/test.sh and so by .ci/run):
# gofmt, go vet and staticcheck. staticcheck is installed with `go install`
# at the pinned version when it is missing or a different version.
set -euo pipefail
cd "$(dirname "$0")/.."

STATICCHECK_VERSION="${STATICCHECK_VERSION:-v0.8.2}"
gobin="$(go env GOBIN)"
[ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
sc="$gobin/staticcheck"
want="(${STATICCHECK_VERSION#v})"
if ! [ -x "$sc" ] || ! "$sc" -version 2>/dev/null | grep -qF "$want"; then
	echo "== installing staticcheck $STATICCHECK_VERSION"
	go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
echo "== go vet"
go vet ./...
echo "== staticcheck"
"$sc" ./...
