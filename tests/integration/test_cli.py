"""usher's command line: --version and --check."""

import re
import subprocess

import pytest

import harness

pytestmark = pytest.mark.usher_only


def run_usher(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(harness.usher_binary()), *args], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)


def test_version():
    res = run_usher("--version")
    assert res.returncode == 0, res.stderr
    assert re.search(r"usher\b.*\d+\.\d+\.\d+", res.stdout + res.stderr), res.stdout + res.stderr


@pytest.mark.parametrize("config_format", ["toml", "ini"])
def test_check_accepts_a_good_config(pg, tmp_path, config_format):
    path = harness.write_pooler_config("usher", tmp_path, pg, harness.free_port(),
                                       config_format=config_format)
    res = run_usher("--check", str(path))
    assert res.returncode == 0, res.stderr


def line_of(path, needle) -> int:
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith(needle):
            return n
    raise AssertionError(f"{needle!r} not in {path}")


@pytest.mark.parametrize("config_format,key,bad", [
    ("toml", "pool_mode", 'pool_mode = "bogus"'),
    ("toml", "default_pool_size", 'default_pool_size = "lots"'),
    ("ini", "pool_mode", "pool_mode = bogus"),
    ("ini", "default_pool_size", "default_pool_size = lots"),
])
def test_check_names_file_line_and_key(pg, tmp_path, config_format, key, bad):
    path = harness.write_pooler_config("usher", tmp_path, pg, harness.free_port(),
                                       config_format=config_format)
    lineno = line_of(path, key)
    lines = path.read_text().splitlines()
    lines[lineno - 1] = bad
    path.write_text("\n".join(lines) + "\n")
    res = run_usher("--check", str(path))
    assert res.returncode == 1, (res.returncode, res.stderr)
    assert f"{path}:{lineno}" in res.stderr, res.stderr
    assert key in res.stderr, res.stderr


def test_check_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    res = run_usher("--check", str(path))
    assert res.returncode == 1
    assert str(path) in res.stderr, res.stderr
