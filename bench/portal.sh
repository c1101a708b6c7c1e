# Sourced by scripts that need a running portal (.ci/schemathesis.sh, bench/signin_flood.sh):
#   portal_start BIN WORK     serve on a free loopback port over WORK/data (its own private
#                             cluster, or DATABASE_URL when set); sets PORTAL_ADDR, PORTAL_PID,
#                             and exports KEYPORTAL_DATA_DIR so later CLI calls use the same data
#   portal_stop WORK          stop it, and remove WORK and any cluster relocated out of it
#   portal_on_kept BIN WORK   stop a serve over WORK's data, start BIN over a data set kept by
#                             `SCALE_KEEP=1 bench/scale.sh` (left running, for the next binary)
#                             and set PORTAL_BASE and PORTAL_AUTH (s000000's server token)
# shellcheck shell=bash

portal_start() {
  local bin=$1 work=$2
  export KEYPORTAL_DATA_DIR=$work/data
  KEYPORTAL_LISTEN=127.0.0.1:0 \
    KEYPORTAL_LOG=${KEYPORTAL_LOG:-warn,keyportal::server=info} \
    "$bin" serve >"$work/serve.log" 2>&1 &
  PORTAL_PID=$!
  PORTAL_ADDR=
  for _ in $(seq 1 600); do
    PORTAL_ADDR=$(sed -n 's/.*keyportal is listening on http:\/\/\([0-9.:]*\).*/\1/p' "$work/serve.log" | head -1)
    [ -n "$PORTAL_ADDR" ] && return 0
    kill -0 "$PORTAL_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "keyportal serve did not start:" >&2
  cat "$work/serve.log" >&2
  return 1
}

portal_stop() {
  local work=$1
  if [ -n "${PORTAL_PID:-}" ]; then
    kill -TERM "$PORTAL_PID" 2>/dev/null || true
    wait "$PORTAL_PID" 2>/dev/null || true
    PORTAL_PID=
  fi
  # As root, a data dir in a 0700 temporary directory has its cluster under /var/lib/keyportal.
  if [ -f "$work/data/cluster-location" ]; then rm -rf "$(cat "$work/data/cluster-location")"; fi
  rm -rf "$work"
}

portal_on_kept() {
  local bin=$1 work=$2 pid token
  # Only a serve over this data set: another portal on the machine (CI's, say) is left alone.
  for pid in $(pgrep -f " serve$"); do
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "KEYPORTAL_DATA_DIR=$work/data"; then
      kill -TERM "$pid" 2>/dev/null || true
      timeout 30 tail --pid="$pid" -f /dev/null || { echo "serve $pid did not stop" >&2; return 1; }
    fi
  done
  portal_start "$bin" "$work"
  PORTAL_BASE=http://$PORTAL_ADDR
  token=$("$bin" server token --server s000000 | tail -1)
  [ -n "$token" ] || { echo "no token for server s000000 in $work" >&2; return 1; }
  PORTAL_AUTH=(-H "Authorization: Bearer $token")
}
