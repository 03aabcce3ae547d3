#!/bin/sh
# ldguard installer. Idempotent: running it again upgrades in place and keeps config, tokens, the
# agent's spool and the collector's database.
#
#   ./install.sh                                   agent + local collector and dashboard (quick start)
#   ./install.sh --agent --collector-url URL --token-file FILE [--ca-file PEM]
#                                                  agent only, delivering to a collector; the token
#                                                  (from `ldguard token create --role agent` there) is
#                                                  read from FILE, or from standard input with
#                                                  --token-file -; it fails unless the agent connects
#   ./install.sh --collector                       collector (and dashboard) only
#   ./install.sh --bundle FILE [role options]      install a release bundle (npm run package): no
#                                                  Node.js, compiler or registry needed on this host
#   ./install.sh --uninstall [--purge]             remove what was installed (--purge: data and config too)
#
# Options: --prefix DIR (default /opt/ldguard), --no-start (install, enable nothing), --foreground
# (run `ldguard up` here even when systemd is PID 1).
# Where systemd is not PID 1 (a container, CI), the same files are installed and `ldguard up` runs
# in the foreground: the agent, a local collector and its dashboard; Ctrl-C stops all.
# Secrets never go to stderr: the first admin token is written to /etc/ldguard/admin-token (0600)
# and printed on stdout.
set -eu

PREFIX=/opt/ldguard
# Overridable for a staged install (and the tests, which must not touch this host's /etc).
BIN=${LDGUARD_INSTALL_BIN:-/usr/local/bin/ldguard}
ETC=${LDGUARD_INSTALL_ETC:-/etc/ldguard}
UNITS=/etc/systemd/system
ROLE_AGENT=0
ROLE_COLLECTOR=0
COLLECTOR_URL=
TOKEN_FILE=
CA_FILE=
BUNDLE=
UNINSTALL=0
PURGE=0
START=1
FOREGROUND=0

say() { printf 'ldguard install: %s\n' "$*" >&2; }
die() { printf 'ldguard install: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --agent) ROLE_AGENT=1 ;;
    --collector) ROLE_COLLECTOR=1 ;;
    --collector-url) COLLECTOR_URL=${2:?--collector-url needs a URL (ws[s]://HOST:PORT)}; shift ;;
    --token-file) TOKEN_FILE=${2:?--token-file needs a file holding the agent token, or - for standard input}; shift ;;
    --token) die "--token would show the token in ps and your shell history: put it in a file and give --token-file FILE (or pipe it with --token-file -)" ;;
    --ca-file) CA_FILE=${2:?--ca-file needs the PEM file of the CA that signed the certificate of the collector}; shift ;;
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift ;;
    --bundle) BUNDLE=${2:?--bundle needs a release bundle, ldguard-VERSION-linux-ARCH.tar.gz}; shift ;;
    --uninstall) UNINSTALL=1 ;;
    --purge) PURGE=1 ;;
    --no-start) START=0 ;;
    --foreground) FOREGROUND=1 ;;
    -h|--help) sed -n '2,/^set -eu/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1; run ./install.sh --help" ;;
  esac
  shift
done
# No role given: both, on this host (the quick start).
if [ "$ROLE_AGENT" = 0 ] && [ "$ROLE_COLLECTOR" = 0 ]; then ROLE_AGENT=1; ROLE_COLLECTOR=1; fi

has_systemd() { [ -d /run/systemd/system ] && [ "$FOREGROUND" = 0 ]; }

# --- prerequisites, each with its fix -------------------------------------------------------
[ "$(uname -s)" = Linux ] || die "ldguard runs on Linux only (fanotify); this is $(uname -s)"
[ "$(id -u)" = 0 ] || die "run as root (sudo ./install.sh): the agent needs fanotify and /proc of every process"

if [ "$UNINSTALL" = 1 ]; then
  if [ -d /run/systemd/system ]; then
    for u in ldguard-agent.service ldguard-collector.service; do
      systemctl disable --now "$u" >/dev/null 2>&1 || true
      rm -f "$UNITS/$u"
    done
    systemctl daemon-reload || true
  fi
  rm -f "$BIN"
  rm -rf "$PREFIX"
  if [ "$PURGE" = 1 ]; then
    rm -rf "$ETC" /var/lib/ldguard /var/lib/ldguard-collector /var/lib/private/ldguard-collector /var/log/ldguard /run/ldguard
    say "removed ldguard, its configuration, tokens, spool, database and logs"
  else
    say "removed ldguard; kept $ETC, /var/lib/ldguard* and /var/log/ldguard (--purge removes them)"
  fi
  exit 0
fi

if [ -n "$BUNDLE" ]; then
  [ -r "$BUNDLE" ] || die "--bundle $BUNDLE cannot be read; give the path of ldguard-VERSION-linux-ARCH.tar.gz"
  SUMS="$(dirname "$BUNDLE")/SHA256SUMS"
  if [ -r "$SUMS" ]; then
    # The checksum published beside the bundle: a damaged or swapped download stops here.
    (cd "$(dirname "$BUNDLE")" && grep "  $(basename "$BUNDLE")\$" SHA256SUMS | sha256sum -c --quiet -) >/dev/null 2>&1 \
      || die "$BUNDLE does not match its SHA256SUMS; download it again"
  fi
else
  command -v node >/dev/null 2>&1 || die "Node.js >= 20 is needed to build from a checkout: install NodeSource's nodejs 20 package (Debian 12 ships 18), or install a release bundle with --bundle FILE, which brings its own"
  NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]')
  [ "$NODE_MAJOR" -ge 20 ] || die "Node.js >= 20 is needed, found $(node --version): upgrade nodejs, or use --bundle FILE"
  command -v npm >/dev/null 2>&1 || die "npm is needed: apt-get install npm"
  command -v cc >/dev/null 2>&1 || die "a C compiler is needed for the fanotify addon: apt-get install build-essential"
  command -v make >/dev/null 2>&1 || die "make is needed for the fanotify addon: apt-get install build-essential"
  command -v python3 >/dev/null 2>&1 || die "python3 is needed by node-gyp: apt-get install python3"
fi
if [ "$ROLE_AGENT" = 1 ] && [ "$ROLE_COLLECTOR" = 0 ]; then
  [ -n "$COLLECTOR_URL" ] && [ -n "$TOKEN_FILE" ] || die "--agent alone needs --collector-url ws[s]://HOST:PORT and --token-file FILE (the token from ldguard token create --role agent on the collector; - reads it from standard input)"
fi
if [ -n "$TOKEN_FILE" ]; then
  # Read now, before anything is built: a wrong path fails at once.
  if [ "$TOKEN_FILE" = - ]; then TOKEN=$(cat); else
    [ -r "$TOKEN_FILE" ] || die "--token-file $TOKEN_FILE cannot be read; give the file holding the agent token"
    TOKEN=$(cat "$TOKEN_FILE")
  fi
  TOKEN=$(printf '%s' "$TOKEN" | tr -d ' \t\r\n')
  [ -n "$TOKEN" ] || die "--token-file gave an empty token; create one with ldguard token create --role agent on the collector"
else
  TOKEN=
fi
if [ -n "$CA_FILE" ]; then
  grep -q 'BEGIN CERTIFICATE' "$CA_FILE" 2>/dev/null || die "--ca-file $CA_FILE is not a PEM certificate; give the CA that signed the collector's certificate"
fi

SRC=$(cd "$(dirname "$0")" && pwd)

# --- build into a fresh tree, then swap it in (an upgrade never leaves a half-built install) ----
# World-readable, whatever root's umask is: the collector runs as a dynamic user and reads it.
umask 022
NEW="$PREFIX.new.$$"
rm -rf "$NEW"
mkdir -p "$NEW"
if [ -n "$BUNDLE" ]; then
  say "unpacking $BUNDLE in $NEW"
  tar -C "$NEW" --strip-components=1 --no-same-owner -xzf "$BUNDLE" || { rm -rf "$NEW"; die "$BUNDLE could not be unpacked; download it again"; }
  [ -x "$NEW/bin/ldguard" ] || { rm -rf "$NEW"; die "$BUNDLE is not an ldguard release bundle (no bin/ldguard); build one with npm run package"; }
  # The launcher checks the host against the bundle's floor (glibc) before anything is swapped in.
  "$NEW/bin/ldguard" version >&2 || { rm -rf "$NEW"; die "this bundle cannot run here (see above)"; }
else
  say "building in $NEW"
  (cd "$SRC" && tar cf - --exclude=./node_modules --exclude=./dist --exclude=./.git --exclude=./agent/native/build --exclude=./release .) | (cd "$NEW" && tar xf -)
  (cd "$NEW" && npm ci --no-audit --no-fund --loglevel=error >&2 && npm prune --omit=dev --no-audit --no-fund --loglevel=error >&2) \
    || { rm -rf "$NEW"; die "the build failed (see npm's output above); fix it and run install.sh again"; }
fi
if [ -d "$PREFIX" ]; then
  rm -rf "$PREFIX.old"
  mv "$PREFIX" "$PREFIX.old"
fi
mv "$NEW" "$PREFIX"
rm -rf "$PREFIX.old"

if [ -n "$BUNDLE" ]; then
  # The bundle's launcher, which runs its own Node.js.
  printf '#!/bin/sh\nexec "%s/bin/ldguard" "$@"\n' "$PREFIX" > "$BIN"
else
  # The node found now, by its path: services run with systemd's PATH, which may not hold it.
  NODE=$(command -v node)
  printf '#!/bin/sh\nexec "%s" "%s/dist/agent/src/cli.js" "$@"\n' "$NODE" "$PREFIX" > "$BIN"
fi
chmod 0755 "$BIN"

# --- configuration: never overwritten, secrets 0600 ----------------------------------------
umask 077
mkdir -p "$ETC"
chmod 0700 "$ETC"
[ -f "$ETC/agent.toml" ] || { cp "$PREFIX/agent/agent.example.toml" "$ETC/agent.toml"; say "wrote $ETC/agent.toml"; }
[ -f "$ETC/collector.toml" ] || { cp "$PREFIX/collector/collector.example.toml" "$ETC/collector.toml"; say "wrote $ETC/collector.toml"; }
chmod 0600 "$ETC/agent.toml" "$ETC/collector.toml"
# The collector's TLS files go here; its unit loads the folder as credentials (it must exist).
mkdir -p "$ETC/collector-tls"
chmod 0700 "$ETC/collector-tls"
if [ -n "$TOKEN" ]; then
  printf '%s\n' "$TOKEN" > "$ETC/agent.token"
  chmod 0600 "$ETC/agent.token"
fi
set_option() { # set_option FILE KEY VALUE: replace or append a top-level `key = "value"`
  grep -v "^$2 *=" "$1" > "$1.tmp" || true
  printf '%s = "%s"\n' "$2" "$3" >> "$1.tmp"
  mv "$1.tmp" "$1"
  chmod 0600 "$1"
}
if [ -n "$COLLECTOR_URL" ]; then
  set_option "$ETC/agent.toml" collector "$COLLECTOR_URL"
  set_option "$ETC/agent.toml" token_file "$ETC/agent.token"
fi
if [ -n "$CA_FILE" ]; then
  install -m 0644 "$CA_FILE" "$ETC/collector-ca.pem"
  set_option "$ETC/agent.toml" ca_file "$ETC/collector-ca.pem"
fi

if ! has_systemd; then
  say "installed to $PREFIX and $BIN; systemd is not PID 1 here, so the units are not enabled"
  [ "$START" = 1 ] || exit 0
  say "running ldguard up in the foreground (Ctrl-C stops it)"
  exec "$BIN" up
fi

# --- systemd ---------------------------------------------------------------------------------
install -m 0644 "$PREFIX/systemd/ldguard-agent.service" "$UNITS/ldguard-agent.service"
install -m 0644 "$PREFIX/systemd/ldguard-collector.service" "$UNITS/ldguard-collector.service"
systemctl daemon-reload
[ "$START" = 1 ] || { say "installed; start with: systemctl enable --now ldguard-collector ldguard-agent"; exit 0; }

if [ "$ROLE_COLLECTOR" = 1 ]; then
  DB=/var/lib/ldguard-collector/ldguard.db
  mkdir -p /var/lib/private/ldguard-collector
  [ -e /var/lib/ldguard-collector ] || ln -s private/ldguard-collector /var/lib/ldguard-collector
  ADMIN=
  # One database for the unit and for `ldguard token` (which reads db from collector.toml), made
  # (or migrated) now, as the collector's first start would: token commands never create one.
  set_option "$ETC/collector.toml" db "$DB"
  "$BIN" db init --db "$DB" 2>/dev/null || die "the collector's database $DB could not be made or migrated: see ldguard db init --db $DB"
  if ! "$BIN" token list --db "$DB" --json 2>/dev/null | grep -q '"role":"admin","created":"[^"]*","revoked":null'; then
    ADMIN=$("$BIN" token create --db "$DB" --name admin --role admin 2>/dev/null)
    # Kept at once: should a later step fail, a re-run finds an admin token and makes no other.
    printf '%s\n' "$ADMIN" > "$ETC/admin-token"
    chmod 0600 "$ETC/admin-token"
  fi
  if [ "$ROLE_AGENT" = 1 ] && [ ! -s "$ETC/agent.token" ]; then
    "$BIN" token create --db "$DB" --name "$(hostname)" --role agent 2>/dev/null > "$ETC/agent.token"
    chmod 0600 "$ETC/agent.token"
    set_option "$ETC/agent.toml" collector "ws://127.0.0.1:8750"
    set_option "$ETC/agent.toml" token_file "$ETC/agent.token"
  fi
  # The collector's dynamic user owns its state directory; what root just wrote there (the
  # database, its -wal and -shm) must be that user's too, or the collector cannot open it. On a
  # first install the folder is still root's and systemd hands the whole tree over at start.
  chown -R --reference=/var/lib/private/ldguard-collector /var/lib/private/ldguard-collector
  systemctl enable ldguard-collector.service >/dev/null 2>&1
  systemctl restart ldguard-collector.service
fi
if [ "$ROLE_AGENT" = 1 ]; then
  SINCE=$(date +%s)
  systemctl enable ldguard-agent.service >/dev/null 2>&1
  systemctl restart ldguard-agent.service
  if [ -n "$COLLECTOR_URL" ]; then
    # Installed is not working: wait for the agent to say it reached the collector.
    i=0
    until journalctl -u ldguard-agent.service --since "@$SINCE" -o cat 2>/dev/null | grep -q '"msg":"connected to the collector"'; do
      i=$((i + 1))
      if [ "$i" -ge 30 ]; then
        WHY=$(journalctl -u ldguard-agent.service --since "@$SINCE" -o cat 2>/dev/null | grep -o '"err":"[^"]*"' | tail -n 1)
        die "the agent did not connect to $COLLECTOR_URL within 30 s (${WHY:-no error logged}); fix it (token, --ca-file, URL, firewall), then run install.sh again or see journalctl -u ldguard-agent"
      fi
      sleep 1
    done
    say "the agent is connected to $COLLECTOR_URL"
  fi
fi
UNITS_UP=
[ "$ROLE_AGENT" = 1 ] && UNITS_UP="ldguard-agent"
[ "$ROLE_COLLECTOR" = 1 ] && UNITS_UP="$UNITS_UP ldguard-collector"
say "ldguard is running under systemd (systemctl status$(printf ' %s' $UNITS_UP))"
if [ "$ROLE_COLLECTOR" = 1 ]; then
  say "dashboard and API: http://127.0.0.1:8750/ (log in with the admin token in $ETC/admin-token)"
  say "add an agent on another host: ldguard token create --name HOST --role agent, then on that host ./install.sh --agent --collector-url wss://THIS-HOST:8750 --token-file FILE"
fi
[ "$ROLE_AGENT" = 1 ] && say "alerts as they happen: ldguard tail"
# The one secret, on stdout (a pipe or the terminal), never in stderr's logs.
if [ -n "${ADMIN:-}" ]; then printf 'admin token (also in %s): %s\n' "$ETC/admin-token" "$ADMIN"; fi
