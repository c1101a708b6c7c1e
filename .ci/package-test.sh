#!/usr/bin/env bash
# The Debian package, end to end, as root: build it from the debug binary CI already built,
# `dpkg -i` it, check what it put where (owners, modes, man pages, completions), verify the
# systemd unit, run the installed `keyportal serve` as the packaged account on the packaged
# paths until /readyz answers, create an admin with the installed CLI, stop serve with SIGTERM
# and see its private cluster stop, then `dpkg -r` (data kept) and `dpkg -P` (data, settings
# and the account gone). Any failure fails the script; the package is purged whatever happens.
#
# There is no systemd running here, so the unit is verified (systemd-analyze) but serve is
# started the way the unit would start it: as `keyportal`, with the unit's environment.
#
# The test runs in a mount namespace of its own with an overlay over /var/lib: dpkg's database
# lives there, and releases before 2026-12-06 kept a root-run checkout's relocated clusters in
# /var/lib/keyportal (now /var/lib/keyportal-clusters), so neither the machine's dpkg database
# nor any such cluster sees this test. Everything else (/usr, /etc, the
# accounts) is the machine's own and is cleaned up by the purge.
#
#   .ci/package-test.sh            build target/debian/keyportal_*.deb from target/debug, test it
#   .ci/package-test.sh FILE.deb   test that package
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${KEYPORTAL_PACKAGE_TEST_NS:-}" ]; then
  [ "$(id -u)" = 0 ] || { echo "package-test: run as root (dpkg -i, runuser)" >&2; exit 1; }
  # The tools it uses, installed when missing (postgresql comes with ./test's packages).
  missing=()
  command -v dpkg-shlibdeps >/dev/null || missing+=(dpkg-dev)
  command -v strip >/dev/null || missing+=(binutils)
  command -v systemd-analyze >/dev/null || missing+=(systemd)
  command -v man >/dev/null || missing+=(man-db)
  command -v curl >/dev/null || missing+=(curl)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "package-test: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  if [ $# -gt 0 ]; then
    deb=$(realpath "$1")
  else
    start=$(date +%s)
    deb=$(realpath "$(packaging/build-deb.sh --profile dev --no-build)")
    echo "package-test: built $deb in $(($(date +%s) - start)) s"
  fi
  overlay=$(mktemp -d /tmp/keyportal-package-test.XXXXXX)
  mkdir "$overlay/upper" "$overlay/work"
  set +e
  KEYPORTAL_PACKAGE_TEST_NS=$overlay unshare --mount --propagation private -- \
    bash -c 'mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$1/upper,workdir=$1/work" /var/lib &&
             exec "$2" "$3"' _ "$overlay" "$0" "$deb"
  status=$?
  set -e
  rm -rf "$overlay"
  exit "$status"
fi

deb=$1
start=$(date +%s)
scratch=$(mktemp -d /tmp/keyportal-package-run.XXXXXX)
serve_pid=

fail() {
  echo "package-test: FAILED: $*" >&2
  if [ -s "$scratch/serve.log" ]; then
    echo "--- serve's log" >&2
    tail -n 40 "$scratch/serve.log" >&2
  fi
  exit 1
}

cleanup() {
  status=$?
  if [ -n "$serve_pid" ] && kill -0 "$serve_pid" 2>/dev/null; then
    kill -TERM "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
  fi
  if dpkg-query -W -f='${Status}' keyportal 2>/dev/null | grep -qv 'not-installed'; then
    dpkg -P keyportal >/dev/null 2>&1 || echo "package-test: could not purge keyportal" >&2
  fi
  rm -rf "$scratch"
  exit "$status"
}
trap cleanup EXIT

step() { printf -- '--- %s (%ss)\n' "$1" "$(($(date +%s) - start))"; }

# The package's account must not exist beforehand: the test proves the package makes it.
! getent passwd keyportal >/dev/null || fail "an account named keyportal already exists"
! dpkg-query -W keyportal >/dev/null 2>&1 ||
  dpkg-query -W -f='${Status}' keyportal | grep -q 'not-installed' ||
  fail "keyportal is already installed"

step "dpkg -i $(basename "$deb")"
dpkg-deb -I "$deb" | sed -n 's/^ \(Depends\|Recommends\|Version\):/  \1:/p'
DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" || fail "dpkg -i"
/usr/bin/keyportal --version

step "files, owners and modes"
owner_mode() { stat -c '%U:%G %a' "$1"; }
[ "$(owner_mode /usr/bin/keyportal)" = "root:root 755" ] || fail "/usr/bin/keyportal: $(owner_mode /usr/bin/keyportal)"
[ "$(owner_mode /lib/systemd/system/keyportal.service)" = "root:root 644" ] || fail "unit: $(owner_mode /lib/systemd/system/keyportal.service)"
[ "$(owner_mode /etc/keyportal/keyportal.env)" = "root:keyportal 640" ] || fail "env file: $(owner_mode /etc/keyportal/keyportal.env)"
[ "$(owner_mode /etc/keyportal)" = "root:keyportal 750" ] || fail "/etc/keyportal: $(owner_mode /etc/keyportal)"
[ "$(owner_mode /var/lib/keyportal)" = "keyportal:keyportal 700" ] || fail "data dir: $(owner_mode /var/lib/keyportal)"
grep -qx /etc/keyportal/keyportal.env /var/lib/dpkg/info/keyportal.conffiles || fail "the env file is not a conffile"
IFS=: read -r _ _ _ _ _ home shell < <(getent passwd keyportal)
[ "$home" = /var/lib/keyportal ] || fail "keyportal's home is $home"
case "$shell" in */nologin | */false) ;; *) fail "keyportal's shell is $shell" ;; esac
[ "$(id -u keyportal)" -lt 1000 ] || fail "keyportal is not a system account (uid $(id -u keyportal))"
pages=$(ls /usr/share/man/man1/keyportal*.1.gz | wc -l)
[ "$pages" -ge 20 ] || fail "only $pages man pages"
for page in /usr/share/man/man1/keyportal*.1.gz; do gzip -t "$page" || fail "$page is not gzip"; done
MANWIDTH=80 man -l /usr/share/man/man1/keyportal-serve.1.gz 2>/dev/null | grep -q 'KEYPORTAL_LISTEN' ||
  fail "man keyportal-serve does not render or misses KEYPORTAL_LISTEN"
grep -q 'complete -F _keyportal' /usr/share/bash-completion/completions/keyportal || fail "bash completion"
grep -q '^#compdef keyportal' /usr/share/zsh/vendor-completions/_keyportal || fail "zsh completion"
grep -q 'complete -c keyportal' /usr/share/fish/vendor_completions.d/keyportal.fish || fail "fish completion"
echo "  $pages man pages, bash/zsh/fish completions, unit, env file 0640 root:keyportal"

step "systemd-analyze verify"
systemd-analyze verify --man=no /lib/systemd/system/keyportal.service || fail "systemd-analyze verify"

step "serve as keyportal with the unit's environment"
unit_env=()
while IFS= read -r line; do
  unit_env+=("$line")
done < <(sed -n 's/^Environment=//p' /lib/systemd/system/keyportal.service | tr ' ' '\n')
while IFS= read -r line; do
  unit_env+=("$line")
done < <(grep -E '^[A-Z_][A-Z0-9_]*=' /etc/keyportal/keyportal.env || true)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
[ "$(sed -n 's/^User=//p' /lib/systemd/system/keyportal.service)" = keyportal ] || fail "the unit's User= is not keyportal"
exec_start=$(sed -n 's/^ExecStart=//p' /lib/systemd/system/keyportal.service)
[ "$exec_start" = "/usr/bin/keyportal serve" ] || fail "unexpected ExecStart=$exec_start"
# shellcheck disable=SC2086 # ExecStart is split into words, as systemd does
(cd / && exec runuser -u keyportal -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "${unit_env[@]}" \
  KEYPORTAL_LISTEN="127.0.0.1:$port" $exec_start) >"$scratch/serve.log" 2>&1 &
serve_pid=$!
ready=
for _ in $(seq 1 600); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; then
    ready=1
    break
  fi
  kill -0 "$serve_pid" 2>/dev/null || fail "serve exited before it was ready"
  sleep 0.1
done
[ -n "$ready" ] || fail "serve not ready within 60 s"
echo "  /readyz answered on port $port"

step "the data directory and the private cluster are keyportal's"
[ "$(owner_mode /var/lib/keyportal)" = "keyportal:keyportal 700" ] || fail "data dir now $(owner_mode /var/lib/keyportal)"
[ "$(stat -c %U /var/lib/keyportal/pgdata)" = keyportal ] || fail "pgdata is $(stat -c %U /var/lib/keyportal/pgdata)'s"
postmaster=$(head -1 /var/lib/keyportal/pgdata/postmaster.pid)
[ "$(ps -o user= -p "$postmaster" | tr -d ' ')" = keyportal ] ||
  fail "the postmaster ($postmaster) runs as $(ps -o user= -p "$postmaster")"
serve_main=$(pgrep -u keyportal -x keyportal | head -1)
[ -n "$serve_main" ] || fail "no keyportal process of the account keyportal"
echo "  postmaster $postmaster and serve $serve_main run as keyportal"

step "keyportal admin create and token create with the installed CLI, as keyportal"
echo 'correct horse battery staple' |
  (cd / && runuser -u keyportal -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "${unit_env[@]}" \
    /usr/bin/keyportal admin create --username ops --password-stdin) || fail "admin create"
token=$(cd / && runuser -u keyportal -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "${unit_env[@]}" \
  /usr/bin/keyportal token create --username ops --name package-test) || fail "token create"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
  "http://127.0.0.1:$port/api/v1/users")
[ "$code" = 200 ] || fail "GET /api/v1/users as the new admin answered $code"
echo "  the admin can use the API"

step "SIGTERM: serve stops, and its cluster with it"
kill -TERM "$serve_main"
for _ in $(seq 1 600); do
  kill -0 "$serve_pid" 2>/dev/null || break
  sleep 0.1
done
! kill -0 "$serve_pid" 2>/dev/null || fail "serve still running 60 s after SIGTERM"
wait "$serve_pid" || fail "serve exited with status $? on SIGTERM"
serve_pid=
# Gone, or a zombie its reaper has yet to collect: pg_ctl stop -w returned before serve did.
alive() { case "$(ps -o stat= -p "$1" 2>/dev/null)" in '' | Z*) return 1 ;; esac; }
! alive "$postmaster" || fail "the postmaster ($postmaster) outlived serve: $(ps -o user,stat,args -p "$postmaster")"
[ ! -e /var/lib/keyportal/pgdata/postmaster.pid ] || fail "postmaster.pid left behind"
grep -q 'stopping the private PostgreSQL cluster' "$scratch/serve.log" || fail "serve did not say it stopped the cluster"
echo "  serve and the cluster stopped cleanly"

step "dpkg -i again (the upgrade path): settings edits and data kept"
echo 'KEYPORTAL_LOG=info' >> /etc/keyportal/keyportal.env
DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold "$deb" >/dev/null || fail "dpkg -i over the installed package"
grep -qx 'KEYPORTAL_LOG=info' /etc/keyportal/keyportal.env || fail "the upgrade lost the settings edit"
[ "$(owner_mode /etc/keyportal/keyportal.env)" = "root:keyportal 640" ] || fail "env file after upgrade: $(owner_mode /etc/keyportal/keyportal.env)"
[ "$(owner_mode /var/lib/keyportal)" = "keyportal:keyportal 700" ] || fail "data dir after upgrade: $(owner_mode /var/lib/keyportal)"
[ -f /var/lib/keyportal/pgdata/PG_VERSION ] || fail "the upgrade lost the data"

step "dpkg -r: the program goes, data and settings stay"
dpkg -r keyportal >/dev/null || fail "dpkg -r"
[ ! -e /usr/bin/keyportal ] || fail "/usr/bin/keyportal left after dpkg -r"
[ ! -e /lib/systemd/system/keyportal.service ] || fail "unit left after dpkg -r"
[ ! -e /usr/share/man/man1/keyportal.1.gz ] || fail "man page left after dpkg -r"
[ -d /var/lib/keyportal/pgdata ] || fail "dpkg -r removed the data"
[ -f /etc/keyportal/keyportal.env ] || fail "dpkg -r removed the settings"
getent passwd keyportal >/dev/null || fail "dpkg -r removed the account"

step "dpkg -P: data, settings and the account go"
dpkg -P keyportal >/dev/null || fail "dpkg -P"
[ ! -e /var/lib/keyportal ] || fail "/var/lib/keyportal left after dpkg -P"
[ ! -e /etc/keyportal ] || fail "/etc/keyportal left after dpkg -P"
! getent passwd keyportal >/dev/null || fail "the account keyportal left after dpkg -P"
! getent group keyportal >/dev/null || fail "the group keyportal left after dpkg -P"
! dpkg-query -W -f='${Status}\n' keyportal 2>/dev/null | grep -q 'install ok' || fail "still registered with dpkg"

step "package test passed"
