"""Deployment (docker/): checked here, without a Docker daemon (the build machines have none).

1. The compose files parse and follow the platform's rules: the `central-data-platform` network
   (external for applications), usher as the service `pgbouncer` on 6432, no literal password
   anywhere, a health check on every service, passwords as secret files under
   /srv/config/secrets/, data under /srv, every ${VAR} defined in docker/platform.env.example,
   and Debian's docker-compose accepts the result.
2. The Dockerfile, read statically: multi-stage on debian:12 / debian:12-slim, a non-root USER,
   EXPOSE 6432, the `nc -z localhost 6432` health check with netcat installed, usherctl copied,
   and the runtime packages providing every shared library the usher binary needs.
3. The image's entrypoint and health check, run outside a container with the container's file
   layout in a temporary directory (config dir for /etc/usher, secrets dir for /run/secrets, the
   paths passed as the entrypoint's environment variables), as an unprivileged user, against the
   test PostgreSQL, with docker/usher.toml itself as the config: no warning in the log, the health
   check succeeds, queries work, SIGTERM stops it (status 0) inside the stop timeout.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import tomllib
from pathlib import Path

import psycopg
import pytest

import harness

DOCKER = harness.REPO_ROOT / "docker"
PLATFORM_COMPOSE = DOCKER / "compose.yaml"
APP_COMPOSE = DOCKER / "app-example" / "compose.yaml"
ENV_EXAMPLE = DOCKER / "platform.env.example"
DOCKERFILE = DOCKER / "Dockerfile"
ENTRYPOINT = DOCKER / "entrypoint.sh"
CONTAINER_CONFIG = DOCKER / "usher.toml"
NETWORK = "central-data-platform"
SECRET_KEY = re.compile(r"pass(word)?|passwd|pwd|secret|token|api_?key|credential", re.I)
VARIABLE = re.compile(r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|([A-Za-z_][A-Za-z0-9_]*))")
# A log line at warning level or above: usher's text format ("... warning [net] ...") or the
# entrypoint's ("usher-entrypoint: warning: ...").
BAD_LOG_LINE = re.compile(r" (warning|error|critical) |^usher-entrypoint: (warning|error):", re.M)


def yaml_load(path: Path):
    yaml = pytest.importorskip("yaml", reason="apt-get install python3-yaml")
    with open(path) as f:
        return yaml.safe_load(f)


def env_example() -> dict[str, str]:
    values = {}
    for n, line in enumerate(ENV_EXAMPLE.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", line)
        assert m, f"{ENV_EXAMPLE}:{n}: not KEY=VALUE: {line!r}"
        values[m.group(1)] = m.group(2)
    return values


def substitute(value: str, env: dict[str, str]) -> str:
    return VARIABLE.sub(lambda m: env[m.group(1) or m.group(2)], value).replace("$$", "$")


def scalars(node, path=()):
    """Every scalar of a YAML tree with the mapping keys leading to it."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from scalars(v, path + (str(k),))
    elif isinstance(node, list):
        for v in node:
            yield from scalars(v, path)
    else:
        yield path, node


def duration_seconds(text: str) -> float:
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(text)):
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[unit]
    assert total > 0, f"not a duration: {text!r}"
    return total


@pytest.fixture(scope="module")
def platform():
    return yaml_load(PLATFORM_COMPOSE)


@pytest.fixture(scope="module")
def app():
    return yaml_load(APP_COMPOSE)


COMPOSE_FILES = [PLATFORM_COMPOSE, APP_COMPOSE]


# ==============================================================================================
# 1. compose files


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.relative_to(DOCKER).as_posix())
def test_compose_parses_and_every_service_is_on_the_platform_network(path):
    doc = yaml_load(path)
    assert isinstance(doc, dict) and doc.get("services"), f"{path}: no services"
    nets = doc.get("networks") or {}
    assert NETWORK in nets, f"{path}: network {NETWORK} not declared"
    declared = nets[NETWORK] or {}
    assert declared.get("name", NETWORK) == NETWORK
    for name, svc in doc["services"].items():
        networks = svc.get("networks")
        names = list(networks) if isinstance(networks, (list, dict)) else []
        assert NETWORK in names, f"{path}: service {name} is not on {NETWORK}"


def test_app_example_joins_the_external_network_and_uses_pgbouncer(app):
    assert app["networks"][NETWORK].get("external") is True, "apps must declare the network external"
    env = app["services"]["app"]["environment"]
    url = env["DATABASE_URL"]
    assert re.match(r"postgres(ql)?://[^:@/]+@pgbouncer:6432/\w+", url), url
    assert env["DATABASE_PASSWORD_FILE"].startswith("/run/secrets/")
    secret = Path(env["DATABASE_PASSWORD_FILE"]).name
    assert secret in app["services"]["app"]["secrets"]
    assert app["secrets"][secret]["file"].startswith("/srv/config/secrets/")


def test_platform_network_is_shared_not_owned(platform):
    # The network outlives this stack (redis-stack and every application are on it): created once
    # with `docker network create`, never removed by `docker compose down` here.
    assert platform["networks"][NETWORK].get("external") is True


def test_usher_is_the_pgbouncer_service_on_6432(platform):
    svc = platform["services"]["pgbouncer"]
    env = env_example()
    assert substitute(svc["image"], env).split(":")[0].endswith("usher")
    assert svc["build"]["dockerfile"] == "docker/Dockerfile"
    assert svc.get("container_name") == "pgbouncer"  # `docker exec -it pgbouncer psql ...` works
    health = svc["healthcheck"]["test"]
    assert health[0] in ("CMD", "CMD-SHELL")
    assert "nc -z localhost 6432" in " ".join(health[1:])
    published = [substitute(p, env) for p in svc.get("ports", [])]
    assert all(p.endswith(":6432") for p in published), published
    # The config the container runs listens on 6432 on every IPv4 address (or all addresses).
    config = tomllib.loads(CONTAINER_CONFIG.read_text())["usher"]
    assert config["listen_port"] == 6432
    assert config["listen_addr"] in ("0.0.0.0", "*")
    assert config.get("unix_socket_dir", "") == ""
    # ... from the directory compose mounts at /etc/usher.
    mounts = [v.split(":") for v in svc["volumes"]]
    assert any(dst == "/etc/usher" for _src, dst, *_ in mounts), mounts


def test_container_config_matches_the_compose_stack(platform):
    """docker/usher.toml names the compose service as its server and only secrets compose mounts."""
    config = tomllib.loads(CONTAINER_CONFIG.read_text())
    services = platform["services"]
    for name, db in config["databases"].items():
        assert db["host"] in services, f"[databases.{name}] host {db['host']} is not a service"
        assert db.get("port", 5432) == 5432
    mounted = set()
    for entry in services["pgbouncer"]["secrets"]:
        if isinstance(entry, dict):
            mounted.add(entry.get("target", entry["source"]))
        else:
            mounted.add(entry)
    assert config["users"], "no users in docker/usher.toml"
    for user, settings in config["users"].items():
        path = settings.get("password_file")
        assert path, f"[users.{user}] has no password_file"
        assert path.startswith("/run/secrets/"), f"[users.{user}] password_file {path}"
        assert Path(path).name in mounted, f"{path} is not a secret of the pgbouncer service"
        assert "password" not in settings, f"[users.{user}] has an inline password"
    # The admin console's user can log in (its password is a secret too).
    for admin in config["usher"]["admin_users"]:
        assert admin in config["users"]


def test_postgres_is_17_with_pgvector_and_keeps_its_data_under_srv(platform):
    env = env_example()
    svc = platform["services"]["postgres"]
    image = substitute(svc["image"], env)
    assert image.startswith("pgvector/pgvector:") and "pg17" in image, image
    assert svc["environment"]["POSTGRES_PASSWORD_FILE"].startswith("/run/secrets/")
    secret = Path(svc["environment"]["POSTGRES_PASSWORD_FILE"]).name
    assert secret in svc["secrets"]
    assert any(v.split(":")[1] == "/var/lib/postgresql/data" and v.startswith("/srv/data/")
               for v in svc["volumes"]), svc["volumes"]
    assert "pg_isready" in " ".join(svc["healthcheck"]["test"])
    assert platform["services"]["pgbouncer"]["depends_on"]["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.relative_to(DOCKER).as_posix())
def test_no_literal_password_anywhere(path):
    doc = yaml_load(path)
    declared = set(doc.get("secrets") or {})
    for keys, value in scalars(doc):
        if value is None or isinstance(value, bool):
            continue
        text = str(value)
        where = f"{path}: {'.'.join(keys)} = {text!r}"
        # Credentials in a URL, a conninfo string or an environment list entry.
        assert not re.search(r"://[^/@\s:]+:[^/@\s]+@", text), f"password in a URL: {where}"
        assert not re.search(r"\bpassword\s*=\s*\S", text, re.I), f"password in a conninfo: {where}"
        assert not re.search(r"--pass(word)?(?!-file)[= ]\S", text), f"password argument: {where}"
        assert "PGPASSWORD=" not in text, f"PGPASSWORD literal: {where}"
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", text, re.S)
        key_value = [(m.group(1), m.group(2))] if m else []
        if keys:
            key_value.append((keys[-1], text))
        for key, val in key_value:
            if not SECRET_KEY.search(key):
                continue
            # A secret's name, a path to a secret file, a *_FILE variable: references, not values.
            ok = (val in declared or val.startswith(("/run/secrets/", "/srv/config/secrets/"))
                  or key.upper().endswith("_FILE") or keys[-1:] == ["secrets"]
                  or keys[:1] == ["secrets"])
            assert ok, f"a secret-looking key with a literal value: {where}"
    # Passwords are never substituted from the env file either.
    for name, val in env_example().items():
        assert not SECRET_KEY.search(name), f"{ENV_EXAMPLE}: {name} looks like a secret"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.relative_to(DOCKER).as_posix())
def test_every_service_has_a_health_check(path):
    for name, svc in yaml_load(path)["services"].items():
        health = svc.get("healthcheck")
        assert health, f"{path}: service {name} has no healthcheck"
        if health.get("disable"):
            # Only a one-shot job (run on demand, never restarted) may go without a probe.
            assert svc.get("profiles") and str(svc.get("restart", "no")) == "no", \
                f"{path}: long-running service {name} disables its health check"
            continue
        test = health["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, test


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.relative_to(DOCKER).as_posix())
def test_secrets_are_files_under_srv_config_secrets(path):
    doc = yaml_load(path)
    for name, secret in (doc.get("secrets") or {}).items():
        assert set(secret) == {"file"}, f"{path}: secret {name} is not a file: {secret}"
        assert secret["file"].startswith("/srv/config/secrets/"), f"{path}: {name}: {secret}"
    for name, svc in doc["services"].items():
        for entry in svc.get("secrets") or []:
            source = entry["source"] if isinstance(entry, dict) else entry
            assert source in (doc.get("secrets") or {}), f"{path}: {name} uses undeclared {source}"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.relative_to(DOCKER).as_posix())
def test_host_data_and_config_live_under_srv(path):
    doc = yaml_load(path)
    assert not doc.get("volumes"), f"{path}: named volumes keep data outside /srv"
    for name, svc in doc["services"].items():
        for volume in svc.get("volumes") or []:
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            assert source.startswith("/srv/"), f"{path}: {name} mounts {source} (not under /srv)"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.relative_to(DOCKER).as_posix())
def test_every_variable_is_defined_in_platform_env_example(path):
    defined = env_example()
    used = {m.group(1) or m.group(2) for m in VARIABLE.finditer(path.read_text())}
    missing = sorted(used - set(defined))
    assert not missing, f"{path} uses {missing}, not defined in {ENV_EXAMPLE}"
    for name in used:
        assert defined[name].strip(), f"{ENV_EXAMPLE}: {name} is empty"


def test_stop_timeout_fits_in_the_grace_period(platform):
    svc = platform["services"]["pgbouncer"]
    grace = duration_seconds(svc["stop_grace_period"])
    stop_timeout = float(substitute(str(svc["environment"]["USHER_STOP_TIMEOUT"]), env_example()))
    assert 0 < stop_timeout <= grace - 5, (stop_timeout, grace)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.relative_to(DOCKER).as_posix())
def test_debian_docker_compose_accepts_the_file(path, tmp_path):
    """Debian 12's docker-compose (1.29, no daemon needed for `config`) validates the schema and
    the interpolation. It predates the top-level `name:` key, which is dropped for it."""
    exe = shutil.which("docker-compose")
    if not exe:
        pytest.fail("docker-compose not found: apt-get install docker-compose", pytrace=False)
    text = re.sub(r"(?m)^name:.*\n", "", path.read_text())
    copy = tmp_path / "compose.yaml"
    copy.write_text(text)
    env = env_example()
    env["USHER_SOURCE_DIR"] = str(harness.REPO_ROOT)  # build.context must exist for `config`
    env_file = tmp_path / "platform.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    res = subprocess.run([exe, "--env-file", str(env_file), "-f", str(copy), "config"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         env=harness.clean_env())
    assert res.returncode == 0, res.stderr + res.stdout
    assert "${" not in res.stdout.replace("$${", ""), res.stdout


# ==============================================================================================
# 2. the Dockerfile, statically


def dockerfile_stages() -> list[dict]:
    """[{"from": image, "name": alias, "instructions": [(INSTR, args)]}] with continuations joined."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    stages: list[dict] = []
    for entry in logical:
        instr, _, args = entry.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            stages.append({"from": words[0],
                           "name": words[2] if len(words) > 2 and words[1].upper() == "AS" else None,
                           "instructions": []})
        elif stages:
            stages[-1]["instructions"].append((instr, args.strip()))
    return stages


def instructions(stage: dict, name: str) -> list[str]:
    return [args for instr, args in stage["instructions"] if instr == name]


def apt_packages(stage: dict) -> set[str]:
    pkgs: set[str] = set()
    for run in instructions(stage, "RUN"):
        for m in re.finditer(r"apt-get install ([^&;|]*)", run):
            pkgs |= {w for w in m.group(1).split() if not w.startswith("-")}
    return pkgs


def test_dockerfile_is_multi_stage_on_debian_12():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "expected a build stage and a runtime stage"
    for stage in stages:
        assert stage["from"] in ("debian:12", "debian:12-slim"), stage["from"]
    assert stages[0]["from"] == "debian:12"
    assert stages[-1]["from"] == "debian:12-slim"


def test_dockerfile_runtime_stage():
    stages = dockerfile_stages()
    build, final = stages[0], stages[-1]
    users = instructions(final, "USER")
    assert users, "no USER in the runtime stage: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user
    assert any(re.search(rf"\buseradd\b[^&;]*\s{user}(\s|$)", run)
               for run in instructions(final, "RUN")), f"no useradd for {user}"
    assert "6432" in " ".join(instructions(final, "EXPOSE")).split()
    health = instructions(final, "HEALTHCHECK")
    assert len(health) == 1 and "CMD nc -z localhost 6432" in health[0], health
    assert "netcat-openbsd" in apt_packages(final)
    assert instructions(final, "STOPSIGNAL"), "say which signal stops the container"
    copies = instructions(final, "COPY")
    assert any(c.startswith(f"--from={build['name']} ") and "usherctl" in c for c in copies), copies
    assert any(c.split()[-1] == "/usr/local/bin/usher" for c in copies), copies
    entry = instructions(final, "ENTRYPOINT")
    assert entry and "usher-entrypoint" in entry[-1]
    assert any(c.split() == ["docker/entrypoint.sh", "/usr/local/bin/usher-entrypoint"]
               for c in copies), copies
    for c in copies:
        if not c.startswith("--from"):
            assert (harness.REPO_ROOT / c.split()[0]).exists(), f"COPY source missing: {c}"


def test_dockerfile_env_matches_the_entrypoint_defaults():
    final = dockerfile_stages()[-1]
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(instructions(final, "ENV"))))
    defaults = dict(re.findall(r': "\$\{(\w+):=([^}]*)\}"', ENTRYPOINT.read_text()))
    assert env, "no ENV in the runtime stage"
    for key, value in env.items():
        if key in defaults:
            assert defaults[key] == value, f"{key}: Dockerfile {value}, entrypoint {defaults[key]}"


def test_dockerfile_build_stage_has_every_build_library_of_dev_lib_sh():
    lib = (harness.REPO_ROOT / "dev" / "lib.sh").read_text()
    array = re.search(r"USHER_PACKAGES=\((.*?)\n\)", lib, re.S).group(1)
    words = {w for line in array.splitlines() for w in line.split("#")[0].split()}
    needed = {w for w in words if w.endswith("-dev") and w != "libbenchmark-dev"}
    missing = needed - apt_packages(dockerfile_stages()[0])
    assert not missing, f"build stage lacks {sorted(missing)}"


@pytest.mark.usher_only
def test_dockerfile_runtime_has_every_shared_library_usher_needs():
    """Each NEEDED library of the built usher (and usherctl, when built) comes from a package the
    runtime stage installs, or one debian:12-slim already has. Package names are the same on amd64
    and arm64."""
    usher = harness.usher_binary()
    if usher.read_bytes()[:4] != b"\x7fELF":
        pytest.skip(f"{usher} is a wrapper, not the binary")
    needed: set[str] = set()
    for binary in (usher, usher.parent / "ctl" / "usherctl"):
        if not binary.exists():
            continue
        readelf = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True)
        assert readelf.returncode == 0, readelf.stderr
        needed |= set(re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", readelf.stdout))
    assert needed
    in_base = {"libc6", "libstdc++6", "libgcc-s1"}
    runtime = apt_packages(dockerfile_stages()[-1])
    for soname in sorted(needed):
        if soname.startswith("ld-linux"):
            continue
        res = subprocess.run(["dpkg", "-S", f"*/{soname}"], capture_output=True, text=True)
        assert res.returncode == 0, f"no package ships {soname}: {res.stderr}"
        packages = {line.split(":")[0] for line in res.stdout.splitlines()}
        assert packages & (runtime | in_base), f"{soname} ({packages}) not installed at runtime"


def test_dockerignore_keeps_build_trees_and_vcs_out():
    lines = (harness.REPO_ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ".git" in patterns
    assert any(p.startswith("build") for p in patterns)
    for needed in ("src", "include", "meson.build", "docker", "etc", "tests"):
        assert needed not in patterns


# ==============================================================================================
# 3. the entrypoint and the health check, outside a container

def health_check_argv(port: int) -> list[str]:
    """The Dockerfile's HEALTHCHECK command, aimed at `port`."""
    (health,) = instructions(dockerfile_stages()[-1], "HEALTHCHECK")
    command = health.split(" CMD ", 1)[1]
    return ["/bin/sh", "-c", command.replace("6432", str(port))]


class Container:
    """The image's file layout under a temporary directory, and the entrypoint running in it."""

    kind = "usher via docker/entrypoint.sh"  # for conftest's failure report (as a Pooler)

    def __init__(self, pg: harness.PgCluster, root: Path):
        self.pg = pg
        self.root = root
        self.config_dir = root / "etc" / "usher"
        self.pgbouncer_dir = root / "etc" / "pgbouncer"
        self.secrets_dir = root / "run" / "secrets"
        for d in (self.config_dir, self.pgbouncer_dir, self.secrets_dir):
            d.mkdir(parents=True)
        for d in [root, *root.rglob("*")]:
            d.chmod(0o755)  # root-owned, as in the image; readable by the unprivileged user
        self.log_path = root / "container.log"
        self.config_path = self.log_path
        self.port = harness.free_port()
        self.proc: subprocess.Popen | None = None

    # -- files ---------------------------------------------------------------------------------

    def secret(self, name: str, value: str, owned: bool = True, mode: int = 0o600) -> Path:
        """A Docker secret as Compose mounts it: the host file's owner and mode."""
        path = self.secrets_dir / name
        path.unlink(missing_ok=True)  # a new file: the owner of a rewritten one would stay
        path.write_text(value + "\n")
        path.chmod(mode)
        if owned:
            self.pg.os_user.chown(path)
        return path

    def install_container_config(self) -> Path:
        """docker/usher.toml, with the container's addresses replaced by this machine's."""
        text = CONTAINER_CONFIG.read_text()
        replacements = [
            (r'(?m)^listen_addr = .*$', 'listen_addr = "127.0.0.1"'),
            (r'(?m)^listen_port = 6432$', f"listen_port = {self.port}"),
            (r'(?m)^host = "postgres"$', f'host = "{self.pg.host}"'),
            (r'(?m)^port = 5432$', f"port = {self.pg.port}"),
            (r'"/run/secrets/', f'"{self.secrets_dir}/'),
        ]
        for pattern, replacement in replacements:
            text, n = re.subn(pattern, replacement, text)
            assert n, f"docker/usher.toml no longer has {pattern!r}: update this test"
        path = self.config_dir / "usher.toml"
        path.write_text(text)
        path.chmod(0o644)
        config = tomllib.loads(CONTAINER_CONFIG.read_text())
        for user, settings in config["users"].items():
            self.secret(Path(settings["password_file"]).name, self.pg.passwords[user])
        return path

    def install_pgbouncer_ini(self) -> Path:
        """What an operator migrating from the PgBouncer container mounts at /etc/pgbouncer."""
        userlist = self.secret("userlist.txt", "".join(
            f'"{user}" "{password}"\n' for user, password in self.pg.passwords.items()))
        ini = self.pgbouncer_dir / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"trading_db = host={self.pg.host} port={self.pg.port} dbname=trading_db\n"
            f"librarian_db = host={self.pg.host} port={self.pg.port}\n"
            "\n[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = scram-sha-256\n"
            f"auth_file = {userlist}\n"
            "admin_users = platform_admin\n"
            "pool_mode = transaction\n"
            "max_client_conn = 1000\n"
            "default_pool_size = 20\n"
            "ignore_startup_parameters = extra_float_digits\n")
        ini.chmod(0o644)
        return ini

    # -- process -------------------------------------------------------------------------------

    def argv(self, extra_env: dict[str, str] | None = None, as_user: bool = True) -> list[str]:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "USHER_BIN": str(harness.usher_binary()),
            "USHER_CONFIG_DIR": str(self.config_dir),
            "USHER_PGBOUNCER_DIR": str(self.pgbouncer_dir),
            "USHER_SECRETS_DIR": str(self.secrets_dir),
            "LC_ALL": "C.UTF-8",
        }
        env.update(extra_env or {})
        argv = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()), str(ENTRYPOINT)]
        return self.pg.os_user.argv(argv) if as_user else argv

    def start(self, wait: bool = True, **kwargs) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv(**kwargs), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        if not wait:
            return

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"the entrypoint exited with {self.proc.returncode}:\n"
                                     + self.log())
            return harness.port_accepts("127.0.0.1", self.port)

        harness.wait_until(ready, 30, f"usher (entrypoint) to listen on {self.port}")

    def run_to_end(self, timeout: float = 30, **kwargs) -> int:
        self.start(wait=False, **kwargs)
        return self.proc.wait(timeout=timeout)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> tuple[int | None, float]:
        """Send sig to the entrypoint; (exit status or None if still running, seconds taken)."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            status = None
        return status, time.monotonic() - started

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)

    def health_check(self) -> subprocess.CompletedProcess:
        return subprocess.run(self.pg.os_user.argv(health_check_argv(self.port)),
                              capture_output=True, text=True, timeout=10)

    def psql(self, user: str, db: str, sql: str) -> subprocess.CompletedProcess:
        return harness.psql(self.port, user, db, self.pg.passwords[user], "-At", "-c", sql)

    def connect(self, user: str = "trading_app_user", db: str = "trading_db"):
        return psycopg.connect(host="127.0.0.1", port=self.port, user=user, dbname=db,
                               password=self.pg.passwords[user], autocommit=True,
                               prepare_threshold=None, connect_timeout=10)

    def assert_clean_log(self) -> None:
        log = self.log()
        bad = [line for line in log.splitlines() if BAD_LOG_LINE.search(line)]
        assert not bad, "warning or error in the container's log:\n" + log


@pytest.fixture
def container(pg, request):
    if harness.target() != "usher":
        pytest.skip("the image runs usher")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:60]
    root = pg.base / "deploy" / name
    root.parent.mkdir(exist_ok=True)
    root.parent.chmod(0o755)
    box = Container(pg, root)
    request.node._pg = pg
    request.node._poolers = [box]  # a failing test's report carries the container's log
    yield box
    box.kill()


def test_entrypoint_starts_cleanly_passes_the_health_check_and_serves(container):
    container.install_container_config()
    assert container.health_check().returncode != 0, "health check passes with nothing listening"
    container.start()
    try:
        health = container.health_check()
        assert health.returncode == 0, f"health check failed: {health.stdout}{health.stderr}"
        res = container.psql("trading_app_user", "trading_db",
                             "SELECT current_user, current_database(), 6 * 7")
        assert (res.returncode, res.stdout) == (0, "trading_app_user|trading_db|42\n"), res.stderr
        # The platform admin reaches the `postgres` database through the "*" fallback.
        res = container.psql("platform_admin", "postgres", "SELECT current_database()")
        assert (res.returncode, res.stdout) == (0, "postgres\n"), res.stderr
        with container.connect("librarian_user", "librarian_db") as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("librarian_user",)
        status, took = container.stop(signal.SIGTERM, timeout=10)
        assert status == 0, f"exit status {status} after SIGTERM\n{container.log()}"
        assert took < 5, f"SIGTERM took {took:.1f}s"
    finally:
        container.kill()
    assert "started" in container.log(), container.log()
    container.assert_clean_log()


def test_sigterm_with_clients_connected_stops_without_waiting_for_them(container):
    """Pooled applications never disconnect on their own: Docker's SIGTERM must not wait for them
    (usher's own SIGTERM would, until Docker's SIGKILL)."""
    container.install_container_config()
    container.start()
    with container.connect() as idle:
        assert idle.execute("SELECT 1").fetchone() == (1,)
        status, took = container.stop(signal.SIGTERM, timeout=10)
        assert status == 0, f"exit status {status} after SIGTERM\n{container.log()}"
        assert took < 5, f"SIGTERM with an idle client took {took:.1f}s"
        with pytest.raises(psycopg.OperationalError):
            idle.execute("SELECT 2")
    container.assert_clean_log()


def test_sigterm_lets_a_transaction_in_flight_finish(container, pg):
    container.install_container_config()
    container.start()
    with container.connect() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS deploy_sigterm (n int)")
        conn.execute("TRUNCATE deploy_sigterm")
        conn.execute("BEGIN")
        conn.execute("INSERT INTO deploy_sigterm VALUES (1)")
        container.proc.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            container.proc.wait(timeout=1)  # the transaction holds its server: usher waits
        assert not harness.port_accepts("127.0.0.1", container.port), "still accepting after SIGTERM"
        conn.execute("INSERT INTO deploy_sigterm VALUES (2)")
        conn.execute("COMMIT")
        status = container.proc.wait(timeout=5)
        assert status == 0, f"exit status {status}\n{container.log()}"
    with pg.connect("trading_app_user", "trading_db") as direct:
        assert direct.execute("SELECT sum(n) FROM deploy_sigterm").fetchone() == (3,)
        direct.execute("DROP TABLE deploy_sigterm")
    container.assert_clean_log()


def test_sigterm_ends_a_stuck_transaction_after_usher_stop_timeout(container):
    container.install_container_config()
    container.start(extra_env={"USHER_STOP_TIMEOUT": "2"})
    conn = container.connect()
    try:
        conn.execute("BEGIN")
        conn.execute("SELECT 1")  # and then nothing: a client stuck inside its transaction
        status, took = container.stop(signal.SIGTERM, timeout=10)
        assert status == 0, f"exit status {status}\n{container.log()}"
        assert 1.5 <= took < 6, f"stopped {took:.1f}s after SIGTERM; USHER_STOP_TIMEOUT is 2"
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 2")
    finally:
        conn.close()
    assert "shutting down now" in container.log()
    container.assert_clean_log()


def test_sigterm_during_startup_exits_0(container):
    """`docker stop` right after `docker start`: a stop, not a failure (nor a hang)."""
    container.install_container_config()
    container.start(wait=False)
    pid = container.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children")
    harness.wait_until(lambda: children.read_text().split(), 10, "the entrypoint to start usher")
    status, took = container.stop(signal.SIGTERM, timeout=10)
    assert status == 0, f"exit status {status}\n{container.log()}"
    assert took < 5, f"took {took:.1f}s"


def test_mounted_pgbouncer_ini_is_used_as_it_is(container):
    container.install_pgbouncer_ini()
    container.start()
    try:
        assert container.health_check().returncode == 0
        res = container.psql("trading_app_user", "trading_db", "SELECT current_user")
        assert (res.returncode, res.stdout) == (0, "trading_app_user\n"), res.stderr
        status, _ = container.stop(signal.SIGTERM)
        assert status == 0, container.log()
    finally:
        container.kill()
    assert "pgbouncer.ini" in container.log()
    container.assert_clean_log()


def test_usher_config_env_var_wins(container):
    ini = container.install_pgbouncer_ini()
    container.install_container_config()
    moved = container.root / "elsewhere.ini"
    ini.rename(moved)
    container.start(extra_env={"USHER_CONFIG": str(moved)})
    res = container.psql("trading_app_user", "trading_db", "SELECT 1")
    assert (res.returncode, res.stdout) == (0, "1\n"), res.stderr
    status, _ = container.stop(signal.SIGTERM)
    assert status == 0
    assert "elsewhere.ini" in container.log()


def test_two_configs_are_refused(container):
    container.install_container_config()
    container.install_pgbouncer_ini()
    status = container.run_to_end()
    assert status == 1
    assert "more than one configuration" in container.log() and "USHER_CONFIG" in container.log()


def test_no_config_says_where_to_mount_one(container):
    status = container.run_to_end()
    assert status == 1
    log = container.log()
    assert str(container.config_dir / "usher.toml") in log, log
    assert str(container.pgbouncer_dir / "pgbouncer.ini") in log, log


def test_a_secret_the_usher_user_cannot_read_is_named(container):
    """Compose bind-mounts secret files with the host's owner and mode: a 0600 file owned by root
    is unreadable by the image's user. The log says which file and what to chown."""
    if not container.pg.os_user.switch:
        pytest.skip("needs root to create a file the test user cannot read")
    container.install_container_config()
    container.secret("trading_app_password", "x", owned=False)  # root's, 0600
    status = container.run_to_end()
    assert status != 0
    log = container.log()
    assert f"cannot read secret {container.secrets_dir}/trading_app_password" in log, log
    assert "chown" in log


def test_as_root_the_entrypoint_drops_to_the_usher_user(container):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    container.install_container_config()
    user = container.pg.os_user
    container.start(as_user=False, extra_env={"USHER_USER": user.name})
    children = Path(f"/proc/{container.proc.pid}/task/{container.proc.pid}/children")
    pids = harness.wait_until(lambda: children.read_text().split(), 5, "usher to start")
    (uid_line,) = [line for line in Path(f"/proc/{pids[0]}/status").read_text().splitlines()
                   if line.startswith("Uid:")]
    uids = set(uid_line.split()[1:])  # real, effective, saved, filesystem
    assert uids == {str(user.uid)}, uids
    status, _ = container.stop(signal.SIGTERM)
    assert status == 0, container.log()
    container.assert_clean_log()


def test_other_commands_run_as_they_are(container):
    """`docker run IMAGE usherctl ...` (or psql, sh): not usher, so no config lookup."""
    res = subprocess.run(container.pg.os_user.argv([str(ENTRYPOINT), "echo", "as", "it", "is"]),
                         capture_output=True, text=True, timeout=10)
    assert (res.returncode, res.stdout, res.stderr) == (0, "as it is\n", "")
