#!/bin/sh
# Stops the machine of one system-test run and removes its files:
#
#   test/system/stop.sh RUN_DIR
#
# Only the systemd-nspawn whose pid the run recorded in RUN_DIR/nspawn.pid is signalled, and only
# while its command line still names RUN_DIR (a recycled pid belongs to someone else). SIGTERM asks
# nspawn to shut the machine down cleanly; if it has not within 30 s, SIGKILL to the machine's PID 1
# ends every process in its pid namespace at once, then nspawn itself. Then the tmpfs root is
# unmounted, which frees it whole. Safe to run twice, and on a run whose test died half-way.
set -u

[ $# = 1 ] || { echo "usage: stop.sh RUN_DIR" >&2; exit 2; }
RUN=$1
case "$RUN" in */ldguard-systest/run-*) ;; *) echo "stop.sh: $RUN is not a system-test run folder" >&2; exit 2 ;; esac
[ -d "$RUN" ] || exit 0

ours() { # ours PID: a live systemd-nspawn started for this RUN_DIR
  [ -n "$1" ] && [ -r "/proc/$1/cmdline" ] || return 1
  tr '\0' ' ' < "/proc/$1/cmdline" | grep -q "systemd-nspawn.* -D $RUN/root"
}

NSPAWN=$(cat "$RUN/nspawn.pid" 2>/dev/null || true)
LEADER=$(cat "$RUN/leader.pid" 2>/dev/null || true)
if ours "$NSPAWN"; then
  kill -TERM "$NSPAWN" 2>/dev/null
  i=0
  while ours "$NSPAWN" && [ $i -lt 60 ]; do sleep 0.5; i=$((i + 1)); done
  if ours "$NSPAWN"; then
    echo "stop.sh: the machine did not shut down within 30 s; killing it (its console: $(dirname "$RUN")/last-console.log)" >&2
    # The leader is nspawn's child, PID 1 of the machine's pid namespace.
    if [ -n "$LEADER" ] && [ "$(cat "/proc/$LEADER/status" 2>/dev/null | awk '/^PPid:/ {print $2}')" = "$NSPAWN" ]; then
      kill -KILL "$LEADER" 2>/dev/null
    fi
    sleep 1
    ours "$NSPAWN" && kill -KILL "$NSPAWN" 2>/dev/null
    sleep 0.5
  fi
fi

# The machine's console (its boot and shutdown messages) outlives the run, for a look afterwards.
[ -f "$RUN/console.log" ] && cp "$RUN/console.log" "$(dirname "$RUN")/last-console.log"

if mountpoint -q "$RUN/root"; then
  umount "$RUN/root" 2>/dev/null || umount -l "$RUN/root"
fi
# Never follow anything out of RUN: by now root is an empty mount point or a plain folder of ours.
rm -rf --one-file-system "$RUN"
