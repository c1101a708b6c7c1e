#!/usr/bin/env bash
# Recovery drills, N times each (default 10), on a private cluster of this machine:
#   postmaster   one serve; SIGKILL of the postmaster; time until /readyz is 200 again with a
#                new postmaster.
#   takeover     two serve on one data dir; SIGKILL of the serve that last started the cluster,
#                then of the postmaster; time until the survivor's /readyz is 200 again. The
#                survivor is the next round's victim, and a fresh serve joins each round.
# Drills are 1 s apart, so each is a crash of a settled system. Prints every time, then the
# median and the maximum. /readyz is polled every 20 ms, so each
# figure is at most 20 ms late.
#   KEYPORTAL_BENCH_PROFILE=debug|release (default release)
#   KEYPORTAL_BENCH_BIN=path   another keyportal binary (a baseline) instead of this checkout's
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10}
PROFILE=${KEYPORTAL_BENCH_PROFILE:-release}
if [ -n "${KEYPORTAL_BENCH_BIN:-}" ]; then
  BIN=$KEYPORTAL_BENCH_BIN
else
  if [ "$PROFILE" = release ]; then cargo build --release --quiet; else cargo build --quiet; fi
  BIN=$PWD/target/$PROFILE/keyportal
fi

WORK=$(mktemp -d /tmp/kp-recovery.XXXXXX)
chmod 755 "$WORK" # the cluster's account must reach it (else it moves to /var/lib/keyportal)
export KEYPORTAL_DATA_DIR=$WORK/data
unset DATABASE_URL
PIDS=()
cleanup() {
  # One at a time: the last serve to leave stops the cluster.
  for p in "${PIDS[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# start NAME: a serve on a free port; sets ADDR and PID.
start() {
  local log=$WORK/$1.log
  KEYPORTAL_LISTEN=127.0.0.1:0 KEYPORTAL_LOG=warn,keyportal=info "$BIN" serve >"$log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  ADDR=
  for _ in $(seq 1 1200); do
    ADDR=$(sed -n 's/.*keyportal is listening on http:\/\/\([0-9.:]*\).*/\1/p' "$log" | head -1)
    [ -n "$ADDR" ] && return 0
    sleep 0.05
  done
  echo "serve did not start:" >&2
  cat "$log" >&2
  exit 1
}

postmaster() { head -1 "$KEYPORTAL_DATA_DIR/pgdata/postmaster.pid" 2>/dev/null || echo 0; }

# recovered ADDR OLD_POSTMASTER T0: seconds from T0 until a new postmaster runs and ADDR's
# /readyz answers 200.
recovered() {
  local addr=$1 old=$2 t0=$3
  for _ in $(seq 1 1500); do
    local now
    now=$(postmaster)
    if [ "$now" != "$old" ] && [ "$now" != 0 ] &&
      [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$addr/readyz")" = 200 ]; then
      awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.3f\n", a - b }'
      return 0
    fi
    sleep 0.02
  done
  echo "not recovered within 30 s" >&2
  exit 1
}

summary() {
  local name=$1
  shift
  printf '%s\n' "$@" | sort -n | awk -v name="$name" '
    { v[NR] = $1 }
    END {
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "%s: %d drills, median %.2f s, max %.2f s\n", name, NR, m, v[NR]
    }'
}

start a
A_ADDR=$ADDR
times=()
for i in $(seq 1 "$N"); do
  sleep 1 # independent crashes: the last recovery has settled
  old=$(postmaster)
  t0=$(date +%s.%N)
  kill -KILL "$old"
  t=$(recovered "$A_ADDR" "$old" "$t0")
  echo "postmaster drill $i: ready again after $t s"
  times+=("$t")
done
POSTMASTER_TIMES=("${times[@]}")

# Takeover: the victim is whoever last started the cluster.
VICTIM=$PID
start b
SURVIVOR=$PID
SURVIVOR_ADDR=$ADDR
times=()
for i in $(seq 1 "$N"); do
  sleep 1
  kill -KILL "$VICTIM"
  wait "$VICTIM" 2>/dev/null || true
  old=$(postmaster)
  t0=$(date +%s.%N)
  kill -KILL "$old"
  t=$(recovered "$SURVIVOR_ADDR" "$old" "$t0")
  echo "takeover drill $i: the surviving serve had the cluster ready after $t s"
  times+=("$t")
  VICTIM=$SURVIVOR
  start "joiner$i"
  SURVIVOR=$PID
  SURVIVOR_ADDR=$ADDR
done
summary "postmaster SIGKILL, one serve" "${POSTMASTER_TIMES[@]}"
summary "serve and postmaster SIGKILL, survivor takes over" "${times[@]}"
