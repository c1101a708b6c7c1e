#!/usr/bin/env bash
# Validator throughput on one mixed file of N keys (shared/keys/gen_bulk.py: 60% ed25519,
# 30% RSA 3072/4096, 10% ECDSA P-256), side by side in one run:
#   keyportal key check --lines --json   (every check on, one core)
#   ssh-keygen -l -f                       (OpenSSH: parse + fingerprint)
#   sshpubkeys SSHKey(strict=True).parse() (Python library)
# All three must produce the same SHA256 fingerprints. Usage: bench/compare.sh [N]
# KEYPORTAL_BASELINE_BIN=/path/to/older/keyportal adds that build to the same run (before/after).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
OUT=bench/out
mkdir -p "$OUT"
KEYS="$OUT/keys-$N.txt"
[ -s "$KEYS" ] || python3 ../shared/keys/gen_bulk.py "$N" > "$KEYS"
if [ ! -x "$OUT/venv/bin/python" ]; then
  python3 -m venv "$OUT/venv"
  "$OUT/venv/bin/pip" install -q sshpubkeys==3.3.1
fi
cargo build --release -q
KP=target/release/keyportal

secs() { local s e; s=$(date +%s.%N); "$@"; e=$(date +%s.%N); echo "$s $e" | awk '{printf "%.3f", $2-$1}'; }
# Median of N runs: one run of a fraction of a second is at the mercy of the VM's scheduler.
median() { local n=$1; shift; for _ in $(seq "$n"); do secs "$@"; echo; done | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

echo "keys: $(wc -l < "$KEYS") in $KEYS; cpu: $(nproc) cores, every tool on one core (taskset -c 0); median of 7/5/3 runs"
t_kp=$(median 7 sh -c "taskset -c 0 $KP key check --lines --json '$KEYS' > '$OUT/kp.jsonl'")
if [ -n "${KEYPORTAL_BASELINE_BIN:-}" ]; then
  t_base=$(median 7 sh -c "taskset -c 0 $KEYPORTAL_BASELINE_BIN key check --lines --json '$KEYS' > '$OUT/kp-baseline.jsonl'")
fi
t_kg=$(median 5 sh -c "taskset -c 0 ssh-keygen -l -E sha256 -f '$KEYS' > '$OUT/keygen.txt'")
t_py=$(median 3 sh -c "taskset -c 0 '$OUT/venv/bin/python' bench/sshpubkeys_check.py '$KEYS' > '$OUT/py.txt' 2>'$OUT/py.err'")

# Same fingerprints, same order, from all three.
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
kp = [json.loads(l) for l in open(f"{out}/kp.jsonl")]
assert all(v["valid"] for v in kp), [v for v in kp if not v["valid"]][:3]
kp = [v["sha256"] for v in kp]
kg = [l.split()[1] for l in open(f"{out}/keygen.txt")]
py = [l.strip() for l in open(f"{out}/py.txt") if l.strip()]
assert kp == kg, "keyportal and ssh-keygen disagree"
assert kp == py, "keyportal and sshpubkeys disagree"
print(f"fingerprints: all {len(kp)} identical across keyportal, ssh-keygen, sshpubkeys")
PY
n=$(wc -l < "$KEYS")
awk -v n="$n" -v a="$t_kp" -v b="$t_kg" -v c="$t_py" 'BEGIN {
  printf "%-32s %8s s %10.0f keys/s\n", "keyportal key check --lines", a, n/a;
  printf "%-32s %8s s %10.0f keys/s\n", "ssh-keygen -l -E sha256", b, n/b;
  printf "%-32s %8s s %10.0f keys/s\n", "sshpubkeys (strict)", c, n/c;
  printf "keyportal vs ssh-keygen: %.1fx   vs sshpubkeys: %.1fx\n", b/a, c/a }'
if [ -n "${t_base:-}" ]; then
  awk -v n="$n" -v a="$t_kp" -v z="$t_base" -v b="$t_kg" 'BEGIN {
    printf "%-32s %8s s %10.0f keys/s (%.1fx ssh-keygen); this build takes %.2fx its time\n", "baseline build", z, n/z, b/z, a/z }'
fi

# OpenSSH 10.5's post-quantum hybrid keys, against OpenSSH 10.5's own ssh-keygen.
bench/compare_pq.sh
