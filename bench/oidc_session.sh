#!/usr/bin/env bash
# What a provider sign-in costs every later request (issue 17): GET /api/v1/me on a browser
# session, with wrk, for
#   1. a password session (the baseline: no provider identity, nothing to re-check);
#   2. a provider session whose re-check is not due (KEYPORTAL_OIDC_RECHECK_MINUTES=5): the
#      session lookup's one extra EXISTS;
#   3. a provider session due for a re-check at every request (RECHECK_MINUTES=0): a
#      refresh-token grant and a userinfo call at the provider, one at a time per identity
#      (the check's lease); requests meanwhile go on without waiting.
# The provider is tests/oidc_provider (panva's oidc-provider under Node.js), on this machine.
# Usage: bench/oidc_session.sh [seconds per run]   (release build, private cluster, wrk, node)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
command -v node >/dev/null || { echo "node is needed: apt-get install nodejs npm" >&2; exit 2; }
[ -e tests/oidc_provider/node_modules/oidc-provider ] || (cd tests/oidc_provider && npm ci --no-audit --no-fund >/dev/null)
cargo build --release -q --bin keyportal
KP=$PWD/target/release/keyportal

DIR=$(mktemp -d -p /tmp kpoidc.XXXX); chmod 755 "$DIR"
export KEYPORTAL_DATA_DIR=$DIR/data KEYPORTAL_LOG=warn KEYPORTAL_SHARED_PRIME_SCAN_HOURS=0
PORT=18093
BASE=http://127.0.0.1:$PORT
KP_REDIRECT_URI=$BASE/auth/oidc/callback KP_POST_LOGOUT_URI=$BASE/login \
  node tests/oidc_provider/provider.mjs >"$DIR/idp.out" 2>/dev/null &
IDP=$!
SERVE=
cleanup() {
  [ -n "$SERVE" ] && { kill -TERM "$SERVE" 2>/dev/null; wait "$SERVE" 2>/dev/null || true; }
  kill "$IDP" 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$DIR"
}
trap cleanup EXIT
until [ -s "$DIR/idp.out" ]; do sleep 0.1; done
ISSUER=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["issuer"])' "$DIR/idp.out")

serve() { # $1: re-check minutes
  KEYPORTAL_LISTEN=127.0.0.1:$PORT KEYPORTAL_PUBLIC_URL=$BASE KEYPORTAL_OIDC_ISSUER=$ISSUER \
    KEYPORTAL_OIDC_CLIENT_ID=keyportal KEYPORTAL_OIDC_CLIENT_SECRET=keyportal-test-secret \
    KEYPORTAL_OIDC_SCOPES=openid,profile,email,groups KEYPORTAL_OIDC_RECHECK_MINUTES=$1 \
    KEYPORTAL_SESSION_IDLE_MINUTES=600 "$KP" serve 2>>"$DIR/serve.log" &
  SERVE=$!
  until curl -sf "$BASE/readyz" >/dev/null; do sleep 0.2; done
}
stop() { kill -TERM "$SERVE"; wait "$SERVE" 2>/dev/null || true; SERVE=; }

serve 5
echo "bench passphrase 123" | "$KP" admin create --username bench --password-stdin >/dev/null 2>&1
# Password session.
J1=$DIR/jar-password
csrf=$(curl -sf -c "$J1" "$BASE/login" | sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' | head -1)
curl -sf -o /dev/null -b "$J1" -c "$J1" --data-urlencode username=bench \
  --data-urlencode "password=bench passphrase 123" --data-urlencode "csrf_token=$csrf" "$BASE/login"
PASSWORD_SESSION=$(awk '$6 == "kp_session" { print $7 }' "$J1")
# Provider session: the portal's redirect, the provider's form, and back (curl follows).
J2=$DIR/jar-oidc
form=$(curl -sfL -b "$J2" -c "$J2" -w '%{url_effective}' -o /dev/null "$BASE/auth/oidc/login")
curl -sfL -o /dev/null -b "$J2" -c "$J2" -d username=alice -d password=alice-pass "$form"
OIDC_SESSION=$(awk '$6 == "kp_session" { print $7 }' "$J2")
[ -n "$PASSWORD_SESSION" ] && [ -n "$OIDC_SESSION" ] || { echo "sign-in failed" >&2; exit 1; }

measure() { # $1: label, $2: session
  curl -sf -o /dev/null -H "Cookie: kp_session=$2" "$BASE/api/v1/me" || { echo "$1: the session does not work" >&2; exit 1; }
  wrk -t2 -c4 -d"${SECS}s" --latency -H "Cookie: kp_session=$2" "$BASE/api/v1/me" >"$DIR/wrk.out"
  printf '%-48s %9s req/s  p50 %8s  p99 %8s  non-2xx %s\n' "$1" \
    "$(awk '/Requests\/sec/ { print $2 }' "$DIR/wrk.out")" \
    "$(awk '$1 == "50%" { print $2 }' "$DIR/wrk.out")" \
    "$(awk '$1 == "99%" { print $2 }' "$DIR/wrk.out")" \
    "$(awk '/Non-2xx/ { print $5 }' "$DIR/wrk.out" | grep . || echo 0)"
}
echo "GET /api/v1/me on a browser session, wrk -t2 -c4, ${SECS}s each"
measure "password session (baseline)" "$PASSWORD_SESSION"
measure "provider session, re-check not due (5 min)" "$OIDC_SESSION"
stop
serve 0
measure "provider session, check due at every request" "$OIDC_SESSION"
echo "errors logged by serve: $(grep -c ' ERROR ' "$DIR/serve.log" || true)"
