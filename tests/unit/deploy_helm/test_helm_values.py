"""values.yaml, values.schema.json and the templates agree, and the env they set is the app's settings."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml
from chart_render import CHART, by_kind, ci_values, deep_merge, deployments, render_chart

from llm_cost_ops.settings import FLAT_ENV, Settings

SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)


def errors(values: dict[str, Any]) -> list[str]:
    """Schema errors as ``path: message`` (the leaves of nested if/then failures too)."""
    found: list[str] = []
    pending = list(VALIDATOR.iter_errors(values))
    while pending:
        error = pending.pop()
        pending += error.context or []
        found.append(f"{'/'.join(str(p) for p in error.absolute_path)}: {error.message}")
    return found


def test_schema_is_draft_07() -> None:
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("name", ["minimal", "full"])
def test_ci_values_merged_with_the_defaults_are_valid(name: str) -> None:
    assert errors(deep_merge(DEFAULTS, ci_values(name))) == []


def test_defaults_alone_are_refused_for_the_missing_kafka_and_secrets() -> None:
    found = errors(DEFAULTS)
    assert any(e.startswith("kafka/bootstrapServers:") for e in found), found
    assert {e.split(":")[0] for e in found if e.startswith("secrets/")} == {
        "secrets/adminKey",
        "secrets/jwtSecret",
        "secrets/databaseUrl",
        "secrets/clickhouseUrl",
    }
    with pytest.raises(helm.HelmValuesError, match="bootstrapServers"):
        render_chart({})


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ({"api": {"replicas": 0}}, "api/replicas"),
        ({"worker": {"replicas": 0}}, "worker/replicas"),
        ({"sink": {"replicas": -1}}, "sink/replicas"),
        ({"kafka": {"bootstrapServers": "kafka"}}, "kafka/bootstrapServers"),
        ({"kafka": {"partitions": 0}}, "kafka/partitions"),
        ({"secrets": {"adminKey": "changeme"}}, "secrets/adminKey"),
        ({"secrets": {"jwtSecret": "jwt-secret"}}, "secrets/jwtSecret"),
        ({"secrets": {"databaseUrl": "sqlite:///data/control.db"}}, "secrets/databaseUrl"),
        ({"securityContext": {"allowPrivilegeEscalation": True}}, "securityContext/allowPrivilegeEscalation"),
        ({"podSecurityContext": {"runAsNonRoot": False}}, "podSecurityContext/runAsNonRoot"),
        ({"extraConfig": {"lower_case": "x"}}, "extraConfig"),
        (
            {"api": {"autoscaling": {"targetCPUUtilizationPercentage": 0}}},
            "api/autoscaling/targetCPUUtilizationPercentage",
        ),
        ({"replicaCount": 3}, ""),  # an unknown key: a typo must not pass silently
    ],
)
def test_schema_rejects(override: dict[str, Any], path: str) -> None:
    values = deep_merge(deep_merge(DEFAULTS, ci_values("minimal")), override)
    assert any(e.split(":")[0] == path for e in errors(values)), errors(values)
    with pytest.raises(helm.HelmValuesError):  # and Helm applies the same schema
        render_chart(deep_merge(ci_values("minimal"), override))


def test_existing_secret_needs_no_secret_values() -> None:
    values = deep_merge(DEFAULTS, {"kafka": {"bootstrapServers": "kafka:9092"}, "secrets": {"existingSecret": "s"}})
    assert errors(values) == []


def _schema_node(path: list[str]) -> dict[str, Any] | None:
    node: dict[str, Any] = SCHEMA
    for key in path:
        while "$ref" in node:
            node = SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[1]]
        properties = node.get("properties", {})
        if key not in properties:
            # A free-form map (annotations, selectors) holds any key below it.
            return node if node.get("type") == "object" and "properties" not in node else None
        node = properties[key]
    return node


def _value(path: list[str]) -> bool:
    node: Any = DEFAULTS
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def test_every_value_a_template_reads_is_in_values_yaml_and_the_schema() -> None:
    paths: set[tuple[str, ...]] = set()
    for template in (CHART / "templates").iterdir():
        text = template.read_text()
        paths |= {tuple(m.split(".")) for m in re.findall(r"\.Values\.([A-Za-z0-9_.]+)", text)}
        # Per-role values read through `$cfg := index $.Values $role` or `(index $.Values $role)`.
        role_keys = re.findall(r"\$cfg\.([A-Za-z0-9_.]+)", text)
        role_keys += re.findall(r"\(index \$\.Values \$role\)\.([A-Za-z0-9_.]+)", text)
        paths |= {(role, *key.split(".")) for key in role_keys for role in ("api", "worker", "sink")}
    # `get $np.egress $dep`: every dependency the network policies name.
    paths |= {("networkPolicy", "egress", dep, "ports") for dep in DEFAULTS["networkPolicy"]["egress"]}
    assert len(paths) > 40
    missing = sorted(".".join(p) for p in paths if not _value(list(p)) or _schema_node(list(p)) is None)
    assert missing == []


def test_every_default_has_a_schema_entry() -> None:
    def leaves(node: Any, path: list[str]) -> list[list[str]]:
        if isinstance(node, dict) and node:
            return [leaf for key, value in node.items() for leaf in leaves(value, [*path, key])]
        return [path]

    assert [".".join(p) for p in leaves(DEFAULTS, []) if _schema_node(p) is None] == []


def _env_name_is_a_setting(name: str) -> bool:
    if name in FLAT_ENV:
        return True
    section, _, field = name.lower().partition("__")
    fields = Settings.model_fields
    if not field:
        return section in fields
    annotation = fields[section].annotation if section in fields else None
    model_fields = getattr(annotation, "model_fields", {})
    return field in model_fields


@pytest.mark.parametrize("name", ["minimal", "full"])
def test_every_env_var_is_a_setting_and_the_settings_load(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render_chart(ci_values(name))
    config: dict[str, str] = by_kind(docs, "ConfigMap")["costops-llm-costops"]["data"]
    secret_docs = by_kind(docs, "Secret")
    secrets = (
        {k: base64.b64decode(v).decode() for k, v in secret_docs["costops-llm-costops"]["data"].items()}
        if secret_docs
        else {k: ci_values("minimal")["secrets"][v] for k, v in _SECRET_VALUES.items()}
    )
    for role, deployment in deployments(docs).items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = dict(config) | {
            e["name"]: secrets[e["valueFrom"]["secretKeyRef"]["key"]] for e in container.get("env", [])
        }
        assert [n for n in env if not _env_name_is_a_setting(n)] == [], role
        with monkeypatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            settings = Settings()  # nested sections reject unknown keys
        assert settings.kafka.bootstrap_servers == ci_values(name)["kafka"]["bootstrapServers"]
        assert str(settings.data_dir) == "/data"
        assert settings.api.host == settings.worker.web_host == "0.0.0.0"
        assert (settings.clickhouse.url is not None) == (role != "worker"), role
        assert (settings.database.url is not None) == (role == "api"), role


_SECRET_VALUES = {
    "COSTOPS_ADMIN_KEY": "adminKey",
    "JWT_SECRET": "jwtSecret",
    "DATABASE_URL": "databaseUrl",
    "CLICKHOUSE_URL": "clickhouseUrl",
}
