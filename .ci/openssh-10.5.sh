#!/usr/bin/env bash
# Builds OpenSSH 10.5p1 (sshd, ssh, ssh-keygen) from ../shared/vendor once and caches it outside
# the clone, for tests that need the ssh-mldsa44-ed25519@openssh.com key type (Debian's 9.2
# does not know it). Prints the install prefix (its bin/ and sbin/ hold the programs).
#   KEYPORTAL_OPENSSH_CACHE   where to install (default /var/cache/keyportal/openssh-10.5 as
#                             root, else ~/.cache/keyportal/openssh-10.5)
#   KEYPORTAL_OPENSSH_SOURCE  the tarball (default ../shared/vendor/openssh-portable-V_10_5_P1.tar.gz)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
src=${KEYPORTAL_OPENSSH_SOURCE:-$here/../shared/vendor/openssh-portable-V_10_5_P1.tar.gz}
if [ "$(id -u)" = 0 ]; then
  default_prefix=/var/cache/keyportal/openssh-10.5
else
  default_prefix=${XDG_CACHE_HOME:-$HOME/.cache}/keyportal/openssh-10.5
fi
prefix=${KEYPORTAL_OPENSSH_CACHE:-$default_prefix}
# One build at a time (test binaries may ask at once); the second finds it built.
mkdir -p "$(dirname "$prefix")"
exec 9>"$prefix.lock"
flock 9
if [ -x "$prefix/bin/ssh-keygen" ] && "$prefix/bin/ssh" -V 2>&1 | grep -q "OpenSSH_10.5"; then
  echo "$prefix"
  exit 0
fi
missing=
for p in autoconf automake make gcc libssl-dev zlib1g-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ] && [ "$(id -u)" != 0 ]; then
  echo "building OpenSSH 10.5 needs:$missing (apt-get install$missing)" >&2
  exit 1
fi
if [ -n "$missing" ]; then
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >&2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar xzf "$src" -C "$work"
cd "$work"/openssh-portable-*
{
  autoreconf -i
  ./configure --prefix="$prefix" --sysconfdir="$prefix/etc" \
    --with-privsep-path="$prefix/empty" --without-pam --without-kerberos5
  make -j"$(nproc)"
  make install-nokeys
} >&2
echo "$prefix"
