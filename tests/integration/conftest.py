"""Fixtures for the integration suite.

- `pg` (session): a throwaway PostgreSQL 15 with the platform's tenants, run as `usher-test` when
  we are root. Stopped (immediate) at the end of the session, even on failure.
- `usher` (function): a factory; `usher(**overrides)` writes a config, starts the pooler on a free
  port, waits until it accepts connections and returns a `harness.Pooler`. Stopped at teardown
  (SIGINT, then SIGKILL); a failing test's report carries the pooler's log.

Run with Debian's interpreter: /usr/bin/python3 -m pytest tests/integration
USHER_TEST_TARGET=pgbouncer runs the suite against /usr/sbin/pgbouncer instead (a dev aid).
USHER_TEST_TIMEOUT sets the per-phase timeout in seconds (default 120).
"""

from __future__ import annotations

import os
import re
import signal
import sys

import pytest

import harness

REQUIRED_MODULES = {"psycopg": "python3-psycopg", "asyncpg": "python3-asyncpg"}


def pytest_configure(config):
    missing = []
    for module, package in REQUIRED_MODULES.items():
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    if missing:
        hint = ""
        if sys.executable != "/usr/bin/python3":
            hint = f" and run pytest with /usr/bin/python3 (this is {sys.executable})"
        raise pytest.UsageError(
            f"missing Python modules: apt-get install {' '.join(missing)}{hint}")
    config.addinivalue_line("markers", "usher_only: asserts usher-specific behaviour; skipped when "
                                       "USHER_TEST_TARGET=pgbouncer")
    config.addinivalue_line("markers", "timeout(seconds): per-phase time limit for this test")
    try:
        harness.target()
    except harness.HarnessError as exc:
        raise pytest.UsageError(str(exc))


def pytest_report_header(config):
    return f"pooler under test: {harness.target()}"


def pytest_collection_modifyitems(config, items):
    if harness.target() == "usher":
        return
    skip = pytest.mark.skip(reason=f"usher-specific (USHER_TEST_TARGET={harness.target()})")
    for item in items:
        if "usher_only" in item.keywords:
            item.add_marker(skip)


# -- per-phase timeout without a plugin: SIGALRM raises in the main thread ------------------

def _phase_timeout(item) -> int:
    marker = item.get_closest_marker("timeout")
    if marker and marker.args:
        return int(marker.args[0])
    return int(os.environ.get("USHER_TEST_TIMEOUT", "120"))


def _with_alarm(item, phase):
    seconds = _phase_timeout(item)

    def on_alarm(signum, frame):
        pytest.fail(f"{phase} of {item.nodeid} timed out after {seconds}s", pytrace=True)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    return previous


def _clear_alarm(previous):
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    prev = _with_alarm(item, "setup")
    try:
        yield
    finally:
        _clear_alarm(prev)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    prev = _with_alarm(item, "test")
    try:
        yield
    finally:
        _clear_alarm(prev)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    prev = _with_alarm(item, "teardown")
    try:
        yield
    finally:
        _clear_alarm(prev)


# -- a failing test's report carries the pooler logs -----------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when in ("call", "setup", "teardown"):
        for pooler in getattr(item, "_poolers", []):
            report.sections.append((f"{pooler.kind} log ({pooler.config_path.name}, port "
                                    f"{pooler.port})", pooler.log() or "(empty)"))
        pg = getattr(item, "_pg", None)
        if pg is not None and call.when == "call":
            report.sections.append(("postgres.log (tail)", pg.log_tail(40, header=False)))


# -- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pg():
    try:
        cluster = harness.PgCluster.create()
    except harness.HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        cluster.init_and_start()
        cluster.create_tenants()
    except harness.HarnessError as exc:
        cluster.stop()
        cluster.remove()
        pytest.fail(str(exc), pytrace=False)
    except BaseException:
        cluster.stop()
        cluster.remove()
        raise
    try:
        yield cluster
    finally:
        cluster.stop()
        cluster.remove()


@pytest.fixture
def target() -> str:
    return harness.target()


@pytest.fixture
def is_usher() -> bool:
    return harness.target() == "usher"


@pytest.fixture
def usher(pg, request):
    """Factory: usher(config_format="toml"|"ini", pool_size=2, userlist=None, **section_keys)."""
    request.node._pg = pg
    poolers: list[harness.Pooler] = []
    request.node._poolers = poolers

    def start(**overrides) -> harness.Pooler:
        # Under the cluster's base dir (mode 0755): PgBouncer runs as usher-test and must read it.
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:80]
        workdir = pg.base / "poolers" / f"{name}-{len(poolers)}"
        try:
            pooler = harness.make_pooler(pg, workdir, **overrides)
        except harness.HarnessError as exc:
            pytest.fail(str(exc), pytrace=False)
        poolers.append(pooler)
        try:
            pooler.start()
        except harness.HarnessError as exc:
            pytest.fail(str(exc), pytrace=False)
        return pooler

    yield start

    crashed = []
    for pooler in poolers:
        pooler.stop()
        if pooler.died_early is not None:
            status = pooler.died_early
            how = (f"killed by {signal.Signals(-status).name}" if status < 0
                   else f"exit status {status}")
            crashed.append(f"{pooler.kind} on port {pooler.port} exited on its own during the test "
                           f"({how})")
    if crashed:
        pytest.fail("; ".join(crashed), pytrace=False)
