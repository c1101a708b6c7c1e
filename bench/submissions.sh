#!/usr/bin/env bash
# Where a key submission's time goes: runs api_load.sh's submission row (POST
# /users/{u}/keys, 8 connections, each request a new key) on a data set kept by
# `KEEP=1 SETUP_ONLY=1 bench/api_load.sh`, and prints
#   - the machine's CPU per request by process (bench/cpu_split.py);
#   - PostgreSQL's execution time per statement (pg_stat_statements, nested statements too)
#     and per trigger function (track_functions), both reset just before the run.
# The first run turns both on in the kept cluster's postgresql.auto.conf (they cost a few
# percent; keep such a data set for profiling only).
# Usage: bench/submissions.sh BIN DATA_DIR [seconds] [first key line]
#   keys are lines FIRST.. and FIRST+20000.. of bench/out/keys-100000.txt (one per wrk thread);
#   give each run on one data set lines not used before (setup used 1-10,000).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$1 DIR=$2 SECS=${3:-10} FIRST=${4:-10001}
CONF=$DIR/data/pgdata/postgresql.auto.conf
grep -q pg_stat_statements "$CONF" ||
  printf "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\ntrack_functions = all\n" >>"$CONF"
export KEYPORTAL_DATA_DIR=$DIR/data KEYPORTAL_LOG=warn,keyportal::server=info
KEYPORTAL_LISTEN=127.0.0.1:0 "$BIN" serve >"$DIR/serve.log" 2>&1 &
SERVE=$!
trap 'kill -TERM $SERVE 2>/dev/null; wait $SERVE 2>/dev/null || true' EXIT
ADDR=
for _ in $(seq 1 600); do
  ADDR=$(sed -n 's/.*keyportal is listening on http:\/\/\([0-9.:]*\).*/\1/p' "$DIR/serve.log" | head -1)
  [ -n "$ADDR" ] && break
  kill -0 $SERVE 2>/dev/null || { cat "$DIR/serve.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$ADDR" ] || { echo "serve did not start" >&2; exit 1; }
TOKEN=$("$BIN" token create --username bench --name "submissions-$$-$RANDOM" 2>/dev/null)
sed -n "${FIRST},$((FIRST + 39999))p" bench/out/keys-100000.txt | python3 -c '
import json, sys
keys = [l.strip() for l in sys.stdin if l.strip()]
print("keys = {" + ",".join(json.dumps(json.dumps({"key": k})) for k in keys) + "}")' >"$DIR/submissions.lua"
cat >>"$DIR/submissions.lua" <<'LUA'
local n = 0
local threads = {}
setup = function(thread) thread:set("id", #threads) table.insert(threads, thread) end
init = function() n = id * 20000 end
request = function()
  n = n + 1
  local headers = {["Content-Type"] = "application/json"}
  for k, v in pairs(wrk.headers) do headers[k] = v end
  return wrk.format("POST", "/api/v1/users/" .. string.format("u%02d", n % 100) .. "/keys", headers, keys[n])
end
LUA
PSQL=(psql -XA -h "$DIR/data/run" -U postgres keyportal)
"${PSQL[@]}" -qc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "SELECT pg_stat_statements_reset(), pg_stat_reset()" >/dev/null
before=$("${PSQL[@]}" -tc "SELECT count(*) FROM ssh_keys")
python3 bench/cpu_split.py --per wrk -- wrk -t2 -c8 -d"${SECS}s" --latency -s "$DIR/submissions.lua" \
  -H "Authorization: Bearer $TOKEN" "http://$ADDR" | grep -v " 0\.[0-4]%"
echo "keys added: $(( $("${PSQL[@]}" -tc "SELECT count(*) FROM ssh_keys") - before ))"
"${PSQL[@]}" -c "SELECT calls, round((total_exec_time / calls * 1000)::numeric) AS us_per_call,
    left(regexp_replace(query, '\s+', ' ', 'g'), 110) AS statement
  FROM pg_stat_statements WHERE calls > 100 ORDER BY total_exec_time DESC" \
  -c "SELECT funcname AS function, calls, round((total_time / calls * 1000)::numeric) AS us_per_call
  FROM pg_stat_user_functions WHERE calls > 0 ORDER BY total_time DESC"
