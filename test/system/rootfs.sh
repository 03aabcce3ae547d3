#!/bin/sh
# Builds (once) the Debian root the system test boots with systemd-nspawn, and prints its path.
#
#   test/system/rootfs.sh [CACHE_DIR] [bare]      default CACHE_DIR: /var/cache/ldguard-test/rootfs
#
# bare: no compiler, make or python3 (a host where only a release bundle or the .deb can install).
#
# The root is cached under CACHE_DIR/<key>, where the key hashes everything that shapes it (suite,
# variant, package list and the setup below, via RECIPE): change one and the next run builds a new
# root beside the old one. A build goes to a temporary folder that is renamed into place only when
# complete, under a lock, so an interrupted or concurrent build never leaves a half-made root that
# a later run would trust. Nothing here touches the host's own /lib, /lib64 or /usr/lib: debootstrap
# writes only inside the new folder. The test never boots this cached copy itself (it boots a copy),
# so it stays pristine.
set -eu

CACHE=${1:-/var/cache/ldguard-test/rootfs}
SUITE=bookworm
VARIANT=minbase
MIRROR=http://deb.debian.org/debian
# systemd as PID 1 and its D-Bus; what install.sh needs to build the native addons (make, g++,
# python3 for node-gyp); ca-certificates for npm's TLS; curl for the operator's API check; procps for
# ps/pgrep when something needs looking at by hand.
PACKAGES=systemd,systemd-sysv,dbus,ca-certificates,make,g++,python3,curl,procps
[ "${2:-}" = bare ] && PACKAGES=systemd,systemd-sysv,dbus,ca-certificates,curl,procps
# Bump when the setup after debootstrap changes: it is part of the key.
RECIPE=1

command -v debootstrap >/dev/null 2>&1 || { echo "rootfs.sh: debootstrap is needed: apt-get install -y debootstrap systemd-container" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "rootfs.sh: debootstrap needs root" >&2; exit 1; }

KEY=$(printf '%s\n' "$SUITE" "$VARIANT" "$PACKAGES" "$RECIPE" | sha256sum | cut -c1-16)
ROOT="$CACHE/$SUITE-$KEY"
mkdir -p "$CACHE"

# One builder at a time; the second waits, then finds the root made.
exec 9>"$CACHE/.lock"
flock 9

if [ ! -f "$ROOT/.ldguard-rootfs-complete" ]; then
  TMP="$ROOT.tmp.$$"
  rm -rf "$ROOT" "$ROOT".tmp.*
  echo "rootfs.sh: building $SUITE ($VARIANT + $PACKAGES) in $ROOT; this takes a few minutes once" >&2
  if ! debootstrap --variant="$VARIANT" --include="$PACKAGES" "$SUITE" "$TMP" "$MIRROR" > "$CACHE/debootstrap.log" 2>&1; then
    tail -n 30 "$CACHE/debootstrap.log" >&2
    echo "rootfs.sh: debootstrap failed; the full log is $CACHE/debootstrap.log" >&2
    rm -rf "$TMP"
    exit 1
  fi
  # A machine id is made at first boot of each copy; an empty file tells systemd so.
  : > "$TMP/etc/machine-id"
  chroot "$TMP" apt-get clean
  rm -rf "$TMP/var/lib/apt/lists/"*
  echo "$SUITE $VARIANT $PACKAGES recipe=$RECIPE" > "$TMP/.ldguard-rootfs-complete"
  mv "$TMP" "$ROOT"
fi
echo "$ROOT"
