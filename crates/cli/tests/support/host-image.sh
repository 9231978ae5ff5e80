#!/usr/bin/env bash
# Builds a tiny "machine without systemd" image from this host's own files (no registry):
# busybox (sh and a few applets), useradd/userdel/setpriv with the libraries ldd lists, the
# meridian binary at /opt/meridian, empty account files. For package.rs's test of
# `meridian install` on a real root. Usage: host-image.sh BIN TAG
set -euo pipefail
bin=$1; tag=$2
ctx=$(mktemp -d); trap 'rm -rf "$ctx"' EXIT
r=$ctx/rootfs
mkdir -p "$r/bin" "$r/usr/sbin" "$r/usr/bin" "$r/etc" "$r/tmp" "$r/root" "$r/opt"
chmod 1777 "$r/tmp"
cp /bin/busybox "$r/bin/busybox"
for a in sh cat ls mkdir rm sleep stat grep id head; do ln -s busybox "$r/bin/$a"; done
for t in /usr/sbin/useradd /usr/sbin/userdel /usr/bin/setpriv; do install -D -m 0755 "$t" "$r$t"; done
install -m 0755 "$bin" "$r/opt/meridian"
ldd /usr/sbin/useradd /usr/sbin/userdel /usr/bin/setpriv "$bin" \
  | awk '/=> \// { print $3 } /^[ \t]*\/.*ld-linux/ { print $1 }' | sort -u | while read -r lib; do
  install -D -m 0755 "$(realpath "$lib")" "$r$lib"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$r/etc/passwd"
printf 'root:x:0:\n' > "$r/etc/group"
printf 'root:*:19000:0:99999:7:::\n' > "$r/etc/shadow"
printf 'root:*::\n' > "$r/etc/gshadow"
cp /etc/login.defs "$r/etc/login.defs"
printf 'FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/sbin:/usr/bin:/bin\n' > "$ctx/Dockerfile"
docker build -q -t "$tag" "$ctx" >/dev/null
