# shellcheck shell=bash
# Shared helpers for dev/setup, dev/demo, dev/test and .ci/run. Source it; do not run it.

# Everything usher needs to build, test, benchmark and demo, from Debian 12's archive only.
USHER_PACKAGES=(
  # build
  g++ pkg-config meson ninja-build
  libuv1-dev libssl-dev libsodium-dev libtomlplusplus-dev libspdlog-dev
  doctest-dev libbenchmark-dev
  # a real PostgreSQL 15, its clients (psql, pgbench) and PgBouncer for comparisons
  postgresql-15 postgresql-client-15 pgbouncer
  # integration tests and the demo
  python3 python3-psycopg python3-psycopg2 python3-asyncpg python3-pytest python3-yaml
  netcat-openbsd util-linux passwd curl
  # prepared-statement driver tests (tests/integration/test_prepared_drivers.py): PgJDBC run with
  # Java's source launcher, and Node.js for node-postgres and postgres.js (installed from the npm
  # registry by the test). npm itself comes with the machine's Node.js build: Debian's separate
  # `npm` package conflicts with it, so it is not listed.
  default-jdk-headless libpostgresql-jdbc-java nodejs
  # deployment tests: `docker-compose config` validates docker/*compose.yaml (no daemon needed)
  docker-compose
  # bench/load/run: syscalls (strace -c), instructions (perf stat, where the CPU exposes counters)
  # and the PNG chart (gnuplot)
  strace linux-perf gnuplot-nox
)

USHER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_BINDIR="${PG_BINDIR:-/usr/lib/postgresql/15/bin}"
USHER_BUILD_DIR="${USHER_BUILD_DIR:-build}"
USHER_TEST_OS_USER=usher-test
# Debian's interpreter: the python3 first on PATH may be another one without the Debian modules.
PYTHON=/usr/bin/python3

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Run a command as root: directly when we are root, else through sudo when there is one.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root for: $* (run as root or install sudo)"
  fi
}

# Packages of USHER_PACKAGES (or the arguments) that are not installed.
missing_packages() {
  local pkg status
  for pkg in "${@:-${USHER_PACKAGES[@]}}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    [ "$status" = "install ok installed" ] || printf '%s\n' "$pkg"
  done
}

# Install the given packages (default: USHER_PACKAGES) that are missing. Idempotent.
install_packages() {
  local missing
  mapfile -t missing < <(missing_packages "$@")
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  log "installing Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

# npm for the node driver tests: part of NodeSource's nodejs, a separate package in Debian's.
install_npm_if_missing() {
  command -v npm >/dev/null 2>&1 && return 0
  log "installing Debian's npm (this nodejs has none)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends npm
}

# The OS user that runs PostgreSQL: usher-test when we are root (initdb refuses root), else us.
pg_os_user() {
  if [ "$(id -u)" -eq 0 ]; then
    if ! id "$USHER_TEST_OS_USER" >/dev/null 2>&1; then
      useradd --system --create-home --shell /usr/sbin/nologin "$USHER_TEST_OS_USER" 2>/dev/null \
        || id "$USHER_TEST_OS_USER" >/dev/null 2>&1 \
        || die "could not create the system user $USHER_TEST_OS_USER"
    fi
    echo "$USHER_TEST_OS_USER"
  else
    id -un
  fi
}

# Run a command as the PostgreSQL OS user (see pg_os_user).
as_pg_user() {
  if [ "$(id -u)" -eq 0 ]; then
    local user
    user="$(pg_os_user)"
    setpriv --reuid="$user" --regid="$user" --init-groups --reset-env -- "$@"
  else
    "$@"
  fi
}

# Give a path to the PostgreSQL OS user (no-op when not root).
chown_pg_user() {
  if [ "$(id -u)" -eq 0 ]; then
    chown "$(pg_os_user):" "$@"
  fi
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_in_use() {
  nc -z -w 1 127.0.0.1 "$1" >/dev/null 2>&1
}

# A free TCP port on 127.0.0.1.
free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Wait until 127.0.0.1:$1 accepts connections, at most $2 seconds (default 15).
wait_for_port() {
  local port="$1" deadline=$((SECONDS + ${2:-15}))
  until port_in_use "$port"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

usher_bin() {
  echo "${USHER_BIN:-$USHER_ROOT/$USHER_BUILD_DIR/src/usher}"
}
