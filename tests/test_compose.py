"""Issue 2 "docker-compose.yaml": the production topology, checked without a Docker engine.

The file cannot be started here, so these tests validate it against the Compose Specification's
JSON schema (vendored in tests/data, see its README.md) and check that every reference in it
resolves: services, volumes, bind-mounted folders, env files, the image version, the databases.
Topology as in Airflow 3's own docker-compose.yaml (shared/AIRFLOW3.md "Production topology").
"""

from __future__ import annotations

import hashlib
import os
import json
import re
import shutil
import subprocess
import zoneinfo
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import yaml
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
SCHEMA_FILE = ROOT / "tests" / "data" / "compose-spec.json"
SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"
DOCKERFILE = ROOT / "Dockerfile"
POSTGRES_INIT = ROOT / "docker" / "postgres-init"

# Airflow 3's production topology (shared/AIRFLOW3.md, issue 2).
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
            interpolate(value)
        except MissingRequired as exc:
            required.add(str(exc).split(":")[0])
        except ValueError as exc:
            pytest.fail(f"{path}: {exc}")
    assert required == {"AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY"}


# ------------------------------------------------------------------------------- the topology


def test_topology_has_every_service(services: dict[str, dict[str, Any]]) -> None:
    """Issue 2 "docker-compose.yaml" / shared/AIRFLOW3.md "Production topology": PostgreSQL,
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
    """Issue 2 "docker-compose.yaml" / AIRFLOW3.md: airflow-init gates the rest via
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
    from w365 import catalogue

    steps = "\n".join(executed_lines(command_text(services["airflow-init"])))
    assert re.search(rf"^if ! (/entrypoint )?airflow pools get {catalogue.PROVIDER_POOL}\b", steps, re.MULTILINE)
    assert re.search(rf"^(/entrypoint )?airflow pools set {catalogue.PROVIDER_POOL} ", steps, re.MULTILINE)


def test_executor_is_celery_with_redis_broker(services: dict[str, dict[str, Any]]) -> None:
    """Issue 2 "docker-compose.yaml" / AIRFLOW3.md: CeleryExecutor, the broker on the redis
    service, results in Airflow's database, and tasks reach the api-server's Execution API."""
    for name in airflow_services(services):
        env = env_of(services[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        broker = make_url(interpolate(env["AIRFLOW__CELERY__BROKER_URL"]))
        assert broker.get_backend_name() == "redis" and broker.host == "redis"
        backend = make_url(interpolate(env["AIRFLOW__CELERY__RESULT_BACKEND"]).removeprefix("db+"))
        airflow_db = make_url(interpolate(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]))
        assert (backend.host, backend.database) == (airflow_db.host, airflow_db.database)
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert str(env["AIRFLOW__CORE__LOAD_EXAMPLES"]).lower() == "false"
    assert env_of(services["airflow-worker"]).get("DUMB_INIT_SETSID") == "0"


def test_airflow_and_billing_store_are_different_databases_on_postgres(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 2 "docker-compose.yaml" / SPEC P4: Airflow's metadata and the billing store are two
    databases on the postgres service (`airflow` and `w365`, different roles); the store's URL is
    the connection `w365_billing`, and w365's own resolver (w365.db.session) turns the compose
    environment into the `w365` database; the postgres init script creates that database."""
    from w365.db import session as store_session

    postgres_env = env_of(services["postgres"])
    for name in airflow_services(services):
        env = env_of(services[name])
        airflow_db = make_url(interpolate(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]))
        assert airflow_db.get_backend_name() == "postgresql"
        assert airflow_db.host == "postgres" and airflow_db.host in services
        assert airflow_db.database == postgres_env["POSTGRES_DB"]
        assert airflow_db.username == postgres_env["POSTGRES_USER"]

        store_env = {k: interpolate(str(v)) for k, v in env.items() if k in ("W365_DATABASE_URL", "AIRFLOW_CONN_W365_BILLING")}
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
    """Issue 2 "docker-compose.yaml": the image's Dockerfile copies only files that exist, installs
    w365 without touching Airflow's pinned dependencies (--no-deps) and is not defeated by
    .dockerignore."""
    content = DOCKERFILE.read_text()
    sources = re.findall(r"^COPY\s+(?:--\S+\s+)*(\S+)\s+\S+$", content, re.MULTILINE)
    assert sources, "Dockerfile copies nothing"
    for source in sources:
        assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
    assert re.search(r"pip install [^\n]*--no-deps", content)
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for source in sources:
        assert f"!{source.rstrip('/')}" in ignore or f"!{source}" in ignore, f".dockerignore hides {source}"


def test_apiserver_port_and_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    """Issue 2 "docker-compose.yaml" / AIRFLOW3.md: the api-server publishes container port 8080
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


def test_no_credentials_committed(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    """Issue 2 "docker-compose.yaml" / SPEC P4: no real credential in the file. Airflow's shared
    secrets (Fernet key, JWT secret, API secret key) must come from the environment with no
    default; database passwords are substitutions with development defaults, as in Airflow's own
    file; docker/env.example leaves the secrets empty."""
    secrets = {
        "AIRFLOW__CORE__FERNET_KEY": "AIRFLOW_FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET": "AIRFLOW_JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY": "AIRFLOW_API_SECRET_KEY",
    }
    for name in airflow_services(services):
        env = env_of(services[name])
        for key, variable in secrets.items():
            assert re.fullmatch(rf"\$\{{{variable}:\?[^}}]+\}}", str(env[key])), f"{name}: {key}={env[key]!r}"
        for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND", "AIRFLOW_CONN_W365_BILLING"):
            if key in env:  # user:${PASSWORD_VARIABLE:-dev-default}@host
                assert re.search(r"://[^:/@]+:\$\{[A-Z0-9_]+:-[^}]*\}@", str(env[key])), f"{name}: {key} has a literal password"
    assert re.fullmatch(r"\$\{POSTGRES_PASSWORD:-[^}]*\}", services["postgres"]["environment"]["POSTGRES_PASSWORD"])
    example = (ROOT / "docker" / "env.example").read_text()
    for variable in secrets.values():
        assert re.search(rf"^{variable}=$", example, re.MULTILINE), f"env.example sets {variable}"


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
    """Issue 2 "docker-compose.yaml": where a Compose CLI is installed, `config -q` (parse,
    interpolate, validate, resolve paths; no engine needed) accepts the file once the required
    secrets are set, and refuses it without them."""
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no Docker Compose CLI on this machine (e.g. apt-get install docker-compose)")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "AIRFLOW_", "W365_"))}
    env_file = tmp_path / "empty.env"  # keep a developer's own .env out of this check
    env_file.write_text("")
    command = [*cli, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", "-q"]
    secrets = {"AIRFLOW_FERNET_KEY": "x" * 44, "AIRFLOW_JWT_SECRET": "jwt", "AIRFLOW_API_SECRET_KEY": "key"}
    ok = subprocess.run(command, cwd=ROOT, env={**base, **secrets}, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    refused = subprocess.run(command, cwd=ROOT, env=base, capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "AIRFLOW_FERNET_KEY" in refused.stderr + refused.stdout
