#!/usr/bin/env bash
# A soak of one `serve` on its own private cluster: for SECONDS, a writer adds and deletes keys,
# a server reads authorized_keys (with and without %f), a member lists keys and a person signs
# in, all at once. Every 30 s it samples the server's memory (VmRSS) and open file descriptors;
# at the end it counts answers by status. Loopback only; every loop stops at the deadline.
#
#   bench/soak.sh [SECONDS]      (default 600)
#   KEYPORTAL_BENCH_PROFILE=debug bench/soak.sh 600      (skip the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
profile=${KEYPORTAL_BENCH_PROFILE:-release}
if [ "$profile" = release ]; then cargo build -q --release; else cargo build -q; fi
bin=$PWD/target/$profile/keyportal
. bench/portal.sh
work=$(mktemp -d)
trap 'portal_stop "$work"' EXIT
unset DATABASE_URL
portal_start "$bin" "$work"
base="http://$PORTAL_ADDR"
pid=$PORTAL_PID

password='a long soak password'
echo "$password" | "$bin" admin create --username ops --password-stdin >/dev/null
token=$("$bin" token create --username ops --name soak)
api() { curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $token" -H 'content-type: application/json' "$@"; }
api -d '{"username":"alice"}' "$base/api/v1/users" >/dev/null
api -d '{"name":"web1"}' "$base/api/v1/servers" >/dev/null
api -d '{"username":"alice","login":"deploy"}' "$base/api/v1/servers/web1/grants" >/dev/null
server_token=$("$bin" server token --server web1)
mkdir "$work/keys"
for i in $(seq 1 50); do ssh-keygen -q -t ed25519 -N '' -C "soak-$i" -f "$work/keys/k$i"; done
fingerprint=$(ssh-keygen -l -E sha256 -f "$work/keys/k1.pub" | awk '{print $2}')
api -d "{\"key\": \"$(cat "$work/keys/k1.pub")\"}" "$base/api/v1/users/alice/keys" >/dev/null

end=$(( $(date +%s) + seconds ))
writer() {
  while [ "$(date +%s)" -lt "$end" ]; do
    for i in $(seq 2 50); do
      id=$(curl -s -H "Authorization: Bearer $token" -H 'content-type: application/json' \
        -d "{\"key\": \"$(cat "$work/keys/k$i.pub")\"}" -w '\n%{http_code}' "$base/api/v1/users/alice/keys")
      echo "${id##*$'\n'}"
      kid=$(printf '%s' "${id%$'\n'*}" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
      [ -n "$kid" ] && api -X DELETE "$base/api/v1/keys/$kid"
    done
  done
}
server() {
  while [ "$(date +%s)" -lt "$end" ]; do
    curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $server_token" \
      "$base/api/v1/servers/web1/authorized_keys?login=deploy"
    curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $server_token" \
      "$base/api/v1/servers/web1/authorized_keys?login=deploy&fingerprint=$fingerprint"
  done
}
reader() {
  while [ "$(date +%s)" -lt "$end" ]; do api "$base/api/v1/users/alice/keys"; api "$base/api/v1/audit?limit=20"; done
}
signer() {
  while [ "$(date +%s)" -lt "$end" ]; do
    curl -s -o /dev/null -w '%{http_code}\n' -H 'Cookie: kp_login_csrf=s' \
      --data-urlencode username=ops --data-urlencode "password=$password" --data csrf_token=s "$base/login"
    sleep 1
  done
}
sample() {
  while [ "$(date +%s)" -lt "$end" ]; do
    printf '%s rss_kb=%s fds=%s\n' "$(date -u +%T)" \
      "$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")" "$(ls "/proc/$pid/fd" | wc -l)"
    sleep 30
  done
}
# (Not a bare `wait`: serve is a background job of this shell too.)
jobs=()
sample & jobs+=($!)
writer >"$work/w" & jobs+=($!)
server >"$work/s" & jobs+=($!)
reader >"$work/r" & jobs+=($!)
signer >"$work/l" & jobs+=($!)
wait "${jobs[@]}"
printf '%s rss_kb=%s fds=%s (end)\n' "$(date -u +%T)" \
  "$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")" "$(ls "/proc/$pid/fd" | wc -l)"
for f in w s r l; do printf '%s: ' "$f"; sort "$work/$f" | uniq -c | tr '\n' ' '; echo; done
fivexx=$(cat "$work"/[wsrl] | grep -c '^5' || true)
echo "5xx answers: $fivexx"
[ "$fivexx" -eq 0 ]
