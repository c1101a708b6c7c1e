#!/usr/bin/env bash
# Fuzzes the JSON API from its own OpenAPI document with schemathesis, as an admin: any 5xx, or
# any answer the document does not describe (status, content type, body schema), fails.
#
#   .ci/schemathesis.sh [SECONDS]     time budget for the run (default 180)
#
# It builds keyportal, serves it on a free loopback port over a fresh data directory (its own
# private PostgreSQL cluster, or a fresh database when DATABASE_URL is set), makes an admin and
# a token with the CLI, runs `st run`, and removes everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."
max_time=${1:-180}
venv=${KEYPORTAL_CI_VENV:-/tmp/keyportal-ci-venv}
if [ ! -x "$venv/bin/st" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q schemathesis
fi

cargo build -q
bin=$PWD/target/debug/keyportal
. "$(dirname "$0")/../bench/portal.sh"
work=$(mktemp -d)
cleanup() { portal_stop "$work"; }
trap cleanup EXIT

if [ -n "${DATABASE_URL:-}" ]; then
  # A fresh database on the configured server, dropped afterwards by name.
  db="keyportal_fuzz_$$"
  psql "$DATABASE_URL" -qc "CREATE DATABASE $db" >/dev/null
  trap 'cleanup; psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null' EXIT
  export DATABASE_URL="${DATABASE_URL%/*}/$db"
fi

portal_start "$bin" "$work"
addr=$PORTAL_ADDR

head -c 24 /dev/urandom | base64 | "$bin" admin create --username fuzzadmin --password-stdin >/dev/null
token=$("$bin" token create --username fuzzadmin --name schemathesis)

# One worker: password hashing answers 503 `busy` past one hash per core, by design.
# DELETE /api/v1/tokens/{id} is left out: it could revoke the token the run itself uses.
status=0
"$venv/bin/st" run "http://$addr/api/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --exclude-path '/api/v1/tokens/{id}' \
  --max-time "$max_time" --workers 1 --request-timeout 10 \
  --suppress-health-check all --no-color || status=$?
if grep -E '" 5[0-9][0-9] |status=5[0-9][0-9]' "$work/serve.log" | grep -v 'status=503' | head -5 | grep -q .; then
  echo "the portal answered 5xx during the run:"; grep -E 'status=5[0-9][0-9]' "$work/serve.log" | head -20
  status=1
fi
exit "$status"
