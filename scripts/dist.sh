#!/usr/bin/env bash
# Release binaries: static (CGO_ENABLED=0), version stamped, for every
# platform below, with SHA-256 sums:
#
#   dist/fedgate-<version>-linux-amd64
#   dist/fedgate-<version>-linux-arm64
#   dist/SHA256SUMS            (check with: cd dist && sha256sum -c SHA256SUMS)
#
# "make dist" runs this script; VERSION=1.2.0 scripts/dist.sh stamps a
# release version instead of git describe's.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/version.sh
platforms=${PLATFORMS:-"linux/amd64 linux/arm64"}

mkdir -p dist
files=()
for p in $platforms; do
	os=${p%/*} arch=${p#*/}
	out="fedgate-${VERSION}-${os}-${arch}"
	CGO_ENABLED=0 GOOS="$os" GOARCH="$arch" go build -trimpath -buildvcs=false \
		-ldflags "$LDFLAGS" -o "dist/$out" ./cmd/fedgate
	files+=("$out")
done
(cd dist && sha256sum "${files[@]}" > SHA256SUMS)
cat dist/SHA256SUMS
