#!/usr/bin/env bash
# What this machine can do at all, next to the login rows of bench/scale.sh: the CPU each
# request costs, by process (bench/cpu_split.py), for
#   - GET /healthz: an HTTP request through the whole middleware stack, no database;
#   - GET /readyz: the same plus one `SELECT 1` round trip, the least any lookup that asks the
#     database can cost;
#   - the fingerprint= lookup and authorized_keys of the 10,000-key login, as scale.sh runs them;
#   - PostgreSQL alone (pgbench) running the whole list's statement (bench/sql/granted_keys_*),
#     and reading only the 10,000 keys' text (three columns, no join): the least the whole
#     list's read can cost the database.
# A row whose budget (2 cores / target rate) is below its floor cannot be met on this machine.
#   bench/floors.sh WORK BIN       WORK: a /tmp/kp-scale.* directory kept by SCALE_KEEP=1
#   D=10                           seconds per row (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$1; bin=$2; D=${D:-10}
. bench/portal.sh
portal_on_kept "$bin" "$work"
base=$PORTAL_BASE auth=("${PORTAL_AUTH[@]}")
cost() { bench/cpu_split.py --per "$@" 2>&1 | grep -E "Requests/sec|tps =|^ +(50|99)%|^  [a-z]" | grep -v " 0.00[0-9] ms per"; }
echo "== /healthz, 4 connections"; cost wrk -- wrk -t2 -c4 -d"${D}s" --latency "$base/healthz"
echo "== /readyz, 4 connections"; cost wrk -- wrk -t2 -c4 -d"${D}s" --latency "$base/readyz"
wrk -t2 -c4 -d3s -s bench/wrk_paths.lua "${auth[@]}" "$base" -- "$work/lookup" >/dev/null
echo "== fingerprint= lookup, 4 connections"
cost wrk -- wrk -t2 -c4 -d"${D}s" --latency -s bench/wrk_paths.lua "${auth[@]}" "$base" -- "$work/lookup"
echo "== authorized_keys, 10,000 keys, 1 connection"
cost wrk -- wrk -t1 -c1 -d"${D}s" --latency "${auth[@]}" "$base/api/v1/servers/s000000/authorized_keys?login=bulk"
cat > "$work/keys_only.sql" <<'SQL'
SELECT k.public_key, k.comment, k.fingerprint_sha256 FROM ssh_keys k
 WHERE k.user_id = (SELECT id FROM users WHERE username = 'u000000');
SQL
# (without the comments: pgbench would count the :names in them as parameters)
cat bench/sql/granted_keys_reach.sql bench/sql/granted_keys_named_entry.sql | grep -v "^--" >"$work/whole_list.sql"
pgbench_out=$(mktemp)
for script in whole_list keys_only; do
  echo "== PostgreSQL alone, $script.sql, one connection (its backend is under 'exited')"
  bench/cpu_split.py -- pgbench -n -h "$work/data/run" -U postgres -M prepared -c 1 -T "$D" \
    -D srv=s000000 -D login=bulk -f "$work/$script.sql" keyportal >"$pgbench_out" 2>&1 ||
    { cat "$pgbench_out"; exit 1; }
  grep -E "transactions actually|latency average|^  (pgbench|postgres|exited|idle)" "$pgbench_out"
done
rm -f "$pgbench_out"
