#!/usr/bin/env bash
# OpenSSH 10.5's ssh-keygen and keyportal on N freshly generated keys of one type (default
# 1000 ssh-mldsa44-ed25519): every key must be valid for keyportal with the same SHA256
# fingerprint, bits and type that `ssh-keygen -l` prints. Builds OpenSSH 10.5 first if needed
# (.ci/openssh-10.5.sh). Exits 1 on any disagreement.
#   bench/openssh_agreement.sh [N] [TYPE]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
type=${2:-mldsa44-ed25519}
prefix=$(.ci/openssh-10.5.sh)
cargo build -q
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for i in $(seq 1 "$n"); do
  "$prefix/bin/ssh-keygen" -t "$type" -N "" -q -C "k$i" -f "$work/k$i"
  cat "$work/k$i.pub"
done > "$work/all.pub"
# ssh-keygen -l on a file of many keys prints one line per key: bits, fingerprint, comment, (TYPE).
"$prefix/bin/ssh-keygen" -l -E sha256 -f "$work/all.pub" | awk '{print $2, $1}' > "$work/openssh.txt"
target/debug/keyportal key check --json --lines "$work/all.pub" |
  python3 -c '
import json, sys
for line in sys.stdin:
    d = json.loads(line)
    print(d["sha256"], d["bits"]) if d.get("valid") else print("REJECTED", d.get("code"), d.get("message"))
' > "$work/keyportal.txt"
if diff -q "$work/openssh.txt" "$work/keyportal.txt" >/dev/null; then
  echo "$n $type keys: keyportal and OpenSSH 10.5's ssh-keygen agree on every fingerprint and size"
else
  diff "$work/openssh.txt" "$work/keyportal.txt" | head -20
  exit 1
fi
