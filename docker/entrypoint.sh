#!/bin/bash
# usher's container entrypoint: find the config, run usher in the foreground, and turn Docker's
# stop signal into a shutdown that finishes inside the stop timeout.
#
#   (no arguments)      run usher with the config found below
#   -q / -v / --check   options for usher (same config lookup)
#   usherctl ... / sh   anything else is executed as it is
#
# Config lookup (the first rule that applies wins):
#   1. $USHER_CONFIG, when set (a usher.toml or a pgbouncer.ini);
#   2. $USHER_CONFIG_DIR/usher.toml        (default /etc/usher/usher.toml)
#   3. $USHER_CONFIG_DIR/pgbouncer.ini     (default /etc/usher/pgbouncer.ini)
#   4. $USHER_PGBOUNCER_DIR/pgbouncer.ini  (default /etc/pgbouncer/pgbouncer.ini, where PgBouncer
#      images keep it: mount the old directory as it is)
# When more than one of 2-4 exists the entrypoint refuses to guess: set USHER_CONFIG.
#
# Stopping. Docker sends SIGTERM, waits the stop timeout (compose: stop_grace_period), then
# SIGKILLs. usher's own SIGTERM (PgBouncer's meaning) waits until every *client* has disconnected,
# which pooled applications never do by themselves, so it would always end in SIGKILL. This
# entrypoint therefore stays usher's parent and, on SIGTERM, by default
#   - sends usher SIGINT: stop accepting, let transactions in flight finish, then exit 0;
#   - if usher is still running USHER_STOP_TIMEOUT seconds later (default 20, below compose's
#     stop_grace_period of 30 s), sends SIGINT again: usher closes every connection and exits 0.
# USHER_ON_SIGTERM=wait-for-clients forwards SIGTERM instead (PgBouncer's behaviour; still ended
# by the same timeout). SIGINT, SIGHUP (reload), SIGUSR1 and SIGUSR2 are passed to usher as they
# are. The exit status is usher's.
#
# Secrets: USHER_SECRETS_DIR (default /run/secrets) is where the config's password_file /
# auth_file entries point. Files there that this user cannot read, or that group/others may read,
# are reported before usher starts: Docker Compose bind-mounts secret files with the host's owner
# and mode, so a 0600 file must be owned by the uid usher runs as (`id -u` in the image: 6432).
#
# Run as root (`user: "0"`), it re-executes itself as $USHER_USER (default usher) first: usher never
# runs as root. Silent when all is well: usher writes the log.
set -uo pipefail

: "${USHER_BIN:=/usr/local/bin/usher}"
: "${USHER_CONFIG_DIR:=/etc/usher}"
: "${USHER_PGBOUNCER_DIR:=/etc/pgbouncer}"
: "${USHER_SECRETS_DIR:=/run/secrets}"
: "${USHER_USER:=usher}"
: "${USHER_ON_SIGTERM:=finish-transactions}"
: "${USHER_STOP_TIMEOUT:=20}"

me=usher-entrypoint
fail() {
  printf '%s: error: %s\n' "$me" "$*" >&2
  exit 1
}
note() { printf '%s: warning: %s\n' "$me" "$*" >&2; }

# Not usher: run the command as it is (usherctl, nc, psql, a shell...).
if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
  exec "$@"
fi

if [ "$(id -u)" -eq 0 ]; then
  id "$USHER_USER" >/dev/null 2>&1 || fail "running as root and user $USHER_USER does not exist"
  exec setpriv --reuid="$USHER_USER" --regid="$USHER_USER" --init-groups -- "$0" "$@"
fi

case "$USHER_ON_SIGTERM" in
  finish-transactions) first_stop=INT ;;
  wait-for-clients) first_stop=TERM ;;
  *) fail "USHER_ON_SIGTERM=$USHER_ON_SIGTERM: expected finish-transactions or wait-for-clients" ;;
esac
case "$USHER_STOP_TIMEOUT" in
  '' | *[!0-9]*) fail "USHER_STOP_TIMEOUT=$USHER_STOP_TIMEOUT: expected whole seconds (0 = none)" ;;
esac

# -- the config ---------------------------------------------------------------------------------
if [ -n "${USHER_CONFIG:-}" ]; then
  config="$USHER_CONFIG"
  [ -e "$config" ] || fail "USHER_CONFIG=$config does not exist"
else
  found=()
  for candidate in "$USHER_CONFIG_DIR/usher.toml" "$USHER_CONFIG_DIR/pgbouncer.ini" \
    "$USHER_PGBOUNCER_DIR/pgbouncer.ini"; do
    [ -e "$candidate" ] && found+=("$candidate")
  done
  case "${#found[@]}" in
    0) fail "no configuration: mount usher.toml at $USHER_CONFIG_DIR/usher.toml, or a" \
      "pgbouncer.ini at $USHER_CONFIG_DIR/pgbouncer.ini or $USHER_PGBOUNCER_DIR/pgbouncer.ini," \
      "or set USHER_CONFIG" ;;
    1) config="${found[0]}" ;;
    *) fail "found ${found[*]}: more than one configuration; set USHER_CONFIG to the one to use" ;;
  esac
fi
[ -r "$config" ] || fail "cannot read $config as uid $(id -u): make it readable (mode 0644, or" \
  "owned by uid $(id -u))"

# -- the secrets --------------------------------------------------------------------------------
if [ -d "$USHER_SECRETS_DIR" ]; then
  for secret in "$USHER_SECRETS_DIR"/*; do
    [ -f "$secret" ] || continue
    if [ ! -r "$secret" ]; then
      note "cannot read secret $secret as uid $(id -u); on the host: chown $(id -u):$(id -g)" \
        "<the file> && chmod 0600 <the file>"
    elif [ -n "$(find "$secret" -maxdepth 0 -perm /044 2>/dev/null)" ]; then
      note "secret $secret is readable by group or others (mode $(stat -c %a "$secret"));" \
        "the platform keeps secrets at 0600"
    fi
  done
fi

# -- run usher, relaying signals ----------------------------------------------------------------
child=""
stopping=0
timer=""

# shellcheck disable=SC2317  # (called from traps)
relay() {
  [ -n "$child" ] && kill -s "$1" "$child" 2>/dev/null
  return 0
}

# shellcheck disable=SC2317
stop() {
  if [ "$stopping" -eq 1 ]; then
    relay "$1"  # a second stop signal: usher stops now
    return
  fi
  stopping=1
  if [ "$1" = TERM ]; then relay "$first_stop"; else relay "$1"; fi
  if [ -n "$child" ] && [ "$USHER_STOP_TIMEOUT" -gt 0 ]; then
    # The second signal, if usher is still running then: it closes everything and exits.
    (
      trap 'kill "$nap" 2>/dev/null; exit 0' TERM
      sleep "$USHER_STOP_TIMEOUT" &
      nap=$!
      wait "$nap" && kill -s INT "$child" 2>/dev/null
    ) &
    timer=$!
  fi
}

# Traps first, so a stop that arrives while usher is being started is not lost.
trap 'stop TERM' TERM
trap 'stop INT' INT
trap 'relay HUP' HUP
trap 'relay USR1' USR1
trap 'relay USR2' USR2

# The subshell starts with the traps reset; bash would also start a background command with SIGINT
# and SIGQUIT ignored: usher must get them as usual (one arriving before usher has set up its
# handlers ends it at once, which the exit status mapping below accounts for).
(
  trap - INT QUIT
  exec "$USHER_BIN" "$@" "$config"
) &
child=$!
if [ "$stopping" -eq 1 ]; then  # stopped before usher existed: stop it now
  stopping=0
  stop TERM
fi

# `wait` returns early (status > 128) whenever a trapped signal arrives: wait again until usher
# itself is gone. If usher ended during the interrupted wait, one more `wait` still returns its
# status (127 would mean it was already reported).
while :; do
  status=0
  wait "$child" || status=$?
  kill -0 "$child" 2>/dev/null || break
done
if [ "$status" -gt 128 ]; then
  again=0
  wait "$child" 2>/dev/null || again=$?
  [ "$again" -ne 127 ] && status=$again
fi
if [ -n "$timer" ]; then
  kill "$timer" 2>/dev/null || true
  wait "$timer" 2>/dev/null || true
fi
# Stopped by the signal we relayed before it had installed its handlers (a stop during startup):
# that is the stop that was asked for, not a failure.
if [ "$stopping" -eq 1 ] && { [ "$status" -eq 130 ] || [ "$status" -eq 143 ]; }; then
  status=0
fi
exit "$status"
