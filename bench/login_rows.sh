#!/usr/bin/env bash
# The two login rows of bench/scale.sh (fingerprint= lookup, 4 connections; authorized_keys of
# the 10,000-key login, 1 connection) against a data set kept by `SCALE_KEEP=1 bench/scale.sh`,
# with any binary: serve is restarted on that data with BIN, so binaries can be alternated on
# the same data in one session (migrations newer than BIN must be undone in between, e.g.
# bench/sql/undo_0014.sql).
#   bench/login_rows.sh WORK BIN LABEL        WORK: the kept /tmp/kp-scale.* directory
#   D=10                                       seconds per row (default 15)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$1; bin=$2; label=$3; D=${D:-15}
. bench/portal.sh
portal_on_kept "$bin" "$work"
base=$PORTAL_BASE auth=("${PORTAL_AUTH[@]}")
row() {
  awk -v l="$label $1:" '$1 == "50%" { p50 = $2 } $1 == "99%" { p99 = $2 } /Requests\/sec/ { rps = $2 }
    /Non-2xx|Socket errors/ { e = e " " $0 } END { print l, rps " req/s, p50 " p50 ", p99 " p99 e }'
}
wrk -t2 -c4 -d3s -s bench/wrk_paths.lua "${auth[@]}" "$base" -- "$work/lookup" >/dev/null
wrk -t2 -c4 -d"${D}s" --latency -s bench/wrk_paths.lua "${auth[@]}" "$base" -- "$work/lookup" | row lookup
wrk -t1 -c1 -d"${D}s" --latency "${auth[@]}" "$base/api/v1/servers/s000000/authorized_keys?login=bulk" | row authorized_keys
