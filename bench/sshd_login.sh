#!/usr/bin/env bash
# Login latency through keyportal against a real sshd, and time from revocation to refusal.
#   - two sshd on 127.0.0.1 with the same host key and settings: one reads a static
#     authorized_keys file (the baseline), one runs `keyportal fetch-keys ... %u %f`;
#   - N logins (`ssh root@127.0.0.1 true`) alternate between the two, so drift hits both;
#   - then R times: delete the key through the API, and time until the next login is refused.
# Needs root, openssh-server, openssh-client, curl. Usage: bench/sshd_login.sh [N] [R]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
R=${2:-20}
[ "$(id -u)" = 0 ] || { echo "run as root (sshd)" >&2; exit 2; }
cargo build --release -q
KP=$PWD/target/release/keyportal
DIR=$(mktemp -d -p /tmp kpsshd.XXXX); chmod 755 "$DIR"
export KEYPORTAL_DATA_DIR=$DIR/data KEYPORTAL_LOG=warn
PORT=18093
KEYPORTAL_LISTEN=127.0.0.1:$PORT "$KP" serve 2>"$DIR/serve.log" &
SERVE=$!
PIDS=()
trap 'kill ${PIDS[@]:-} 2>/dev/null; kill -TERM $SERVE 2>/dev/null; wait $SERVE 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$DIR"' EXIT
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do sleep 0.2; done
"$KP" admin create --username bench >/dev/null 2>&1
TOKEN=$("$KP" token create --username bench --name sshd-bench 2>/dev/null)
API=http://127.0.0.1:$PORT/api/v1
H=(-H "Authorization: Bearer $TOKEN" -H 'content-type: application/json')
LOGIN=$(id -un)

ssh-keygen -q -t ed25519 -N '' -f "$DIR/host"
ssh-keygen -q -t ed25519 -N '' -C alice -f "$DIR/alice"
curl -sf "${H[@]}" -d '{"username":"alice"}' "$API/users" >/dev/null
curl -sf "${H[@]}" -d '{"name":"web1"}' "$API/servers" >/dev/null
curl -sf "${H[@]}" -d "{\"username\":\"alice\",\"login\":\"$LOGIN\"}" "$API/servers/web1/grants" >/dev/null
add_key() {
  python3 -c 'import json,sys; print(json.dumps({"key": open(sys.argv[1]).read()}))' "$DIR/alice.pub" |
    curl -sf "${H[@]}" -d @- "$API/users/alice/keys" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
KEY_ID=$(add_key)
"$KP" server token --server web1 2>/dev/null > "$DIR/token"
chown nobody "$DIR/token"; chmod 600 "$DIR/token"
cp "$DIR/alice.pub" "$DIR/authorized_keys"
mkdir -p /run/sshd

start_sshd() { # name port extra-config-lines
  printf 'Port %s\nListenAddress 127.0.0.1\nHostKey %s/host\nPidFile %s/%s.pid\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\nStrictModes no\n%s\n' \
    "$2" "$DIR" "$DIR" "$1" "$3" > "$DIR/$1.conf"
  /usr/sbin/sshd -D -e -f "$DIR/$1.conf" 2>"$DIR/$1.log" &
  PIDS+=($!)
  until grep -q "Server listening" "$DIR/$1.log"; do sleep 0.05; done
}
start_sshd static 18094 "AuthorizedKeysFile $DIR/authorized_keys"
start_sshd portal 18095 "AuthorizedKeysFile none
AuthorizedKeysCommand $KP fetch-keys --portal http://127.0.0.1:$PORT --server web1 --token-file $DIR/token %u %f
AuthorizedKeysCommandUser nobody"

login() { # port -> prints milliseconds, exit status of ssh
  local t0 t1 rc=0
  t0=$(date +%s%N)
  ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
    -i "$DIR/alice" -p "$1" "$LOGIN@127.0.0.1" true </dev/null || rc=$?
  t1=$(date +%s%N)
  echo "$(( (t1 - t0) / 1000 )) $rc"
}
for _ in 1 2 3; do login 18094 >/dev/null; login 18095 >/dev/null; done # warm up
: > "$DIR/static.txt"; : > "$DIR/portal.txt"
for _ in $(seq "$N"); do
  login 18094 >> "$DIR/static.txt"
  login 18095 >> "$DIR/portal.txt"
done

: > "$DIR/revoke.txt"
for _ in $(seq "$R"); do
  t0=$(date +%s%N)
  curl -sf -X DELETE -H "Authorization: Bearer $TOKEN" "$API/keys/$KEY_ID"
  out=$(login 18095)
  t1=$(date +%s%N)
  echo "$(( (t1 - t0) / 1000 )) ${out#* }" >> "$DIR/revoke.txt"
  KEY_ID=$(add_key)
done

python3 - "$DIR" "$N" "$R" <<'PY'
import sys
d, n, r = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def load(name):
    rows = [l.split() for l in open(f"{d}/{name}.txt")]
    return sorted(int(t) / 1000 for t, _ in rows), [int(c) for _, c in rows]
def pct(xs, p):
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
s, sc = load("static"); p, pc = load("portal"); v, vc = load("revoke")
assert all(c == 0 for c in sc + pc), "every login must succeed"
assert all(c != 0 for c in vc), "every login after a revocation must be refused"
print(f"{n} logins each, ms      p50     p99")
print(f"static authorized_keys  {pct(s,50):6.1f}  {pct(s,99):6.1f}")
print(f"keyportal fetch-keys    {pct(p,50):6.1f}  {pct(p,99):6.1f}")
print(f"added by the fetch      {pct(p,50)-pct(s,50):6.1f}  {pct(p,99)-pct(s,99):6.1f}")
print(f"revoke -> refused login ({r} runs, all refused): p50 {pct(v,50):.1f} ms, max {v[-1]:.1f} ms")
PY
