#!/usr/bin/env bash
# A bounded soak of fedgate: a steady mixed load (default 200 req/s for
# 10 minutes) while RSS, goroutines, threads and descriptors are sampled
# every 30 s. Any "fedload soak" flag may follow, e.g. -duration 1h.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
CGO_ENABLED=0 go build -trimpath -o bin/ ./cmd/fedgate ./cmd/fedload
exec bin/fedload soak -fedgate bin/fedgate "$@"
