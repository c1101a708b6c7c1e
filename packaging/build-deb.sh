#!/usr/bin/env bash
# Builds the Debian package target/debian/keyportal_<version>_<arch>.deb with dpkg-deb from a
# staged tree: the binary, its man pages and shell completions (made by the binary itself,
# `keyportal generate`), the systemd unit, the settings file (a conffile), and the maintainer
# scripts in packaging/debian/. Depends is computed from the binary by dpkg-shlibdeps.
#
#   packaging/build-deb.sh                       cargo build --release, then package (stripped)
#   packaging/build-deb.sh --profile dev --no-build
#                                                package the debug binary already built
#                                                (CI: no second build; debug info stripped)
#   --no-strip                                   keep the binary's debug info
#
# Why not cargo-deb: it is one more tool to compile (`cargo install`, 2 min) on every fresh CI machine,
# and it would still need the man pages and completions generated first; dpkg-deb and
# dpkg-shlibdeps are already on every Debian machine. See the README, "Installing the Debian package".
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
build=1
strip=1
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=${2:?--profile needs a name}; shift 2 ;;
    --profile=*) profile=${1#--profile=}; shift ;;
    --no-build) build=0; shift ;;
    --no-strip) strip=0; shift ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "build-deb.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

target_dir=${CARGO_TARGET_DIR:-target}
case "$profile" in
  dev | debug) out_dir=$target_dir/debug ;;
  *) out_dir=$target_dir/$profile ;;
esac
if [ "$build" = 1 ]; then
  cargo build --locked --profile "$profile" --bin keyportal
fi
binary=$out_dir/keyportal
[ -x "$binary" ] || { echo "build-deb.sh: no binary at $binary (build it, or drop --no-build)" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
work=$target_dir/debian/work
stage=$work/keyportal
rm -rf "$work"
mkdir -p "$stage/DEBIAN"
trap 'rm -rf "$work"' EXIT

# The binary.
install -D -m 0755 "$binary" "$stage/usr/bin/keyportal"
[ "$strip" = 1 ] && strip --strip-debug --remove-section=.comment "$stage/usr/bin/keyportal"

# Man pages and completions, from the binary being packaged.
man=$stage/usr/share/man/man1
mkdir -p "$man"
"$binary" generate man "$man"
gzip -9n "$man"/*.1
"$binary" generate completions bash |
  install -D -m 0644 /dev/stdin "$stage/usr/share/bash-completion/completions/keyportal"
"$binary" generate completions zsh |
  install -D -m 0644 /dev/stdin "$stage/usr/share/zsh/vendor-completions/_keyportal"
"$binary" generate completions fish |
  install -D -m 0644 /dev/stdin "$stage/usr/share/fish/vendor_completions.d/keyportal.fish"

# The service, its settings, the docs Debian expects.
install -D -m 0644 packaging/keyportal.service "$stage/lib/systemd/system/keyportal.service"
install -D -m 0644 packaging/keyportal.env "$stage/etc/keyportal/keyportal.env"
install -D -m 0644 README.md "$stage/usr/share/doc/keyportal/README.md"
gzip -9n "$stage/usr/share/doc/keyportal/README.md"
printf '%s\n' "keyportal $version: see README.md.gz." "License: MIT OR Apache-2.0" \
  > "$stage/usr/share/doc/keyportal/copyright"

# Control files.
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$stage/DEBIAN/"
echo /etc/keyportal/keyportal.env > "$stage/DEBIAN/conffiles"
# dpkg-shlibdeps wants a source package's debian/control to read; a minimal one will do.
mkdir -p "$work/src/debian"
printf 'Source: keyportal\n\nPackage: keyportal\nArchitecture: any\n' > "$work/src/debian/control"
abs_bin=$(cd "$stage/usr/bin" && pwd)/keyportal
shlibs=$(cd "$work/src" && dpkg-shlibdeps -O -e"$abs_bin" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "build-deb.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
size_kb=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: keyportal
Version: $version
Architecture: $arch
Maintainer: keyportal maintainers <keyportal@localhost>
Installed-Size: $size_kb
Depends: $shlibs, passwd
Recommends: postgresql
Section: admin
Priority: optional
Homepage: https://github.com/keyportal/keyportal
Description: SSH key management portal
 Users, their public SSH keys, servers and grants, delivered to sshd through
 AuthorizedKeysCommand, with an SSH certificate authority, an HTTP API and a
 browser UI. The systemd unit runs the portal as the system account keyportal
 with its data, and its own PostgreSQL cluster, in /var/lib/keyportal.
 .
 PostgreSQL is recommended, not required: the private cluster needs its initdb
 and pg_ctl, an external database (DATABASE_URL) does not.
CONTROL
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
  xargs -0 md5sum) > "$work/md5sums"
mv "$work/md5sums" "$stage/DEBIAN/md5sums"

# xz for releases; gzip -1 for the (much larger) unstripped or debug builds CI packages.
compress=(-Zxz)
[ "$profile" = release ] && [ "$strip" = 1 ] || compress=(-Zgzip -z1)
mkdir -p "$target_dir/debian"
deb=$target_dir/debian/keyportal_${version}_$arch.deb
dpkg-deb --root-owner-group "${compress[@]}" --build "$stage" "$deb" >/dev/null
echo "$deb"
