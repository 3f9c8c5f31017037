"""docker-compose.yml (and the three-broker override), checked without a Docker engine: the
Compose specification, health checks and their conditions, volumes, secrets from .env, and the
settings each LLM-CostOps role receives, built into the real ``Settings``."""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import secrets
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
import yaml
from compose_pydantic import ComposeSpecification
from mergedeep import Strategy, merge
from pydantic import ValidationError

from llm_cost_ops.settings import FLAT_ENV, Settings

from deploy_files import (
    COMPOSE,
    ENV_EXAMPLE,
    KAFKA_CLUSTER,
    PROMETHEUS,
    ROOT,
    MissingVariableError,
    compose_variables,
    interpolate,
    load_yaml,
    read_env_file,
)

SECRETS = ("COSTOPS_ADMIN_KEY", "JWT_SECRET", "POSTGRES_PASSWORD", "CLICKHOUSE_PASSWORD", "GRAFANA_ADMIN_PASSWORD")
APP_ROLES = {"api": "api", "sink": "sink", "worker": "worker"}
"""Compose service -> the ``cost-ops`` command it runs."""
STATEFUL = {
    "kafka": "/var/lib/kafka/data",
    "clickhouse": "/var/lib/clickhouse",
    "postgres": "/var/lib/postgresql/data",
    "prometheus": "/prometheus",
    "grafana": "/var/lib/grafana",
    "sink": "/data",
    "api": "/data",
}


def sample_secrets() -> dict[str, str]:
    """What an operator puts in .env: random values that pass the settings' checks."""
    return {name: ("sk_live_" if name == "COSTOPS_ADMIN_KEY" else "") + secrets.token_hex(24) for name in SECRETS}


def compose(path: Any = COMPOSE, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The file as Compose reads it: interpolated from .env (.env.example + secrets)."""
    values = {**read_env_file(ENV_EXAMPLE), **sample_secrets(), **(env or {})}
    data: dict[str, Any] = yaml.safe_load(interpolate(path.read_text(), values))
    return data


def merged() -> dict[str, Any]:
    """docker-compose.yml with docker-compose.kafka-cluster.yml applied (mappings merge, lists replace)."""
    result: dict[str, Any] = merge({}, compose(), compose(KAFKA_CLUSTER), strategy=Strategy.REPLACE)
    return result


def without_extensions(data: dict[str, Any]) -> dict[str, Any]:
    """The specification allows ``x-*`` keys; the generated models do not know them."""
    return {key: value for key, value in data.items() if not key.startswith("x-")}


@pytest.fixture
def project() -> dict[str, Any]:
    return compose()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No setting from the test runner's own environment leaks into ``Settings``."""
    for name in list(os.environ):
        if name in FLAT_ENV or "__" in name or name == "COSTOPS_CONFIG":
            monkeypatch.delenv(name)
    yield monkeypatch


# ---- the Compose specification ---------------------------------------------------------


@pytest.mark.parametrize("data", [compose, merged], ids=["single-broker", "kafka-cluster"])
def test_follows_the_compose_specification(data: Any) -> None:
    ComposeSpecification.model_validate(without_extensions(data()))


def test_the_specification_check_catches_a_misspelt_key(project: dict[str, Any]) -> None:
    project["services"]["api"]["healthcheck"]["intreval"] = "10s"
    with pytest.raises(ValidationError, match="intreval"):
        ComposeSpecification.model_validate(without_extensions(project))


def test_the_expected_services_exist(project: dict[str, Any]) -> None:
    expected = {"kafka", "schema-registry", "clickhouse", "postgres", "api", "worker", "sink", "prometheus", "grafana"}
    assert expected <= set(project["services"])
    assert project["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert "broker,controller" in project["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft


def test_the_cluster_override_runs_three_brokers_with_replication() -> None:
    services = merged()["services"]
    brokers = [name for name, s in services.items() if str(s.get("image", "")).startswith("apache/kafka:")]
    assert sorted(brokers) == ["kafka", "kafka-2", "kafka-3"]
    ids = {services[b]["environment"]["KAFKA_NODE_ID"] for b in brokers}
    assert ids == {1, 2, 3}
    for role in APP_ROLES:
        env = services[role]["environment"]
        assert env["KAFKA__REPLICATION_FACTOR"] == 3
        assert len(env["KAFKA_BOOTSTRAP_SERVERS"].split(",")) == 3


# ---- health, restarts, dependencies, volumes -------------------------------------------


def service_problems(data: dict[str, Any]) -> list[str]:
    problems = []
    services = data["services"]
    for name, service in services.items():
        if "image" not in service and "build" not in service:
            problems.append(f"{name}: neither image nor build")
        check = service.get("healthcheck") or {}
        if check.get("disable") or not check.get("test") or check["test"] == ["NONE"]:
            problems.append(f"{name}: no healthcheck")
        if service.get("restart") not in ("always", "unless-stopped", "on-failure"):
            problems.append(f"{name}: restart policy {service.get('restart')!r}")
        depends = service.get("depends_on", {})
        if isinstance(depends, list):
            problems.append(f"{name}: depends_on without conditions")
            continue
        for target, spec in depends.items():
            if target not in services:
                problems.append(f"{name}: depends on unknown service {target}")
            elif spec.get("condition") != "service_healthy":
                problems.append(f"{name}: {target} not required healthy")
    return problems


@pytest.mark.parametrize("data", [compose, merged], ids=["single-broker", "kafka-cluster"])
def test_every_service_is_healthchecked_restarted_and_waits_for_healthy_dependencies(data: Any) -> None:
    assert service_problems(data()) == []


def test_a_missing_healthcheck_or_dependency_is_caught(project: dict[str, Any]) -> None:
    broken = copy.deepcopy(project)
    del broken["services"]["clickhouse"]["healthcheck"]
    broken["services"]["api"]["depends_on"]["redis"] = {"condition": "service_healthy"}
    broken["services"]["sink"]["depends_on"]["kafka"] = {"condition": "service_started"}
    assert service_problems(broken) == [
        "clickhouse: no healthcheck",
        "sink: kafka not required healthy",
        "api: depends on unknown service redis",
    ]


def test_the_app_waits_for_its_stores(project: dict[str, Any]) -> None:
    depends = {name: set(project["services"][name]["depends_on"]) for name in APP_ROLES}
    assert {"kafka", "schema-registry", "clickhouse", "postgres", "sink"} <= depends["api"]  # the sink migrates
    assert {"kafka", "schema-registry", "clickhouse"} <= depends["sink"]
    assert {"kafka", "schema-registry"} <= depends["worker"]


@pytest.mark.parametrize("data", [compose, merged], ids=["single-broker", "kafka-cluster"])
def test_named_volumes_are_declared_and_stateful_services_use_them(data: Any) -> None:
    project = data()
    declared = set(project.get("volumes") or {})
    used: dict[str, dict[str, str]] = {}
    for name, service in project["services"].items():
        for volume in service.get("volumes", []):
            source, _, rest = str(volume).partition(":")
            if rest and not source.startswith((".", "/", "~")):
                assert source in declared, f"{name}: volume {source} not declared"
                used.setdefault(name, {})[rest.split(":")[0]] = source
    assert declared <= {v for mounts in used.values() for v in mounts.values()}, "declared but unused volumes"
    for name, path in STATEFUL.items():
        assert path in used.get(name, {}), f"{name} keeps {path} outside a named volume"


def test_scaled_workers_have_no_fixed_name_or_host_port(project: dict[str, Any]) -> None:
    assert not [name for name, s in project["services"].items() if "container_name" in s]
    worker = project["services"]["worker"]
    assert "ports" not in worker
    assert "container_name" not in worker


def test_app_containers_run_read_only_with_a_writable_data_dir(project: dict[str, Any]) -> None:
    for name in APP_ROLES:
        service = project["services"][name]
        assert service["read_only"] is True
        assert "/tmp" in service["tmpfs"]
        assert service["environment"]["COSTOPS_DATA_DIR"] == "/data"
        assert any(str(v).endswith("/data") for v in service["volumes"])


# ---- the settings each role receives -----------------------------------------------------


def settings_of(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in service["environment"].items():
        monkeypatch.setenv(name, str(value))
    return Settings()


def unknown_variables(environment: dict[str, Any]) -> list[str]:
    """Names that are no setting: neither a flat name nor a nested ``SECTION__FIELD`` that exists."""
    unknown = []
    for name in environment:
        if name in FLAT_ENV:
            continue
        section, _, field = name.lower().partition("__")
        model = Settings.model_fields.get(section)
        annotation = getattr(model, "annotation", None) if model else None
        fields = getattr(annotation, "model_fields", {})
        if not field or field not in fields:
            unknown.append(name)
    return unknown


@pytest.mark.parametrize("role", list(APP_ROLES))
def test_every_app_variable_is_a_setting(role: str, project: dict[str, Any], clean_env: pytest.MonkeyPatch) -> None:
    environment = project["services"][role]["environment"]
    assert unknown_variables(environment) == []
    settings_of(project["services"][role], clean_env)  # Settings refuses unknown nested keys


def test_a_misspelt_variable_is_caught(project: dict[str, Any], clean_env: pytest.MonkeyPatch) -> None:
    service = copy.deepcopy(project["services"]["worker"])
    service["environment"]["WORKER__WEB_PROT"] = 6066
    service["environment"]["CLICKHOUSE_URI"] = "http://x"
    assert unknown_variables(service["environment"]) == ["WORKER__WEB_PROT", "CLICKHOUSE_URI"]
    with pytest.raises(ValidationError):
        settings_of(service, clean_env)


def test_roles_get_what_distributed_mode_needs(project: dict[str, Any], clean_env: pytest.MonkeyPatch) -> None:
    services = project["services"]
    built = {}
    for role in APP_ROLES:
        with pytest.MonkeyPatch.context() as mp:
            for name in list(os.environ):
                if name in FLAT_ENV or "__" in name:
                    mp.delenv(name)
            built[role] = settings_of(services[role], mp)
    for role, settings in built.items():
        assert settings.kafka.bootstrap_servers == "kafka:9092", role
        assert settings.kafka.schema_registry_url == "http://schema-registry:8081", role
        assert settings.kafka.partitions >= 3, f"{role}: --scale worker=3 needs at least 3 partitions"
        assert str(settings.data_dir) == "/data", role
    api, sink, worker = built["api"], built["sink"], built["worker"]
    for settings in (api, sink):
        assert settings.clickhouse.url is not None
        assert settings.clickhouse.url.get_secret_value().startswith("http://costops:")
        assert settings.clickhouse.url.get_secret_value().endswith("@clickhouse:8123/")
        assert settings.api.host == "0.0.0.0"
    assert api.database.url is not None
    assert api.database.url.get_secret_value().startswith("postgresql://costops:")
    assert api.auth.admin_key is not None
    assert api.auth.jwt_secret is not None  # shared by every API replica
    assert worker.worker.web_host == "0.0.0.0"  # scraped and health-checked from other containers


def load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("costops_healthcheck", ROOT / "deploy" / "docker" / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_health_checks_and_scrapes_hit_the_port_each_role_listens_on(
    project: dict[str, Any], clean_env: pytest.MonkeyPatch
) -> None:
    role_port = load_healthcheck().role_port
    scraped: dict[str, int] = {}
    for job in load_yaml(PROMETHEUS)["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.partition(":")
                scraped[host] = int(port)
        for dns in job.get("dns_sd_configs", []):
            for host in dns["names"]:
                scraped[host] = int(dns["port"])
    for name, command in APP_ROLES.items():
        service = project["services"][name]
        assert service["command"][0] == command
        assert service["healthcheck"]["test"] == ["CMD", "python", "/opt/costops/healthcheck.py"]
        env = {k: str(v) for k, v in service["environment"].items()}
        port = role_port(["cost-ops", *service["command"]], env)
        with pytest.MonkeyPatch.context() as mp:
            for var in list(os.environ):
                if var in FLAT_ENV or "__" in var:
                    mp.delenv(var)
            settings = settings_of(service, mp)
        listens = {"api": settings.api.port, "worker": settings.worker.web_port}.get(name, 8081)
        assert port == listens, name
        assert scraped[name] == listens, f"Prometheus scrapes {name} on {scraped.get(name)}, it listens on {listens}"
    assert {"kafka-exporter", "clickhouse"} <= set(scraped)


def test_health_check_port_of_each_command_line() -> None:
    role_port = load_healthcheck().role_port
    assert role_port(["cost-ops", "api"], {}) == 8080
    assert role_port(["cost-ops", "api", "--role", "api"], {"API_PORT": "9000"}) == 9000
    assert role_port(["cost-ops", "api", "--port", "7000"], {"API_PORT": "9000"}) == 7000
    assert role_port(["cost-ops", "sink"], {"API_PORT": "9000"}) == 8081
    assert role_port(["cost-ops", "--config", "/etc/c.toml", "sink", "--port=8090"], {}) == 8090
    assert role_port(["cost-ops", "worker"], {}) == 6066
    assert role_port(["cost-ops", "worker"], {"WORKER__WEB_PORT": "6100"}) == 6100


# ---- secrets and .env ----------------------------------------------------------------------


def test_env_example_lists_every_variable_and_holds_no_secret() -> None:
    example = read_env_file(ENV_EXAMPLE)
    used = compose_variables(COMPOSE.read_text()) | compose_variables(KAFKA_CLUSTER.read_text())
    assert used - set(example) == set(), "variables used by the compose files but missing from .env.example"
    assert set(SECRETS) <= used
    assert {name: example[name] for name in SECRETS if example[name]} == {}, ".env.example must not hold secrets"


@pytest.mark.parametrize("secret", SECRETS)
def test_compose_refuses_to_start_without_each_secret(secret: str) -> None:
    with pytest.raises(MissingVariableError, match=secret):
        compose(env={secret: ""})


_SECRET_NAME = re.compile(r"(PASSWORD|SECRET|_KEY|TOKEN)$")
_URL_CREDENTIALS = re.compile(r"://[^/@:\s]+:([^@\s]+)@")


def secret_literals(raw: dict[str, Any]) -> list[str]:
    """Environment values, in the file as written, that carry a secret not taken from ``${VAR}``."""
    found = []
    for name, service in raw["services"].items():
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.partition("=")[::2] for item in environment)
        for key, value in environment.items():
            text = str(value)
            if _SECRET_NAME.search(key) and not re.fullmatch(r"\$\{[^}]+\}", text):
                found.append(f"{name}.{key}")
            for password in _URL_CREDENTIALS.findall(text):
                if not re.fullmatch(r"\$\{[^}]+\}", password):
                    found.append(f"{name}.{key} (URL)")
    return found


def test_no_secret_is_written_in_the_compose_files() -> None:
    for path in (COMPOSE, KAFKA_CLUSTER):
        assert secret_literals(load_yaml(path)) == [], path.name


def test_a_secret_literal_is_caught() -> None:
    raw = load_yaml(COMPOSE)
    raw["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] = "hunter2"
    raw["services"]["api"]["environment"]["DATABASE_URL"] = "postgresql://costops:hunter2@postgres:5432/costops"
    assert secret_literals(raw) == ["postgres.POSTGRES_PASSWORD", "api.DATABASE_URL (URL)"]


def test_env_file_is_not_committed_or_copied_into_the_image() -> None:
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert ".env" in (ROOT / ".dockerignore").read_text().split()
