#!/usr/bin/env bash
# A flood of wrong sign-ins against one `keyportal serve` (release build, its own private
# cluster): how many were let through to a password check (401), refused by the limit (429) or
# by the hashing bound (503), the peak of concurrent hashes, and the server's memory before and
# after. Loopback only; bounded by REQUESTS.
#
#   bench/signin_flood.sh [REQUESTS] [PARALLEL]      (default 1000 requests, 100 at a time)
#   KEYPORTAL_BENCH_PROFILE=debug bench/signin_flood.sh   (skip the release build)
#   KEYPORTAL_BENCH_BIN=/path/to/old/keyportal KEYPORTAL_BENCH_DATABASE_URL=postgres://…/postgres \
#     bench/signin_flood.sh      (another build, e.g. a baseline, on a fresh database of that server)
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-1000}
parallel=${2:-100}
profile=${KEYPORTAL_BENCH_PROFILE:-release}
if [ -n "${KEYPORTAL_BENCH_BIN:-}" ]; then
  bin=$KEYPORTAL_BENCH_BIN
else
  if [ "$profile" = release ]; then cargo build -q --release; else cargo build -q; fi
  bin=$PWD/target/$profile/keyportal
fi
. "$(dirname "$0")/../bench/portal.sh"
work=$(mktemp -d)
cleanup() { portal_stop "$work"; }
trap cleanup EXIT

unset DATABASE_URL
if [ -n "${KEYPORTAL_BENCH_DATABASE_URL:-}" ]; then
  db="keyportal_flood_$$"
  psql "$KEYPORTAL_BENCH_DATABASE_URL" -qc "CREATE DATABASE $db"
  trap 'cleanup; psql "$KEYPORTAL_BENCH_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
  export DATABASE_URL="${KEYPORTAL_BENCH_DATABASE_URL%/*}/$db"
fi
portal_start "$bin" "$work"
addr=$PORTAL_ADDR
pid=$PORTAL_PID
echo 'a long enough password' | "$bin" admin create --username victim --password-stdin >/dev/null

rss() { awk '/VmRSS|VmHWM/ { printf "%s %s kB  ", $1, $2 }' "/proc/$pid/status"; echo; }
echo "before: $(rss)"
# The client picks its own sign-in CSRF cookie and field, as an attacker can.
start=$(date +%s.%N)
seq 1 "$requests" | xargs -P "$parallel" -I{} curl -s -o /dev/null -w '%{http_code}\n' \
  -H 'Cookie: kp_login_csrf=x' --data 'username=victim&password=wrong-{}&csrf_token=x' \
  "http://$addr/login" >"$work/codes"
end=$(date +%s.%N)
echo "after:  $(rss)"
echo "answers ($requests requests, $parallel at a time, $(echo "$end - $start" | bc) s):"
sort "$work/codes" | uniq -c
curl -s "http://$addr/metrics" | grep '^keyportal_password_hash'
printf 'healthz right after: '
curl -s -o /dev/null -w '%{time_total} s\n' "http://$addr/healthz"
