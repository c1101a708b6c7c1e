#!/usr/bin/env bash
# What this machine can do at all, next to the login rows of bench/scale.sh: the CPU each
# request costs, by process (bench/cpu_split.py), for
#   - GET /healthz: an HTTP request through the whole middleware stack, no database;
#   - GET /readyz: the same plus one `SELECT 1` round trip, the least any lookup that asks the
#     database can cost;
#   - the fingerprint= lookup and authorized_keys of the 10,000-key login, as scale.sh runs them;
#   - PostgreSQL alone (pgbench) running the whole list's statement (bench/sql/granted_keys_*),
#     the same join returning three columns, and the keys alone with fifteen columns and with
#     three (the keys' text, no join: the least the whole list's read can cost the database).
# A row's budget is 2 cores / its target rate: 5,000 req/s leave 0.4 ms of CPU per request.
#   bench/floors.sh WORK BIN       WORK: a /tmp/kp-scale.* directory kept by SCALE_KEEP=1
#   D=10                           seconds per row (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$1; bin=$2; D=${D:-10}
. bench/portal.sh
portal_on_kept "$bin" "$work"
base=$PORTAL_BASE auth=("${PORTAL_AUTH[@]}")
# wrk's error lines are kept: a table of fast 401s must not pass for a measurement.
cost() {
  bench/cpu_split.py --per "$@" 2>&1 |
    grep -E "Requests/sec|transactions actually|latency average|^ +(50|99)%|^  [a-z]|Non-2xx|Socket errors" |
    grep -v " 0.00[0-9] ms per"
}
echo "== /healthz, 4 connections"; cost wrk -- wrk -t2 -c4 -d"${D}s" --latency "$base/healthz"
echo "== /readyz, 4 connections"; cost wrk -- wrk -t2 -c4 -d"${D}s" --latency "$base/readyz"
wrk -t2 -c4 -d3s -s bench/wrk_paths.lua "${auth[@]}" "$base" -- "$work/lookup" >/dev/null
echo "== fingerprint= lookup, 4 connections"
cost wrk -- wrk -t2 -c4 -d"${D}s" --latency -s bench/wrk_paths.lua "${auth[@]}" "$base" -- "$work/lookup"
echo "== authorized_keys, 10,000 keys, 1 connection"
cost wrk -- wrk -t1 -c1 -d"${D}s" --latency "${auth[@]}" "$base/api/v1/servers/s000000/authorized_keys?login=bulk"
# The whole list's statement, the same join with three columns, and the keys alone with the
# same fifteen columns and with three: what the join costs and what the columns cost.
# (Comments are dropped: pgbench would count the :names in them as parameters.)
grep -v "^--" bench/sql/granted_keys_reach.sql >"$work/reach.sql"
{ cat "$work/reach.sql"; grep -v "^--" bench/sql/granted_keys_named_entry.sql; } >"$work/whole_list.sql"
{ cat "$work/reach.sql"; echo "SELECT k.public_key, k.comment, k.fingerprint_sha256 FROM r JOIN users u ON u.id = r.user_id JOIN ssh_keys k ON k.user_id = r.user_id AND (r.key_id IS NULL OR r.key_id = k.id) WHERE NOT u.disabled AND (r.expires_at IS NULL OR r.expires_at > now()) AND (k.expires_at IS NULL OR k.expires_at > now());"; } >"$work/join_3_columns.sql"
owner="k.user_id = (SELECT id FROM users WHERE username = 'u000000')"
echo "SELECT k.id, k.user_id::text, k.public_key, k.comment, k.fingerprint_sha256, ''::text, NULL::timestamptz, k.created_at, k.created_at, k.last_used_at, k.compromise, k.compromise_checks, NULL::text, NULL::text, 1 FROM ssh_keys k WHERE $owner;" >"$work/keys_15_columns.sql"
echo "SELECT k.public_key, k.comment, k.fingerprint_sha256 FROM ssh_keys k WHERE $owner;" >"$work/keys_3_columns.sql"
for script in whole_list join_3_columns keys_15_columns keys_3_columns; do
  echo "== PostgreSQL alone, $script, one connection (its backend ends with pgbench: it is in 'ended in the run')"
  cost pgbench -- pgbench -n -h "$work/data/run" -U postgres -M prepared -c 1 -T "$D" \
    -D srv=s000000 -D login=bulk -f "$work/$script.sql" keyportal
done
