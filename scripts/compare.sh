#!/usr/bin/env bash
# Compares fedgate with Caddy and nginx in front of the same minimal
# upstream, on loopback, in interleaved rounds (see docs/performance.md),
# and prints every table docs/performance.md reports: CPU per request and
# throughput per scenario, fedgate's own work (CPU/req minus one
# crypto/ed25519 verification) against Caddy and nginx with the access log
# off and on, p99 added at half of fedgate's peak, and RSS with 1,000 idle
# connections. Run by hand, not by CI: with the defaults it takes about
# twenty minutes and wants a quiet machine.
#
#   scripts/compare.sh                       # defaults: 3 rounds, 20,000 requests each
#   scripts/compare.sh -rounds 5 -conns 64   # any "fedload bench" flag
#   scripts/compare.sh -fedgate new=bin/fedgate,old=/tmp/fedgate-old
#                                            # two builds side by side
#
# Needs Debian's caddy and nginx (apt-get install -y caddy nginx); a
# missing one is skipped. Writes the report to stdout and keeps the
# configurations and the proxies' logs in ./bench-run/.
set -euo pipefail
cd "$(dirname "$0")/.."
for bin in caddy nginx; do
  command -v "$bin" >/dev/null || echo "compare.sh: $bin not found (apt-get install -y $bin); measuring without it" >&2
done
# Debian starts both packages as services on :80; they idle, but stop them
# so nothing else competes for the two cores.
for svc in nginx caddy; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
    echo "compare.sh: stopping the $svc service for the run" >&2
    systemctl stop "$svc"
  fi
done
mkdir -p bin
CGO_ENABLED=0 go build -trimpath -o bin/ ./cmd/fedgate ./cmd/fedload
rm -rf bench-run
exec bin/fedload bench -fedgate bin/fedgate -dir bench-run "$@"
