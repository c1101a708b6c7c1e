#!/usr/bin/env bash
# Load benchmark of the JSON API (release build, private cluster in a temp dir, wrk on loopback):
#   1. authorized_keys for one server with 10,000 granted keys (every key validated on each read)
#   2. the fingerprint= lookup (AuthorizedKeysCommand %f) over random fingerprints of those keys
#   3. key submission throughput (POST /users/{u}/keys, each request a new key)
#   4. the browser side: sign-in (argon2id), a user's keys page in HTML next to the same 50
#      keys as JSON, and the admin dashboard (validates every stored key)
# Keys come from ../shared/keys/gen_bulk.py (bench/out/keys-100000.txt, made by compare.sh).
# Usage: bench/api_load.sh [seconds per run]
#   KEYPORTAL_BENCH_BIN=path   another binary (a baseline); else this checkout's release build
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
OUT=bench/out
KEYS="$OUT/keys-100000.txt"
[ -s "$KEYS" ] || python3 ../shared/keys/gen_bulk.py 100000 > "$KEYS"
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
if [ -n "${KEYPORTAL_BENCH_BIN:-}" ]; then KP=$KEYPORTAL_BENCH_BIN; else
  cargo build --release -q --bin keyportal
  KP=$PWD/target/release/keyportal
fi

DIR=$(mktemp -d -p /tmp kpload.XXXX); chmod 755 "$DIR"
export KEYPORTAL_DATA_DIR=$DIR/data KEYPORTAL_LOG=warn
PORT=18091
KEYPORTAL_LISTEN=127.0.0.1:$PORT "$KP" serve 2>"$DIR/serve.log" &
SERVE=$!
trap 'kill -TERM $SERVE 2>/dev/null; wait $SERVE 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$DIR"' EXIT
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do sleep 0.2; done
echo "bench passphrase 123" | "$KP" admin create --username bench --password-stdin >/dev/null 2>&1
TOKEN=$("$KP" token create --username bench --name load 2>/dev/null)
API=http://127.0.0.1:$PORT/api/v1
H=(-H "Authorization: Bearer $TOKEN")
# The key submissions below go to users who already hold 100 keys: lift the per-user quota
# (default 100, issue 11), or every submission is a 409.
curl -sf -X PUT "${H[@]}" -H 'content-type: application/json' \
  -d "$(curl -sf "${H[@]}" "$API/policy" | python3 -c 'import json,sys; p=json.load(sys.stdin); p["max_keys_per_user"]=100000; print(json.dumps(p))')" \
  "$API/policy" >/dev/null

echo "setup: 100 users x 100 keys, all granted on server 'bench' as login 'deploy'"
curl -sf "${H[@]}" -H 'content-type: application/json' -d '{"name":"bench"}' "$API/servers" >/dev/null
for u in $(seq -w 0 99); do
  curl -sf "${H[@]}" -H 'content-type: application/json' -d "{\"username\":\"u$u\"}" "$API/users" >/dev/null
  sed -n "$((10#$u * 100 + 1)),$((10#$u * 100 + 100))p" "$KEYS" |
    curl -sf "${H[@]}" --data-binary @- "$API/users/u$u/keys/import" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["added"]==100, r'
  curl -sf "${H[@]}" -H 'content-type: application/json' -d "{\"username\":\"u$u\",\"login\":\"deploy\"}" "$API/servers/bench/grants" >/dev/null
done
LINES=$(curl -sf "${H[@]}" "$API/servers/bench/authorized_keys?login=deploy" | wc -l)
echo "authorized_keys?login=deploy has $LINES lines (data: $DIR)"
[ -z "${SETUP_ONLY:-}" ] || exit 0

echo; echo "== 1. authorized_keys, $LINES keys, 1 connection"
wrk -t1 -c1 -d"${SECS}s" --latency -H "Authorization: Bearer $TOKEN" "$API/servers/bench/authorized_keys?login=deploy" | sed -n '/Latency Distribution/,/Requests\/sec/p'

# Fingerprints of the granted keys, URL-encoded, for the %f lookup.
head -10000 "$KEYS" | "$KP" key check --lines --json - | python3 -c '
import json, sys, urllib.parse
fps = [urllib.parse.quote(json.loads(l)["sha256"], safe="") for l in sys.stdin]
print("fps = {" + ",".join(chr(34) + f + chr(34) for f in fps) + "}")' > "$DIR/fps.lua"
cat >> "$DIR/fps.lua" <<'LUA'
math.randomseed(42)
request = function()
  return wrk.format("GET", "/api/v1/servers/bench/authorized_keys?login=deploy&fingerprint=" .. fps[math.random(#fps)])
end
LUA
echo; echo "== 2. fingerprint lookup (random one of $LINES), 4 connections"
wrk -t1 -c4 -d"${SECS}s" --latency -s "$DIR/fps.lua" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT" | sed -n '/Latency Distribution/,/Requests\/sec/p'

# Submissions: each request a key not yet registered (lines 10001.. of the file), to 100 users.
tail -n +10001 "$KEYS" | python3 -c '
import json, sys
keys = [l.strip() for l in sys.stdin if l.strip()]
print("keys = {" + ",".join(json.dumps(json.dumps({"key": k})) for k in keys) + "}")' > "$DIR/keys.lua"
cat >> "$DIR/keys.lua" <<'LUA'
local n = 0
local threads = {}
setup = function(thread) thread:set("id", #threads) table.insert(threads, thread) end
init = function() n = id * 40000 end
request = function()
  n = n + 1
  local user = string.format("u%02d", n % 100)
  -- Headers given to wrk.format replace the -H ones, so copy them in.
  local headers = {["Content-Type"] = "application/json"}
  for k, v in pairs(wrk.headers) do headers[k] = v end
  return wrk.format("POST", "/api/v1/users/" .. user .. "/keys", headers, keys[n])
end
statuses = {}
response = function(status) statuses[status] = (statuses[status] or 0) + 1 end
done = function(summary, latency, requests)
  io.write(string.format("p50 %.2f ms, p99 %.2f ms\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
LUA
echo; echo "== 3. key submission, 8 connections"
wrk -t2 -c8 -d"${SECS}s" --latency -s "$DIR/keys.lua" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT" | sed -n '/Latency Distribution/,$p'
ADDED=$(psql -XtA -h "$DIR/data/run" -U postgres keyportal -c "select count(*) from ssh_keys" 2>/dev/null || echo "?")
echo "keys stored after the run: $ADDED (10000 before)"

echo; echo "== 4. browser pages"
JAR=$DIR/cookies
curl -sf -c "$JAR" "http://127.0.0.1:$PORT/login" -o "$DIR/login.html"
LOGIN_CSRF=$(grep -o 'name="csrf_token" value="[^"]*"' "$DIR/login.html" | sed 's/.*value="//; s/"$//')
python3 - "$PORT" "$LOGIN_CSRF" "$JAR" <<'PY'
import subprocess, sys, time, statistics
port, token, jar = sys.argv[1:4]
times = []
for _ in range(20):
    t = time.perf_counter()
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-b", jar,
        "--data-urlencode", "username=bench", "--data-urlencode", "password=bench passphrase 123",
        "--data-urlencode", "csrf_token=" + token, f"http://127.0.0.1:{port}/login"],
        capture_output=True, text=True).stdout
    times.append((time.perf_counter() - t) * 1000)
    assert out == "303", out
times.sort()
print(f"sign-in (POST /login, 20 runs): p50 {statistics.median(times):.1f} ms, max {times[-1]:.1f} ms")
PY
curl -sf -c "$JAR" -b "$JAR" -o /dev/null \
  --data-urlencode username=bench --data-urlencode "password=bench passphrase 123" \
  --data-urlencode "csrf_token=$LOGIN_CSRF" "http://127.0.0.1:$PORT/login" || true
SESSION=$(awk '$6 == "kp_session" { print $7 }' "$JAR")
C=(-H "Cookie: kp_session=$SESSION")
for target in "/users/u00/keys" "/api/v1/users/u00/keys?limit=50" "/"; do
  echo "-- GET $target (1 connection)"
  wrk -t1 -c1 -d"${SECS}s" --latency "${C[@]}" "http://127.0.0.1:$PORT$target" | sed -n '/50%/p;/99%/p;/Requests\/sec/p;/Non-2xx/p'
done
