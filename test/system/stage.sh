#!/bin/sh
# Lays out a fresh machine for one system-test run, ready for systemd-nspawn --boot:
#
#   test/system/stage.sh CACHED_ROOT RUN_DIR CHECKOUT [bare]
#
# bare: no Node.js, npm or headers go in (a host that installs a release bundle or the .deb).
#
# RUN_DIR/root becomes a tmpfs holding a copy of CACHED_ROOT (from rootfs.sh), so the cache stays
# pristine and the machine's disk is a file system of its own: the agent's fanotify marks and its
# exec-cache filesystem mark then see only this machine's files and processes, never the host's.
# (An overlayfs root would also keep the cache clean, but overlayfs cannot decode the directory
# file handles that fanotify reports unless it is mounted with nfs_export, which most are not.)
#
# Into it go, as an operator would have them before running install.sh:
#   - this host's Node.js (>= 20; Debian 12's own nodejs is 18) and npm, under /usr/local, with the
#     headers node-gyp needs (npm's nodedir), since the native addons are built from source;
#   - this host's extra CA certificates, so npm inside trusts the same TLS path to the registry;
#   - the project checkout at /root/ldguard, as a clone of it would be (no node_modules, dist, .git).
# The machine shares the host's network (nspawn's default), which is how npm reaches the registry.
set -eu

[ $# = 3 ] || [ $# = 4 ] || { echo "usage: stage.sh CACHED_ROOT RUN_DIR CHECKOUT [bare]" >&2; exit 2; }
CACHED=$1
RUN=$2
CHECKOUT=$3
BARE=${4:-}
ROOT="$RUN/root"

[ -f "$CACHED/.ldguard-rootfs-complete" ] || { echo "stage.sh: $CACHED is not a complete root from rootfs.sh" >&2; exit 1; }
NODE=$(command -v node)
NODE_PREFIX=$(dirname "$(dirname "$(readlink -f "$NODE")")")
NPM_DIR="$NODE_PREFIX/lib/node_modules/npm"
HEADERS="$NODE_PREFIX/include/node"
[ -f "$NPM_DIR/bin/npm-cli.js" ] || { echo "stage.sh: npm not found at $NPM_DIR" >&2; exit 1; }
[ -f "$HEADERS/node_api.h" ] || { echo "stage.sh: Node.js headers not found at $HEADERS (node-gyp needs them)" >&2; exit 1; }

mkdir -p "$ROOT"
mountpoint -q "$ROOT" || mount -t tmpfs -o mode=0755,size=8g ldguard-systest "$ROOT"
cp -a "$CACHED/." "$ROOT/"
if [ "$BARE" = bare ]; then
  echo "$ROOT"
  exit 0
fi

mkdir -p "$ROOT/usr/local/bin" "$ROOT/usr/local/lib/node_modules" "$ROOT/usr/local/include" "$ROOT/usr/local/etc"
cp "$(readlink -f "$NODE")" "$ROOT/usr/local/bin/node"
cp -a "$NPM_DIR" "$ROOT/usr/local/lib/node_modules/npm"
cp -a "$HEADERS" "$ROOT/usr/local/include/node"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$ROOT/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$ROOT/usr/local/bin/npx"
# npm's global config for this prefix (/usr/local/etc/npmrc): build addons against the headers
# copied above instead of downloading them, and trust the system CA bundle (refreshed at boot).
cat > "$ROOT/usr/local/etc/npmrc" <<'EOF'
nodedir=/usr/local
cafile=/etc/ssl/certs/ca-certificates.crt
audit=false
fund=false
update-notifier=false
EOF

if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  mkdir -p "$ROOT/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
  chroot "$ROOT" update-ca-certificates >/dev/null 2>&1
fi

mkdir -p "$ROOT/root/ldguard"
# What a clone of this work tree would hold: tracked files and new ones that .gitignore does not
# exclude (so no node_modules, dist or native builds, whatever their folder).
if git -C "$CHECKOUT" rev-parse --git-dir >/dev/null 2>&1; then
  (cd "$CHECKOUT" && git ls-files -z --cached --others --exclude-standard | tar --null --ignore-failed-read -T - -cf - 2>/dev/null) \
    | (cd "$ROOT/root/ldguard" && tar xf -)
else
  (cd "$CHECKOUT" && tar cf - --exclude=node_modules --exclude=dist --exclude=.git --exclude=./agent/native/build .) \
    | (cd "$ROOT/root/ldguard" && tar xf -)
fi
echo "$ROOT"
