#!/usr/bin/env bash
# Builds the fedgate Debian package: a static binary (CGO_ENABLED=0, version
# stamped) and packaging/nfpm.yaml, packed by nfpm run as a pinned tool.
# Needs only Go (and the module proxy once, to fetch nfpm).
#
#   scripts/deb.sh [ARCH]     # ARCH: amd64 (default: this machine's) or arm64
#
# writes dist/fedgate_<version>_<arch>.deb and prints its path. "make deb"
# runs this script.
set -euo pipefail
cd "$(dirname "$0")/.."
nfpm=${NFPM:-github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0}
arch=${1:-$(go env GOARCH)}
. scripts/version.sh

mkdir -p dist/deb
CGO_ENABLED=0 GOOS=linux GOARCH="$arch" go build -trimpath -buildvcs=false \
	-ldflags "$LDFLAGS" -o dist/deb/fedgate ./cmd/fedgate
# The package's variables go to nfpm only: GOARCH would make "go run"
# build nfpm itself for the target architecture.
FEDGATE_DEB_ARCH="$arch" FEDGATE_DEB_VERSION="$DEB_VERSION" \
	go run "$nfpm" package --config packaging/nfpm.yaml --packager deb --target dist/ >&2
deb="dist/fedgate_${DEB_VERSION}_${arch}.deb"
test -f "$deb"
echo "$deb"
