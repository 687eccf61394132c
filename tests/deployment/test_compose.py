"""Issue 2 "docker-compose.yaml": the production topology, checked without a Docker engine.

The file cannot be started here, so these tests validate it against the Compose Specification's
JSON schema (vendored in tests/data, see its README.md) and check that every reference in it
resolves: services, volumes, bind-mounted folders, env files, the image version, the databases.
Topology as in Airflow 3.3's reference docker-compose.yaml ("Running Airflow in Docker").

Issue 12, item 8 (deployment secrets; SPEC P4: credentials live in Airflow Connections and
secrets, never in code or the repository): every secret of the deployment is required
(``${VAR:?message}``) with no default anywhere, `.env.example` names them and `.env` is git-ignored;
Redis asks for a password, Flower listens on the host's loopback behind basic auth, PostgreSQL
and Redis are not published, and no login password is generated into, or printed in, any log.

Issue 14 (packaging): pyproject.toml declares what w365 imports, requirements.txt pins the runtime
set (what the Dockerfile and the quick start install), requirements-dev.txt adds the tests' tools,
and scripts/env.sh installs the one or the other.
"""

from __future__ import annotations

import ast
import hashlib
import os
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zoneinfo
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import yaml
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
SCHEMA_FILE = ROOT / "tests" / "data" / "compose-spec.json"
SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"
DOCKERFILE = ROOT / "Dockerfile"
POSTGRES_INIT = ROOT / "docker" / "postgres-init"
ENV_EXAMPLE = ROOT / ".env.example"
MAKE_ENV = ROOT / "docker" / "make-env.sh"

# Issue 12: the deployment's secrets. Each is `${NAME:?message}` wherever the file uses it, with no
# default in the file or in .env.example; docker/make-env.sh generates every one.
REQUIRED_SECRETS = {
    "POSTGRES_PASSWORD",  # role airflow: Airflow's metadata, Celery results
    "W365_DB_PASSWORD",  # role w365: the billing store (connection w365_billing)
    "REDIS_PASSWORD",  # the Celery broker
    "AIRFLOW_FERNET_KEY",  # encrypts connections and variables
    "AIRFLOW_JWT_SECRET",  # tokens between scheduler, workers and api-server
    "AIRFLOW_API_SECRET_KEY",  # api-server sessions
    "AIRFLOW_ADMIN_PASSWORD",  # login admin
    "AIRFLOW_VIEWER_PASSWORD",  # login viewer
    "FLOWER_BASIC_AUTH",  # Flower's user:password
}
# What makes a variable or a setting a secret, by its name (issue 12: password, key, secret,
# token, auth).
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|KEY|TOKEN|AUTH|CREDENTIAL", re.IGNORECASE)
# Settings whose names look like secrets but whose values are not: the auth manager's class, the
# list of login names and roles, the path of the passwords file.
NOT_SECRETS = {
    "AIRFLOW__CORE__AUTH_MANAGER",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
}
# Stand-ins for the secrets, as a deployment's .env would set them.
TEST_SECRETS = {name: "test-" + name.lower().replace("_", "-") for name in REQUIRED_SECRETS}
TEST_SECRETS["FLOWER_BASIC_AUTH"] = "flower:test-flower-password"
LOOPBACK = {"127.0.0.1", "::1", "[::1]", "localhost"}

# Airflow 3's production topology (as in Airflow's reference docker-compose.yaml; issue 2).
REQUIRED_SERVICES = {
    "postgres",
    "redis",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
}
# Long-running Airflow components: each waits for airflow-init to finish successfully.
AIRFLOW_DAEMONS = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "flower",
}
# Host folders that are not in git and are created at run time (logs/ is git-ignored; config/
# holds only local overrides): Docker creates a missing bind-mount source, and airflow-init
# creates them inside the container and hands them to AIRFLOW_UID, as Airflow's own init does.
RUNTIME_FOLDERS = {"logs", "config"}


# --------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def text() -> str:
    return COMPOSE_FILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def compose(text: str) -> dict[str, Any]:
    """The compose file as Compose sees it before interpolation: anchors and merge keys resolved."""
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def airflow_services(services: dict[str, dict[str, Any]]) -> list[str]:
    return sorted(name for name in services if name.startswith("airflow-") or name == "flower")


_INTERPOLATION = re.compile(
    r"""\$(?:
        (?P<escaped>\$)
      | \{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}
      | (?P<named>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<invalid>)
    )""",
    re.VERBOSE,
)


class MissingRequired(Exception):
    pass


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's variable substitution, with an environment (default: empty, as with no .env).

    ``${VAR:-default}``/``${VAR-default}`` give the default, ``${VAR:?msg}`` raises
    MissingRequired when VAR is unset, ``$$`` is a literal ``$``.
    """
    env = env or {}

    def sub(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        if m.group("invalid") is not None and m.group("braced") is None and m.group("named") is None:
            raise ValueError(f"invalid interpolation at {m.start()} in {value!r}")
        name = m.group("braced") or m.group("named")
        op, arg = m.group("op"), m.group("arg") or ""
        current = env.get(name)
        unset_or_empty = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in (":-", "-"):
            return arg if (current is None if op == "-" else unset_or_empty) else current
        if op in (":?", "?"):
            if current is None if op == "?" else unset_or_empty:
                raise MissingRequired(f"{name}: {arg}")
            return current
        if op in (":+", "+"):
            return "" if (current is None if op == "+" else unset_or_empty) else arg
        return current or ""

    return _INTERPOLATION.sub(sub, value)


def interpolations(value: str) -> Iterator[tuple[str, str | None, str]]:
    """(variable, operator or None, argument) of every `$VAR` / `${VAR...}` in a string."""
    for m in _INTERPOLATION.finditer(value):
        name = m.group("braced") or m.group("named")
        if name:
            yield name, m.group("op"), m.group("arg") or ""


def strings_in(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string (keys excluded) in a YAML document, with its path."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings_in(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from strings_in(value, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def env_of(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE form
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def mounts(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(type, source, target) of each volume entry, short or long syntax."""
    result = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, str):
            parts = entry.split(":")
            source, target = parts[0], parts[1] if len(parts) > 1 else parts[0]
            if len(parts) == 1:
                kind = "volume"  # anonymous volume
                source = ""
            elif source.startswith((".", "/", "~", "$")):
                kind = "bind"
            else:
                kind = "volume"
            result.append((kind, source, target))
        else:
            result.append((entry.get("type", "volume"), entry.get("source", ""), entry["target"]))
    return result


def published_ports(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host address, host port, container port) of each `ports` entry, short or long syntax,
    after substitution; an empty host address means every interface of the host."""
    result = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            result.append((interpolate(str(entry.get("host_ip", "")), TEST_SECRETS),
                           interpolate(str(entry.get("published", "")), TEST_SECRETS), str(entry["target"])))
            continue
        spec = interpolate(str(entry), TEST_SECRETS).split("/")[0]
        parts = spec.rsplit(":", 2)  # [[host:]published:]target; an IPv6 host keeps its colons
        parts = [""] * (3 - len(parts)) + parts
        result.append((parts[0], parts[1], parts[2]))
    return result


def command_text(service: dict[str, Any]) -> str:
    command = service.get("command") or ""
    return "\n".join(command) if isinstance(command, list) else command


def executed_lines(script: str) -> list[str]:
    """The lines of a shell script that run something: no comments, no echo/printf messages."""
    lines = [line.strip() for line in script.splitlines()]
    return [line for line in lines if line and not line.startswith(("#", "echo ", "printf ", "'"))]


def requirements_pin(package: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        m = re.match(rf"^{re.escape(package)}==([^\s;#]+)", line.strip(), re.IGNORECASE)
        if m:
            return m.group(1)
    raise AssertionError(f"{package} is not pinned in requirements.txt")


def dockerfile_default_arg(name: str) -> str:
    m = re.search(rf"^ARG\s+{name}=(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    assert m, f"Dockerfile has no ARG {name}=<default>"
    return m.group(1)


# ------------------------------------------------------------------------------------ the schema


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def schema_errors(schema: dict[str, Any], document: Any) -> list[str]:
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    ]


def test_vendored_schema_is_the_documented_one(schema: dict[str, Any]) -> None:
    """Issue 2 "docker-compose.yaml": the schema used is the Compose Specification file recorded in
    tests/data/README.md (source, version, licence), unchanged, and a valid 2020-12 schema."""
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_SHA256
    assert schema["title"] == "Compose Specification"
    assert "2020-12" in schema["$schema"]
    jsonschema.validators.validator_for(schema).check_schema(schema)
    readme = (SCHEMA_FILE.parent / "README.md").read_text()
    assert SCHEMA_SHA256 in readme and "Apache" in readme
    assert (SCHEMA_FILE.parent / "LICENSE.compose-spec").read_text().lstrip().startswith("Apache License")


def test_compose_file_validates_against_the_compose_specification(
    schema: dict[str, Any], compose: dict[str, Any]
) -> None:
    """Issue 2 "docker-compose.yaml": the file is valid against the Compose Specification's JSON
    schema (what `docker compose config` checks first)."""
    assert schema_errors(schema, compose) == []


@pytest.mark.parametrize(
    ("label", "mutate"),
    [
        ("unknown service key", lambda c: c["services"]["airflow-worker"].update(comand="celery worker")),
        ("bad depends_on condition", lambda c: c["services"]["airflow-worker"]["depends_on"]["airflow-init"].update(
            condition="service_finished")),
        ("healthcheck test not a string/list", lambda c: c["services"]["redis"]["healthcheck"].update(test=1)),
        ("unknown top-level key", lambda c: c.update(servcies={})),
    ],
)
def test_schema_rejects_broken_files(schema: dict[str, Any], text: str, label: str, mutate: Any) -> None:
    """Issue 2 "docker-compose.yaml": the schema check has teeth: typical mistakes fail it."""
    broken = yaml.safe_load(text)
    mutate(broken)
    assert schema_errors(schema, broken), f"{label}: accepted by the schema"


def test_interpolations_are_well_formed(compose: dict[str, Any], text: str) -> None:
    """Issue 2 "docker-compose.yaml": every `$` is a valid Compose substitution (`${VAR}`,
    `${VAR:-default}`, `${VAR:?message}`, `$$` for the shell), so `docker compose` will not stop at
    "invalid interpolation format"; the only variables without default are the secrets."""
    required = set()
    for path, value in strings_in(compose):
        try:
            interpolate(value, TEST_SECRETS)
        except ValueError as exc:
            pytest.fail(f"{path}: {exc}")
        required |= {name for name, op, _arg in interpolations(value) if op in (":?", "?")}
    assert required == REQUIRED_SECRETS


# ------------------------------------------------------------------------------- the topology


def test_topology_has_every_service(services: dict[str, dict[str, Any]]) -> None:
    """Issue 2 "docker-compose.yaml" / Airflow's reference docker-compose.yaml: PostgreSQL,
    Redis, api-server, scheduler, dag-processor, triggerer, Celery worker and an init service;
    optional services (flower, cli) only under a profile."""
    assert REQUIRED_SERVICES <= set(services)
    for name in set(services) - REQUIRED_SERVICES:
        assert services[name].get("profiles"), f"{name} runs by default but is not part of the topology"
    for name in REQUIRED_SERVICES:
        assert not services[name].get("profiles"), f"{name} must run without a profile"
    commands = {name: command_text(services[name]) for name in AIRFLOW_DAEMONS & set(services)}
    assert commands["airflow-apiserver"] == "api-server"
    assert commands["airflow-scheduler"] == "scheduler"
    assert commands["airflow-dag-processor"] == "dag-processor"
    assert commands["airflow-worker"] == "celery worker"
    assert commands["airflow-triggerer"] == "triggerer"


def test_depends_on_names_existing_services(services: dict[str, dict[str, Any]]) -> None:
    """Issue 2 "docker-compose.yaml": every depends_on names an existing service; a
    `service_healthy` target has a healthcheck; a `service_completed_successfully` target is a
    one-shot (no restart policy); no default service waits for one behind a profile; no cycles."""
    graph: dict[str, set[str]] = {}
    for name, service in services.items():
        deps = service.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {dep: {"condition": "service_started"} for dep in deps}
        graph[name] = set(deps)
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown service {dep!r}"
            condition = (spec or {}).get("condition", "service_started")
            if condition == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep} healthy: no healthcheck"
            if condition == "service_completed_successfully":
                assert services[dep].get("restart", "no") == "no", f"{dep} restarts, so it never completes"
            if not service.get("profiles"):
                assert not services[dep].get("profiles"), f"{name} depends on {dep}, which is behind a profile"

    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        if state.get(node) == "done":
            return
        assert state.get(node) != "active", f"dependency cycle: {' -> '.join(trail + [node])}"
        state[node] = "active"
        for dep in graph[node]:
            visit(dep, trail + [node])
        state[node] = "done"

    for name in graph:
        visit(name, [])


def test_airflow_services_wait_for_init_and_backends(services: dict[str, dict[str, Any]]) -> None:
    """Issue 2 "docker-compose.yaml" / Airflow's reference compose file: airflow-init gates the rest via
    `service_completed_successfully`; Airflow services wait for postgres and redis healthy."""
    for name in airflow_services(services):
        deps = services[name].get("depends_on") or {}
        assert deps.get("postgres", {}).get("condition") == "service_healthy", name
        assert deps.get("redis", {}).get("condition") == "service_healthy", name
        if name in AIRFLOW_DAEMONS:
            assert deps.get("airflow-init", {}).get("condition") == "service_completed_successfully", name
    assert "airflow-init" not in (services["airflow-init"].get("depends_on") or {})


def test_airflow_services_use_the_common_anchor(text: str, services: dict[str, dict[str, Any]]) -> None:
    """Issue 2 "docker-compose.yaml": the `x-airflow-common` anchor (image, environment, volumes,
    user, depends_on) is merged into every Airflow service, as in Airflow's own file."""
    root = yaml.compose(text)
    top = {key.value: value for key, value in root.value}
    common = top["x-airflow-common"]
    assert re.search(r"^x-airflow-common:\s*&airflow-common\b", text, re.MULTILINE)
    service_nodes = {key.value: value for key, value in top["services"].value}
    for name in airflow_services(services):
        merged = [value for key, value in service_nodes[name].value if key.tag == "tag:yaml.org,2002:merge"]
        assert any(node is common for node in merged), f"{name} does not merge <<: *airflow-common"
    image = yaml.safe_load(text)["x-airflow-common"]["image"]
    for name in airflow_services(services):
        assert services[name]["image"] == image, name
    for name in ("postgres", "redis"):
        assert services[name]["image"] != image


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    """Issue 2 "docker-compose.yaml": every named volume a service mounts is declared under the
    top-level `volumes`, and every declared volume is used."""
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in services.items():
        for kind, source, _target in mounts(service):
            if kind == "volume" and source:
                assert source in declared, f"{name} mounts undeclared volume {source!r}"
                used.add(source)
    assert declared == used, f"declared but unused: {declared - used}"


def test_bind_mounted_host_paths_exist(services: dict[str, dict[str, Any]]) -> None:
    """Issue 2 "docker-compose.yaml": every bind-mounted host path (./dags, ./plugins,
    ./include, ./docker/...) exists in the repository and stays inside it. ./logs (git-ignored)
    and ./config (local overrides) may be missing in a fresh clone: airflow-init creates them."""
    init_command = command_text(services["airflow-init"])
    for name, service in services.items():
        for kind, source, target in mounts(service):
            if kind != "bind":
                continue
            assert source.startswith("./"), f"{name}: bind source {source!r} is not relative to the repo"
            host = (ROOT / source).resolve()
            assert host.is_relative_to(ROOT), f"{name}: {source} leaves the repository"
            relative = host.relative_to(ROOT).as_posix()
            if relative in RUNTIME_FOLDERS:
                assert re.search(rf"mkdir -p[^\n]*{re.escape(target)}(\s|$)", init_command), (
                    f"{source} may be missing on the host, but airflow-init does not create {target}"
                )
                continue
            assert host.exists(), f"{name} bind-mounts {source}, which does not exist"


def test_env_files_exist(services: dict[str, dict[str, Any]]) -> None:
    """Issue 2 "docker-compose.yaml": every `env_file` a service names exists (unless marked
    `required: false`); secrets come from .env, which is never committed."""
    for name, service in services.items():
        env_files = service.get("env_file") or []
        for entry in [env_files] if isinstance(env_files, (str, dict)) else env_files:
            path, required = (entry, True) if isinstance(entry, str) else (entry["path"], entry.get("required", True))
            if required:
                assert (ROOT / path).exists(), f"{name}: env_file {path} does not exist"
    assert not (ROOT / ".env").exists() or ".env" not in _tracked_files(), ".env must not be committed"


def _tracked_files() -> set[str]:
    if not shutil.which("git") or not (ROOT / ".git").exists():
        return set()
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False)
    return set(out.stdout.splitlines())


def test_folders_are_mounted_and_w365_is_importable(services: dict[str, dict[str, Any]]) -> None:
    """Issue 2 "docker-compose.yaml": our folders (dags, plugins, include, config, logs) are
    mounted under /opt/airflow in every Airflow service, and `w365` is importable there
    (PYTHONPATH names the folder where ./include is mounted)."""
    expected = {
        "./dags": "/opt/airflow/dags",
        "./plugins": "/opt/airflow/plugins",
        "./include": "/opt/airflow/include",
        "./config": "/opt/airflow/config",
        "./logs": "/opt/airflow/logs",
    }
    for name in airflow_services(services):
        binds = {source: target for kind, source, target in mounts(services[name]) if kind == "bind"}
        assert expected.items() <= binds.items(), f"{name} mounts {binds}"
        pythonpath = str(env_of(services[name]).get("PYTHONPATH", "")).split(":")
        assert "/opt/airflow/include" in pythonpath, name
        assert (ROOT / "include" / "w365" / "__init__.py").exists()


def test_init_service_migrates_both_databases(services: dict[str, dict[str, Any]]) -> None:
    """Issue 2 "docker-compose.yaml": an init service migrates both databases: `airflow db
    migrate` (Airflow's metadata) and then `w365 db upgrade` (the billing store, Alembic); it
    stops on the first error and is a one-shot."""
    init = services["airflow-init"]
    script = command_text(init)
    steps = executed_lines(script)
    migrate = [i for i, line in enumerate(steps) if re.match(r"(/entrypoint\s+)?airflow db migrate\b", line)]
    upgrade = [i for i, line in enumerate(steps) if re.match(r"(/entrypoint\s+)?(python -m )?w365 db upgrade\b", line)]
    assert migrate, "airflow-init does not run `airflow db migrate`"
    assert upgrade, "airflow-init does not run `w365 db upgrade`"
    assert migrate[0] < upgrade[0]
    assert "set -euo pipefail" in steps
    assert init.get("restart", "no") == "no"


def test_init_script_is_valid_bash(services: dict[str, dict[str, Any]]) -> None:
    """Issue 2 "docker-compose.yaml": the init command, after Compose's substitution, parses as
    bash; so do the postgres init script and docker/make-env.sh."""
    bash = shutil.which("bash")
    if not bash:
        pytest.skip("no bash on this machine")
    init = services["airflow-init"]
    assert init["entrypoint"] in ("/bin/bash", ["/bin/bash"]) and command_text(init).startswith("-c\n")
    script = interpolate(init["command"][1], {"AIRFLOW_UID": "1000"})
    subprocess.run([bash, "-n", "-c", script], check=True)
    for path in [*POSTGRES_INIT.glob("*.sh"), ROOT / "docker" / "make-env.sh"]:
        subprocess.run([bash, "-n", str(path)], check=True)


def test_provider_pool_is_the_catalogues(services: dict[str, dict[str, Any]]) -> None:
    """Issue 2 "docker-compose.yaml": airflow-init creates the provider-API pool the job
    catalogue names, only when it is missing (an operator's slot count survives a re-run)."""
    from w365.orchestration import catalogue

    steps = "\n".join(executed_lines(command_text(services["airflow-init"])))
    assert re.search(rf"^if ! (/entrypoint )?airflow pools get {catalogue.PROVIDER_POOL}\b", steps, re.MULTILINE)
    assert re.search(rf"^(/entrypoint )?airflow pools set {catalogue.PROVIDER_POOL} ", steps, re.MULTILINE)


def test_executor_is_celery_with_redis_broker(services: dict[str, dict[str, Any]]) -> None:
    """Issue 2 "docker-compose.yaml" / Airflow's reference compose file: CeleryExecutor, the broker on the redis
    service, results in Airflow's database, and tasks reach the api-server's Execution API."""
    for name in airflow_services(services):
        env = env_of(services[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        broker = make_url(interpolate(env["AIRFLOW__CELERY__BROKER_URL"], TEST_SECRETS))
        assert broker.get_backend_name() == "redis" and broker.host == "redis"
        backend = make_url(interpolate(env["AIRFLOW__CELERY__RESULT_BACKEND"], TEST_SECRETS).removeprefix("db+"))
        airflow_db = make_url(interpolate(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], TEST_SECRETS))
        assert (backend.host, backend.database) == (airflow_db.host, airflow_db.database)
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert str(env["AIRFLOW__CORE__LOAD_EXAMPLES"]).lower() == "false"
    assert env_of(services["airflow-worker"]).get("DUMB_INIT_SETSID") == "0"


def test_airflow_and_billing_store_are_different_databases_on_postgres(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 2 "docker-compose.yaml" / SPEC P4: Airflow's metadata and the billing store are two
    databases on the postgres service (`airflow` and `w365`, different roles); the store's URL is
    the connection `w365_billing`, and w365's own resolver (w365.store.session) turns the compose
    environment into the `w365` database; the postgres init script creates that database."""
    from w365.store import session as store_session

    postgres_env = env_of(services["postgres"])
    for name in airflow_services(services):
        env = env_of(services[name])
        airflow_db = make_url(interpolate(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], TEST_SECRETS))
        assert airflow_db.get_backend_name() == "postgresql"
        assert airflow_db.host == "postgres" and airflow_db.host in services
        assert airflow_db.database == postgres_env["POSTGRES_DB"]
        assert airflow_db.username == postgres_env["POSTGRES_USER"]

        store_env = {k: interpolate(str(v), TEST_SECRETS) for k, v in env.items() if k in ("W365_DATABASE_URL", "AIRFLOW_CONN_W365_BILLING")}
        assert store_env, f"{name}: neither W365_DATABASE_URL nor AIRFLOW_CONN_W365_BILLING is set"
        monkeypatch.delenv("W365_DATABASE_URL", raising=False)
        monkeypatch.delenv("AIRFLOW_CONN_W365_BILLING", raising=False)
        for key, value in store_env.items():
            monkeypatch.setenv(key, value)
        store = make_url(store_session.database_url())
        assert store.drivername == "postgresql+psycopg2"
        assert store.host == airflow_db.host
        assert store.database != airflow_db.database, f"{name}: the billing store is Airflow's database"
        assert store.username != airflow_db.username

    init_sql = "\n".join(p.read_text() for p in sorted(POSTGRES_INIT.iterdir()) if p.suffix in (".sh", ".sql"))
    assert re.search(rf"CREATE DATABASE {store.database}\b[^;]*\bOWNER {store.username}\b", init_sql)
    assert re.search(rf"CREATE ROLE {store.username} LOGIN\b", init_sql)
    mounted = [target for kind, source, target in mounts(services["postgres"])
               if kind == "bind" and (ROOT / source).resolve() == POSTGRES_INIT.resolve()]
    assert mounted == ["/docker-entrypoint-initdb.d"]
    assert "W365_DB_PASSWORD" in postgres_env


def test_image_version_equals_the_requirements_pin(compose: dict[str, Any]) -> None:
    """Issue 2 "docker-compose.yaml": the image is Airflow's official one at exactly the
    `apache-airflow==` version pinned in requirements.txt, the Python variant we test on."""
    version = requirements_pin("apache-airflow")
    common = compose["x-airflow-common"]
    base_from_compose = interpolate(common["build"]["args"]["AIRFLOW_BASE_IMAGE"])
    base_from_dockerfile = dockerfile_default_arg("AIRFLOW_BASE_IMAGE")
    for base in (base_from_compose, base_from_dockerfile):
        repo, _, tag = base.partition(":")
        assert repo == "apache/airflow"
        assert tag.split("-")[0] == version, f"{base} vs apache-airflow=={version}"
        python = re.search(r"-python(\d+\.\d+)$", tag)
        assert python and python.group(1) == "3.11", f"{base}: not the Python 3.11 variant"
    assert re.search(r"^FROM \$\{AIRFLOW_BASE_IMAGE\}$", DOCKERFILE.read_text(), re.MULTILINE)
    own_tag = interpolate(common["image"]).rpartition(":")[2]
    assert own_tag.split("-")[0] == version
    assert (ROOT / common["build"]["context"] / common["build"]["dockerfile"]).resolve() == DOCKERFILE


def test_dockerfile_copies_what_exists() -> None:
    """Issue 2 "docker-compose.yaml" / issue 14: the image's Dockerfile copies only files that
    exist and is not defeated by .dockerignore; it installs the runtime lock (requirements.txt,
    after checking that the base image's Airflow is the pinned one), then w365 itself with
    --no-deps, and nothing else: no package outside the lock, no unpinned version; `pip check`."""
    content = "\n".join(line for line in DOCKERFILE.read_text().splitlines() if not line.startswith("#"))
    sources = re.findall(r"^COPY\s+(?:--\S+\s+)*(\S+)\s+\S+$", content, re.MULTILINE)
    assert sources, "Dockerfile copies nothing"
    for source in sources:
        assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
    assert "requirements.txt" in sources
    installs = re.findall(r"pip install ([^\n\\&]*)", content)
    assert [" ".join(a for a in args.split() if a != "--no-cache-dir") for args in installs] == [
        "-r /opt/airflow/requirements.txt",
        "--no-deps -e /opt/airflow",
    ], installs
    lock_install = content.index("pip install --no-cache-dir -r /opt/airflow/requirements.txt")
    assert content.index("s/^apache-airflow==//p") < lock_install, "the base image's Airflow is not checked first"
    assert content.index("COPY --chown=airflow:0 include/") > lock_install, "editing include/ reinstalls the lock"
    assert re.search(r"^ && pip check \\$", content, re.MULTILINE)
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for source in sources:
        assert f"!{source.rstrip('/')}" in ignore or f"!{source}" in ignore, f".dockerignore hides {source}"


def test_apiserver_port_and_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    """Issue 2 "docker-compose.yaml" / Airflow's reference compose file: the api-server publishes container port 8080
    and is health-checked on /api/v2/monitor/health; every long-running service has a
    healthcheck and a restart policy."""
    apiserver = services["airflow-apiserver"]
    ports = [interpolate(str(p)) if not isinstance(p, dict) else f"{p.get('published')}:{p['target']}"
             for p in apiserver["ports"]]
    assert any(p.split(":")[-1] == "8080" for p in ports), ports
    test = apiserver["healthcheck"]["test"]
    assert "http://localhost:8080/api/v2/monitor/health" in (test if isinstance(test, str) else " ".join(test))
    for name, service in services.items():
        if name in ("airflow-init", "airflow-cli"):
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert service.get("restart") in ("always", "unless-stopped"), f"{name} is not restarted"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]


def test_secrets_are_required_with_no_default(compose: dict[str, Any]) -> None:
    """Issue 12 / SPEC P4: every `${...}` substitution of a secret (its variable's name says
    password, key, secret, token or auth) is `${NAME:?message}`: no `:-`/`-` default, no bare
    `${NAME}` (which compose would replace by an empty string). The message says what to set and
    where (.env beside the compose file). The secrets found are exactly the deployment's."""
    found = set()
    for path, value in strings_in(compose):
        for name, op, arg in interpolations(value):
            if not SECRET_NAME.search(name):
                continue
            found.add(name)
            assert op == ":?", f"{path}: ${{{name}{op or ''}{arg}}} is a secret with a default or none at all"
            assert name in arg and ".env" in arg and ".env.example" in arg, f"{path}: {name}'s message {arg!r}"
    assert found == REQUIRED_SECRETS


def _secret_settings(services: dict[str, dict[str, Any]]) -> Iterator[tuple[str, str, str]]:
    """(service, setting, value) of every environment setting whose name says it is a secret."""
    for name, service in services.items():
        for key, value in env_of(service).items():
            if SECRET_NAME.search(key) and key not in NOT_SECRETS:
                yield name, key, str(value)


def test_no_secret_value_is_in_the_file(text: str, compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    """Issue 12 / SPEC P4: no credential is written in the file. Each secret setting (the
    Fernet key, JWT and API secrets, database, Redis and login passwords, Flower's auth) is one
    required substitution and nothing else; every password in a URL (`scheme://user:PASSWORD@`)
    is one too; the previous development defaults (`airflow`, `w365`) are gone."""
    settings = list(_secret_settings(services))
    keys = {key for _service, key, _value in settings}
    assert {"AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "POSTGRES_PASSWORD",
            "W365_DB_PASSWORD", "REDISCLI_AUTH", "AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_VIEWER_PASSWORD",
            "AIRFLOW__CELERY__FLOWER_BASIC_AUTH"} <= keys
    for service, key, value in settings:
        assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]+\}", value), f"{service}: {key}={value!r} is not one required variable"
    urls = 0
    for path, value in strings_in(compose):
        for m in re.finditer(r"://[^/:@\s]*:(\$\{[^}]*\}|[^@\s]*)@", value):
            urls += 1
            assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]+\}", m.group(1)), f"{path}: password {m.group(1)!r} in a URL"
    assert urls >= 4  # Airflow's database, Celery results, the broker, the billing store
    for old in (":-airflow}", ":-w365}", "redis://:@"):
        assert old not in text


def test_redis_requires_a_password(services: dict[str, dict[str, Any]]) -> None:
    """Issue 12: Redis starts with `--requirepass` from the required REDIS_PASSWORD; the broker
    URL of every Airflow service (Flower included) carries that password; the healthcheck
    authenticates (REDISCLI_AUTH) and accepts only PONG (redis-cli exits 0 on NOAUTH too); the
    Celery result backend (Airflow's database) carries the PostgreSQL password."""
    redis = services["redis"]
    command = redis["command"]
    assert isinstance(command, list) and command[0] == "redis-server"
    i = command.index("--requirepass")
    assert re.fullmatch(r"\$\{REDIS_PASSWORD:\?[^}]+\}", command[i + 1])
    assert re.fullmatch(r"\$\{REDIS_PASSWORD:\?[^}]+\}", str(env_of(redis)["REDISCLI_AUTH"]))
    test = redis["healthcheck"]["test"]
    test = test if isinstance(test, str) else " ".join(test)
    assert "redis-cli" in test and "PONG" in test and "-a " not in test  # no password on a command line
    for name in airflow_services(services):
        env = env_of(services[name])
        broker = make_url(interpolate(env["AIRFLOW__CELERY__BROKER_URL"], TEST_SECRETS))
        assert broker.password == TEST_SECRETS["REDIS_PASSWORD"], name
        backend = make_url(interpolate(env["AIRFLOW__CELERY__RESULT_BACKEND"], TEST_SECRETS).removeprefix("db+"))
        assert backend.password == TEST_SECRETS["POSTGRES_PASSWORD"], name


def test_backends_are_not_published_on_all_interfaces(services: dict[str, dict[str, Any]]) -> None:
    """Issue 12: PostgreSQL and Redis are not reachable from outside the host: neither service
    publishes a port on all interfaces (none at all today), no service publishes 5432 or 6379 on
    all interfaces, and no service shares the host's network."""
    for name, service in services.items():
        assert service.get("network_mode") != "host", f"{name} uses the host's network"
        for host, published, target in published_ports(service):
            if name in ("postgres", "redis") or target.split("-")[0] in ("5432", "6379"):
                assert host in LOOPBACK, f"{name} publishes {published}:{target} on {host or 'every interface'}"
    assert not services["postgres"].get("ports") and not services["redis"].get("ports")


def test_flower_is_local_and_asks_for_a_password(services: dict[str, dict[str, Any]]) -> None:
    """Issue 12: Flower (behind its profile) publishes on the host's loopback only and asks for
    basic auth from the required FLOWER_BASIC_AUTH (Airflow's [celery] flower_basic_auth, which
    `airflow celery flower` passes to Flower); its healthcheck uses /healthcheck, the one page
    Flower serves without credentials (checked against flower 2.2 here)."""
    flower = services["flower"]
    assert flower.get("profiles") == ["flower"]
    ports = published_ports(flower)
    assert ports and all(host == "127.0.0.1" for host, _published, _target in ports), ports
    assert [target for _host, _published, target in ports] == ["5555"]
    assert re.fullmatch(r"\$\{FLOWER_BASIC_AUTH:\?[^}]+\}", str(env_of(flower)["AIRFLOW__CELERY__FLOWER_BASIC_AUTH"]))
    user, _, password = TEST_SECRETS["FLOWER_BASIC_AUTH"].partition(":")
    assert user and password
    test = flower["healthcheck"]["test"]
    assert "http://localhost:5555/healthcheck" in (test if isinstance(test, str) else " ".join(test))
    for name in airflow_services(services):
        if name != "flower":  # only Flower needs it
            assert "AIRFLOW__CELERY__FLOWER_BASIC_AUTH" not in env_of(services[name]), name


def _login_script(services: dict[str, dict[str, Any]]) -> str:
    """The Python program airflow-init runs (`python3 - <<'PY' ... PY`) to write the logins'
    passwords file."""
    script = command_text(services["airflow-init"])
    m = re.search(r"^python3 - <<'PY'\n(.*?)^PY$", script, re.MULTILINE | re.DOTALL)
    assert m, "airflow-init does not write the passwords file with python3 - <<'PY' ... PY"
    return m.group(1)


def _login_env(services: dict[str, dict[str, Any]], passwords_file: Path) -> dict[str, str]:
    init_env = env_of(services["airflow-init"])
    env = {k: v for k, v in os.environ.items() if not SECRET_NAME.search(k) and not k.startswith("AIRFLOW")}
    env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = str(init_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"])
    env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(passwords_file)
    for key in ("AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_VIEWER_PASSWORD"):
        env[key] = interpolate(str(init_env[key]), TEST_SECRETS)
    return env


def test_logins_come_from_required_secrets(services: dict[str, dict[str, Any]]) -> None:
    """Issue 12: the login users are fixed in the file (no variable could add one without a
    password); their passwords reach airflow-init only, from the required AIRFLOW_ADMIN_PASSWORD
    and AIRFLOW_VIEWER_PASSWORD; every Airflow service mounts the passwords file's volume (so
    none generates a file of its own); airflow-init prints no secret: no `set -x`, no echo or
    print of a secret variable; nothing tells anyone to grep a log for a password."""
    common = env_of(services["airflow-apiserver"])
    users = str(common["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"])
    assert "$" not in users and [u.split(":")[0] for u in users.split(",")] == ["admin", "viewer"]
    passwords_file = Path(str(common["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]))
    for name in airflow_services(services):
        env = env_of(services[name])
        assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] == str(passwords_file), name
        assert any(kind == "volume" and target == str(passwords_file.parent) for kind, _s, target in mounts(services[name])), name
        if name != "airflow-init":
            assert not {"AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_VIEWER_PASSWORD"} & set(env), f"{name} sees the login passwords"
    init_env = env_of(services["airflow-init"])
    for key in ("AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_VIEWER_PASSWORD"):
        assert re.fullmatch(rf"\$\{{{key}:\?[^}}]+\}}", str(init_env[key]))
    script = command_text(services["airflow-init"])
    assert not re.search(r"^\s*set\s+-[a-z]*x", script, re.MULTILINE), "airflow-init traces its commands"
    secret_reference = re.compile(r"\$\$?\{?(\w+)|os\.environ(?:\.get)?\W+(\w+)")
    for line in script.splitlines():
        if re.match(r"\s*(echo|printf|print)\b", line):
            names = {a or b for a, b in secret_reference.findall(line)}
            assert not {n for n in names if SECRET_NAME.search(n)}, f"airflow-init prints a secret: {line.strip()}"
    for path in (COMPOSE_FILE, ROOT / "docs" / "deployment.md"):
        assert "grep Password" not in path.read_text(), path


def test_init_writes_the_passwords_file_and_prints_no_password(services: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """Issue 12: airflow-init's program, run as it is in the file, writes SimpleAuthManager's
    passwords file from the secrets (every configured user, mode 0660, replaced whole) and
    prints none of them; a configured user without a password stops it, naming the variable to
    set, without writing a file (the api-server would generate and print that user's password)."""
    program = _login_script(services)
    passwords_file = tmp_path / "auth" / "simple_auth_manager_passwords.json.generated"
    passwords_file.parent.mkdir()
    passwords_file.write_text('{"admin": "old"}')
    env = _login_env(services, passwords_file)
    run = subprocess.run(["python3", "-"], input=program, env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    expected = {"admin": env["AIRFLOW_ADMIN_PASSWORD"], "viewer": env["AIRFLOW_VIEWER_PASSWORD"]}
    assert json.loads(passwords_file.read_text()) == expected
    assert passwords_file.stat().st_mode & 0o777 == 0o660
    assert sorted(p.name for p in passwords_file.parent.iterdir()) == [passwords_file.name]
    for password in expected.values():
        assert password not in run.stdout + run.stderr

    fresh = tmp_path / "fresh" / passwords_file.name
    fresh.parent.mkdir()
    for broken in ({"AIRFLOW_VIEWER_PASSWORD": ""}, {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer,ops:op"}):
        refused = subprocess.run(["python3", "-"], input=program, env={**_login_env(services, fresh), **broken},
                                 capture_output=True, text=True, check=False)
        assert refused.returncode != 0
        assert ("AIRFLOW_VIEWER_PASSWORD" if "AIRFLOW_VIEWER_PASSWORD" in broken else "ops") in refused.stderr
        assert env["AIRFLOW_ADMIN_PASSWORD"] not in refused.stdout + refused.stderr
        assert not fresh.exists()


def test_simple_auth_manager_prints_no_password_with_the_init_file(services: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """Issue 12: with the passwords file airflow-init writes, Airflow's own SimpleAuthManager (what
    the api-server runs at start) generates no password and prints none, and leaves the file as it
    is. The same check without the file does catch the printed, generated passwords, so the
    first half is not passing by accident."""
    passwords_file = tmp_path / "auth" / "simple_auth_manager_passwords.json.generated"
    passwords_file.parent.mkdir()
    env = _login_env(services, passwords_file)
    subprocess.run(["python3", "-"], input=_login_script(services), env=env, check=True, capture_output=True, text=True)
    written = passwords_file.read_text()
    missing = tmp_path / "missing" / passwords_file.name
    missing.parent.mkdir()
    program = (
        "import os, sys\n"
        "from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager\n"
        "SimpleAuthManager().init()\n"
        "sys.stdout.flush()\n"
        "print('=== without the file', flush=True)\n"
        f"os.environ['AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE'] = {str(missing)!r}\n"
        "SimpleAuthManager().init()\n"
    )
    airflow_env = {k: v for k, v in os.environ.items() if k.startswith("AIRFLOW") and not SECRET_NAME.search(k)}
    airflow_env = {**airflow_env, **{k: v for k, v in env.items() if k.startswith("AIRFLOW__")},
                   "AIRFLOW__CORE__AUTH_MANAGER": str(env_of(services["airflow-apiserver"])["AIRFLOW__CORE__AUTH_MANAGER"])}
    run_env = {**{k: v for k, v in env.items() if not k.startswith("AIRFLOW")}, **airflow_env}
    run = subprocess.run([sys.executable, "-c", program], env=run_env, capture_output=True, text=True, check=False, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    with_file, _, without_file = (run.stdout + "\n" + run.stderr).partition("=== without the file")
    assert "Password for user" not in with_file
    assert env["AIRFLOW_ADMIN_PASSWORD"] not in run.stdout + run.stderr
    assert passwords_file.read_text() == written
    assert "Password for user 'admin'" in without_file and missing.exists()


def test_env_example_names_every_variable(compose: dict[str, Any]) -> None:
    """Issue 12: .env.example (committed, beside the compose file) names every variable the
    compose file uses; each required secret is a `NAME=` line left empty (a copy nobody filled in
    is refused by compose, not started with a placeholder password) with, in its comment, the
    command that generates it; no secret has a value there."""
    used = {name for _path, value in strings_in(compose) for name, _op, _arg in interpolations(value)}
    lines = ENV_EXAMPLE.read_text().splitlines()
    for name in used:
        assert any(re.match(rf"#?\s*{name}=", line) for line in lines), f".env.example does not name {name}"
    for line in lines:
        m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if m and SECRET_NAME.search(m.group(1)):
            assert m.group(2) == "", f".env.example gives {m.group(1)} a value"
    for name in REQUIRED_SECRETS:
        i = lines.index(f"{name}=")
        block = []
        for previous in reversed(lines[:i]):
            if not previous.strip():
                break
            block.append(previous)
        assert any("python3 -c" in line for line in block), f".env.example: no way to generate {name}"
    example = ENV_EXAMPLE.read_text()
    assert "secrets.token_urlsafe(32)" in example and "base64.urlsafe_b64encode(os.urandom(32))" in example


def test_env_is_git_ignored() -> None:
    """Issue 12: `.env` (the deployment's secrets) is ignored by git, and so are variants such as
    `.env.production`; `.env.example` is not; `.env` is not tracked."""
    if not shutil.which("git") or not (ROOT / ".git").exists():
        pytest.skip("not a git work tree")
    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False).returncode == 0
    assert ignored(".env") and ignored(".env.production")
    assert not ignored(".env.example")
    assert ".env" not in _tracked_files()


def test_make_env_generates_every_secret(compose: dict[str, Any], tmp_path: Path) -> None:
    """Issue 12: docker/make-env.sh writes a .env (mode 0600) from .env.example with a fresh value
    for every required secret: URL-safe (they go into URLs), all different, a valid Fernet key,
    Flower's as user:password; the compose file then interpolates with nothing missing. It prints
    no secret and never overwrites an existing file."""
    from cryptography.fernet import Fernet

    target = tmp_path / ".env"
    run = subprocess.run(["bash", str(MAKE_ENV), str(target)], cwd=ROOT, capture_output=True, text=True, check=True)
    assert target.stat().st_mode & 0o777 == 0o600
    values = dict(line.split("=", 1) for line in target.read_text().splitlines() if re.match(r"[A-Za-z_]\w*=", line))
    for name in REQUIRED_SECRETS:
        assert values.get(name), f"make-env.sh leaves {name} empty"
        assert values[name] not in run.stdout + run.stderr, f"make-env.sh prints {name}"
    for name in REQUIRED_SECRETS - {"AIRFLOW_FERNET_KEY", "FLOWER_BASIC_AUTH"}:
        assert re.fullmatch(r"[A-Za-z0-9_-]{32,}", values[name]), name
    Fernet(values["AIRFLOW_FERNET_KEY"].encode())
    user, _, password = values["FLOWER_BASIC_AUTH"].partition(":")
    assert user == "flower" and re.fullmatch(r"[A-Za-z0-9_-]{32,}", password)
    assert len({values[name] for name in REQUIRED_SECRETS}) == len(REQUIRED_SECRETS)
    for _path, value in strings_in(compose):
        interpolate(value, values)  # raises MissingRequired if make-env.sh forgot one
    before = target.read_text()
    subprocess.run(["bash", str(MAKE_ENV), str(target)], cwd=ROOT, capture_output=True, check=True)
    assert target.read_text() == before


def test_tenant_time_zone_is_configured(services: dict[str, dict[str, Any]]) -> None:
    """Issue 2 "docker-compose.yaml" / SPEC S4: every Airflow service has the tenant's time zone
    (`AIRFLOW__W365__TIMEZONE`, [w365] timezone), and its default is a real IANA zone."""
    for name in airflow_services(services):
        value = interpolate(str(env_of(services[name])["AIRFLOW__W365__TIMEZONE"]))
        zoneinfo.ZoneInfo(value)


def test_deployment_doc_covers_the_topology() -> None:
    """Issue 2 "docker-compose.yaml": docs/deployment.md explains the embedded default and this
    topology, how to start it, the tenant time zone, the connections and scaling workers."""
    doc = (ROOT / "docs" / "deployment.md").read_text()
    for needle in (
        "docker compose up airflow-init",
        "docker compose up -d",
        "--scale airflow-worker=",
        "AIRFLOW__W365__TIMEZONE",
        "w365_billing",
        "partner_center",
        "scripts/start.sh",
        "airflow standalone",
    ):
        assert needle in doc, needle


def test_deployment_doc_says_what_to_set_first() -> None:
    """Issue 12: docs/deployment.md says which secrets to set before `docker compose up` (each
    required variable), where (.env, from .env.example or docker/make-env.sh) and why there are no
    defaults; and how to reach Flower, bound to the host's loopback."""
    doc = (ROOT / "docs" / "deployment.md").read_text()
    for needle in (*sorted(REQUIRED_SECRETS), ".env.example", "docker/make-env.sh", "no default", "127.0.0.1"):
        assert needle in doc, needle
    assert "docker/env.example" not in doc


def _compose_cli() -> list[str] | None:
    """Docker Compose v2 (`docker compose`), else v1 (`docker-compose`); neither needs an engine
    for `config`. None when this machine has neither."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    """Issue 2 "docker-compose.yaml" / issue 12: where a Compose CLI is installed, `config -q`
    (parse, interpolate, validate, resolve paths; no engine needed) accepts the file with the .env
    docker/make-env.sh writes, and refuses it when any one secret is missing (no .env at all, or
    a .env without that one), naming the variable and where to set it."""
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no Docker Compose CLI on this machine (e.g. apt-get install docker-compose)")
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("COMPOSE_", "AIRFLOW_", "W365_", "FLOWER_", "REDIS_", "POSTGRES_"))}
    generated = tmp_path / "generated.env"
    subprocess.run(["bash", str(MAKE_ENV), str(generated)], cwd=ROOT, capture_output=True, check=True)

    def config(env_file: Path) -> subprocess.CompletedProcess[str]:
        # --env-file: a developer's own .env stays out of this check.
        command = [*cli, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", "-q"]
        return subprocess.run(command, cwd=ROOT, env=base, capture_output=True, text=True, check=False)

    ok = config(generated)
    assert ok.returncode == 0, ok.stderr
    empty = tmp_path / "empty.env"
    empty.write_text("")
    refused = config(empty)
    output = refused.stderr + refused.stdout
    assert refused.returncode != 0
    assert any(f"set {name} in .env" in output for name in REQUIRED_SECRETS), output
    lines = generated.read_text().splitlines()
    for name in sorted(REQUIRED_SECRETS):
        without = tmp_path / f"without-{name}.env"
        without.write_text("\n".join(line for line in lines if not line.startswith(f"{name}=")) + "\n")
        refused = config(without)
        assert refused.returncode != 0 and f"set {name} in .env" in refused.stderr + refused.stdout, name


# ------------------------------------------------------------------------- packaging (issue 14)

PYPROJECT = ROOT / "pyproject.toml"
# Import names whose distribution is named otherwise; `airflow.providers.<name>` is
# apache-airflow-providers-<name>, the rest of `airflow` is apache-airflow.
IMPORT_TO_DISTRIBUTION = {
    "yaml": "PyYAML",
    "dateutil": "python-dateutil",
    "psycopg2": "psycopg2-binary",
    "jinja2": "Jinja2",
    "markupsafe": "MarkupSafe",
    "sqlalchemy": "SQLAlchemy",
    "airflow": "apache-airflow",
}
# Calls whose string argument is a module w365 imports at run time (w365.config.import_airflow).
IMPORTING_CALLS = {"import_airflow", "import_module"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    """{canonical name: version} of a lock's `name==version` lines; every other line is a comment,
    blank, or `-r`."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-r ")):
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", line)
        assert m, f"{path.name}: not an exact pin: {line!r}"
        assert _canonical(m.group(1)) not in pins, f"{path.name}: {m.group(1)} pinned twice"
        pins[_canonical(m.group(1))] = m.group(2)
    return pins


def _project() -> dict[str, Any]:
    return tomllib.loads(PYPROJECT.read_text())["project"]


def imported_modules(source: str) -> set[str]:
    """Every absolute module a Python source imports, wherever: at the top, inside functions
    (lazy imports), under `if TYPE_CHECKING`, or named as a string literal to
    `import_airflow(...)`/`importlib.import_module(...)`."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in IMPORTING_CALLS:
                modules.add(node.args[0].value)
    return modules


def distribution_of(module: str) -> str | None:
    """The distribution that provides a module w365 imports; None for the standard library and
    w365 itself."""
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top == "w365":
        return None
    parts = module.split(".")
    if parts[:2] == ["airflow", "providers"] and len(parts) > 2:
        return f"apache-airflow-providers-{parts[2].replace('_', '-')}"
    if top in IMPORT_TO_DISTRIBUTION:
        return IMPORT_TO_DISTRIBUTION[top]
    from importlib.metadata import packages_distributions

    found = packages_distributions().get(top)
    assert found, f"import {module}: no installed distribution provides it; add it to IMPORT_TO_DISTRIBUTION"
    assert len(set(found)) == 1, f"import {module}: provided by {found}; add it to IMPORT_TO_DISTRIBUTION"
    return found[0]


def test_import_scan_finds_lazy_and_string_imports() -> None:
    """Issue 14: the scan below sees imports inside functions and modules named to
    import_airflow()/import_module(), and maps them to distributions."""
    source = (
        "import os\nfrom . import sibling\nfrom w365.core import money\n"
        "def f():\n    import yaml\n    from dateutil.relativedelta import relativedelta\n"
        "    return import_airflow('airflow.providers.smtp.notifications.smtp')\n"
        "def g():\n    return importlib.import_module('airflow.sdk')\n"
    )
    modules = imported_modules(source)
    assert modules == {"os", "w365.core", "yaml", "dateutil.relativedelta",
                       "airflow.providers.smtp.notifications.smtp", "airflow.sdk"}
    assert {distribution_of(m) for m in modules} == {
        None, "PyYAML", "python-dateutil", "apache-airflow-providers-smtp", "apache-airflow"}


def test_every_third_party_import_is_a_declared_dependency() -> None:
    """Issue 14: every third-party module that include/w365 (and the DAGs and the plugin, which
    run in the same Airflow) imports, lazy imports included, comes from a distribution that
    pyproject.toml's [project] dependencies name, so `pip install .` gives a working w365."""
    declared = {_canonical(re.match(r"[A-Za-z0-9._-]+", d).group(0)) for d in _project()["dependencies"]}
    missing: dict[str, set[str]] = {}
    files = [*(ROOT / "include" / "w365").rglob("*.py"), *(ROOT / "dags").glob("*.py"), *(ROOT / "plugins").glob("*.py")]
    assert len(files) > 20
    for path in files:
        for module in imported_modules(path.read_text(encoding="utf-8")):
            distribution = distribution_of(module)
            if distribution and _canonical(distribution) not in declared:
                missing.setdefault(distribution, set()).add(f"{path.relative_to(ROOT)} ({module})")
    assert not missing, f"imported but not in pyproject.toml's dependencies: {missing}"


def test_runtime_dependencies_are_pinned_in_the_runtime_lock() -> None:
    """Issue 14: requirements.txt (the runtime lock) holds only exact pins, one per distribution,
    and pins every one of pyproject's dependencies (extras' distributions too) at a version its
    range allows; apache-airflow is pinned exactly as in pyproject; the header says how the lock
    was made and how to regenerate it. No test tool is in the runtime lock."""
    from packaging.requirements import Requirement

    runtime = _pins(ROOT / "requirements.txt")
    for spec in _project()["dependencies"]:
        requirement = Requirement(spec)
        name = _canonical(requirement.name)
        assert name in runtime, f"{requirement.name} is not pinned in requirements.txt"
        assert requirement.specifier.contains(runtime[name], prereleases=True), \
            f"requirements.txt pins {requirement.name}=={runtime[name]}, outside {requirement.specifier}"
        for extra in requirement.extras:  # celery[redis]
            assert _canonical(extra) in runtime, f"{requirement.name}[{extra}]: {extra} is not pinned"
    assert "apache-airflow==" + runtime["apache-airflow"] in _project()["dependencies"]
    for tool in ("pytest", "hypothesis", "selenium", "ruff", "mypy"):
        assert tool not in runtime, f"{tool} is a test tool, not a runtime dependency"
    header = (ROOT / "requirements.txt").read_text().split("\n\n")[0]
    assert "pip check" in header and "bash scripts/lock.sh" in header and "fresh Python 3.11 virtualenv" in header


def test_dev_lock_includes_the_runtime_lock_and_pins_the_dev_extra() -> None:
    """Issue 14: requirements-dev.txt starts from `-r requirements.txt` and adds exact pins only
    (none of them re-pinning a runtime distribution): pyproject's `dev` extra, each at a version
    its range allows, hypothesis at 6.170.17."""
    from packaging.requirements import Requirement

    dev_file = ROOT / "requirements-dev.txt"
    includes = [line.split()[1] for line in dev_file.read_text().splitlines() if line.startswith("-r ")]
    assert includes == ["requirements.txt"]
    runtime, dev = _pins(ROOT / "requirements.txt"), _pins(dev_file)
    assert not set(runtime) & set(dev), f"re-pinned in requirements-dev.txt: {set(runtime) & set(dev)}"
    both = {**runtime, **dev}
    for spec in _project()["optional-dependencies"]["dev"]:
        requirement = Requirement(spec)
        name = _canonical(requirement.name)
        assert name in both, f"{requirement.name} (dev extra) is pinned in neither lock"
        assert requirement.specifier.contains(both[name], prereleases=True), f"{requirement.name}=={both[name]}"
    for tool in ("pytest", "hypothesis", "selenium", "ruff", "mypy"):
        assert tool in dev
    assert dev["hypothesis"] == "6.170.17"


def test_env_sh_installs_the_dev_lock_for_the_tests(tmp_path: Path) -> None:
    """Issue 14: scripts/env.sh installs the runtime lock for the quick start and the dev lock
    with W365_DEV=1, which scripts/test.sh sets before sourcing it; it installs again when
    either lock or pyproject.toml is newer than .venv/.installed (a venv that had the dev lock
    keeps it), and not otherwise. Checked with a stand-in .venv/bin/python that logs its calls."""
    test_sh = (ROOT / "scripts" / "test.sh").read_text()
    assert re.search(r"^export W365_DEV=1$", test_sh, re.MULTILINE)
    assert test_sh.index("export W365_DEV=1") < test_sh.index('source "$(dirname "$0")/env.sh"')
    assert "W365_DEV" not in (ROOT / "scripts" / "start.sh").read_text()

    root = tmp_path / "w365"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "env.sh", root / "scripts" / "env.sh")
    for name in ("requirements.txt", "requirements-dev.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, root / name)
        os.utime(root / name, (1_000_000_000, 1_000_000_000))
    venv_bin = root / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    log = tmp_path / "python-calls.log"
    (venv_bin / "python").write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n')
    (venv_bin / "python").chmod(0o755)
    marker = root / ".venv" / ".installed"

    def source(**env: str) -> list[str]:
        log.write_text("")
        run = subprocess.run(["bash", "-c", 'set -euo pipefail; source "$1/scripts/env.sh"', "env.sh", str(root)],
                             env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env},
                             capture_output=True, text=True, check=False)
        assert run.returncode == 0, run.stderr
        return [line for line in log.read_text().splitlines() if "pip install" in line and "--upgrade pip" not in line]

    assert source() == [f"-m pip install -q -r {root}/requirements.txt", f"-m pip install -q --no-deps -e {root}"]
    assert marker.read_text().strip() == "requirements.txt"
    assert source() == []  # installed, nothing newer
    assert source(W365_DEV="1") == [f"-m pip install -q -r {root}/requirements-dev.txt",
                                    f"-m pip install -q --no-deps -e {root}"]
    assert marker.read_text().strip() == "requirements-dev.txt"
    assert source(W365_DEV="1") == [] and source() == []
    for name in ("requirements.txt", "requirements-dev.txt", "pyproject.toml"):
        os.utime(marker, (1_500_000_000, 1_500_000_000))
        os.utime(root / name)  # now: newer than the marker
        assert source() == [f"-m pip install -q -r {root}/requirements-dev.txt",
                            f"-m pip install -q --no-deps -e {root}"], name
        os.utime(root / name, (1_000_000_000, 1_000_000_000))
    assert source(W365_SKIP_INSTALL="1") == []
