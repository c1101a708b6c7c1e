#!/usr/bin/env bash
# Bulk import through the API: R requests of B distinct Ed25519 keys each (the import endpoint,
# one user), timed end to end; prints keys/s. Each run gets its own portal and private cluster.
#   bench/import_rate.sh [R] [B]                       (defaults 30 x 3000)
#   KEYPORTAL_BENCH_BIN=path  another binary (a baseline); else this checkout's release build
set -euo pipefail
cd "$(dirname "$0")/.."
R=${1:-30}
B=${2:-3000}
if [ -n "${KEYPORTAL_BENCH_BIN:-}" ]; then bin=$KEYPORTAL_BENCH_BIN; else cargo build --release -q; bin=$PWD/target/release/keyportal; fi
. bench/portal.sh
work=$(mktemp -d /tmp/kp-import.XXXXXX)
chmod 755 "$work"
trap 'portal_stop "$work"' EXIT
unset DATABASE_URL
portal_start "$bin" "$work"
head -c 24 /dev/urandom | base64 | "$bin" admin create --username bench --password-stdin >/dev/null
token=$("$bin" token create --username bench --name bench)
curl -sf -X PUT -H "Authorization: Bearer $token" -H 'content-type: application/json' \
  -d "$(curl -sf -H "Authorization: Bearer $token" "http://$PORTAL_ADDR/api/v1/policy" |
    python3 -c 'import json,sys; p=json.load(sys.stdin); p["max_keys_per_user"]=100000; print(json.dumps(p))')" \
  "http://$PORTAL_ADDR/api/v1/policy" >/dev/null
python3 - "$work" "$R" "$B" <<'PY'
import base64, hashlib, struct, sys
# Distinct valid Ed25519 keys: multiples of the base point, computed with Python integers.
p = 2**255 - 19; d = (-121665 * pow(121666, p - 2, p)) % p
def add(P, Q):
    (x1, y1), (x2, y2) = P, Q
    k = d * x1 * x2 * y1 * y2 % p
    return ((x1 * y2 + x2 * y1) * pow(1 + k, p - 2, p) % p, (y1 * y2 + x1 * x2) * pow(1 - k, p - 2, p) % p)
gy = 4 * pow(5, p - 2, p) % p
u = (gy * gy - 1) % p; v = (d * gy * gy + 1) % p
x = pow(u * pow(v, p - 2, p), (p + 3) // 8, p)
if (x * x - u * pow(v, p - 2, p)) % p: x = x * pow(2, (p - 1) // 4, p) % p
if x & 1: x = p - x
G = (x, gy); P = G
work, R, B = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for r in range(R):
    with open(f"{work}/batch{r}", "w") as f:
        for i in range(B):
            P = add(P, G)
            enc = bytearray(P[1].to_bytes(32, "little")); enc[31] |= (P[0] & 1) << 7
            blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + bytes(enc)
            f.write("ssh-ed25519 " + base64.b64encode(blob).decode() + f" k{r}-{i}\n")
PY
start=$(date +%s.%N)
for r in $(seq 0 $((R - 1))); do
  curl -sf -H "Authorization: Bearer $token" --data-binary "@$work/batch$r" \
    "http://$PORTAL_ADDR/api/v1/users/bench/keys/import" -o "$work/report$r.json"
done
end=$(date +%s.%N)
added=$(python3 -c 'import glob, json, sys; print(sum(json.load(open(f))["added"] for f in glob.glob(sys.argv[1] + "/report*.json")))' "$work")
awk -v a="$added" -v s="$start" -v e="$end" 'BEGIN { printf "%d keys imported in %.2f s: %.0f keys/s\n", a, e - s, a / (e - s) }'
