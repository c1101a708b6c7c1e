#!/usr/bin/env bash
# Validator throughput on OpenSSH 10.5's post-quantum hybrid keys (ssh-mldsa44-ed25519), side
# by side in one run, each tool on one core (taskset -c 0), median of 5 runs:
#   keyportal key check --lines --json   (every check on)
#   OpenSSH 10.5 ssh-keygen -l -E sha256   (parse + fingerprint)
# The file is U unique keys made by that ssh-keygen, repeated to N lines. Both must print the
# same fingerprints. Usage: bench/compare_pq.sh [N] [U]   (defaults 20000 and 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
U=${2:-1000}
prefix=$(.ci/openssh-10.5.sh)
KG=$prefix/bin/ssh-keygen
OUT=bench/out
mkdir -p "$OUT"
KEYS="$OUT/pq-keys-$N.txt"
if [ ! -s "$KEYS" ]; then
  work=$(mktemp -d)
  for i in $(seq 1 "$U"); do
    "$KG" -q -t mldsa44-ed25519 -N "" -C "k$i" -f "$work/k$i"
    cat "$work/k$i.pub"
  done > "$work/unique"
  rm -rf "$work"/k*
  awk -v n="$N" '{ k[NR] = $0 } END { for (i = 0; i < n; i++) print k[i % NR + 1] }' "$work/unique" > "$KEYS"
  rm -rf "$work"
fi
cargo build --release -q
KP=target/release/keyportal

secs() { local s e; s=$(date +%s.%N); "$@"; e=$(date +%s.%N); echo "$s $e" | awk '{printf "%.3f", $2-$1}'; }
median() { local n=$1; shift; for _ in $(seq "$n"); do secs "$@"; echo; done | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

t_kp=$(median 5 sh -c "taskset -c 0 $KP key check --lines --json '$KEYS' > '$OUT/pq-kp.jsonl'")
t_kg=$(median 5 sh -c "taskset -c 0 $KG -l -E sha256 -f '$KEYS' > '$OUT/pq-keygen.txt'")
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
kp = [json.loads(l) for l in open(f"{out}/pq-kp.jsonl")]
assert all(v["valid"] for v in kp), [v for v in kp if not v["valid"]][:3]
kg = [l.split()[1] for l in open(f"{out}/pq-keygen.txt")]
assert [v["sha256"] for v in kp] == kg, "keyportal and ssh-keygen 10.5 disagree"
PY
lines=$(wc -l < "$KEYS")
echo "$lines ssh-mldsa44-ed25519 lines ($U unique), one core each, median of 5:"
awk -v n="$lines" -v a="$t_kp" -v b="$t_kg" 'BEGIN {
  printf "  keyportal key check   %7.3f s  %9.0f keys/s\n", a, n / a
  printf "  ssh-keygen -l (10.5)  %7.3f s  %9.0f keys/s\n", b, n / b
  printf "  keyportal / ssh-keygen: %.1fx\n", b / a
}'
