"""The rendered manifests: valid Kubernetes objects, hardened pods, probes, checksums, limits."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
from chart_render import (
    CHART,
    by_kind,
    ci_values,
    deep_merge,
    deployments,
    render_chart,
    rendered_text,
)

from llm_cost_ops.cli.main import build_parser

KUBE_VERSION = "1.30.0"
ROLES = ("api", "worker", "sink")
HARDENED = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def hardening_problems(docs: list[dict[str, Any]]) -> list[str]:
    """What a Deployment lacks: security contexts, probes on its port, emptyDirs at /data and /tmp."""
    problems: list[str] = []
    for role, deployment in deployments(docs).items():
        pod = deployment["spec"]["template"]["spec"]
        pod_context = pod.get("securityContext", {})
        if pod_context.get("runAsNonRoot") is not True or pod_context.get("runAsUser") != 10001:
            problems.append(f"{role}: pod securityContext is not non-root uid 10001")
        if pod_context.get("seccompProfile") != {"type": "RuntimeDefault"}:
            problems.append(f"{role}: pod seccompProfile is not RuntimeDefault")
        empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for container in pod["containers"] + pod.get("initContainers", []):
            name = f"{role}/{container['name']}"
            context = container.get("securityContext", {})
            problems += [
                f"{name}: securityContext.{key} is {context.get(key)!r}, not {want!r}"
                for key, want in HARDENED.items()
                if context.get(key) != want
            ]
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
                get = container.get(probe, {}).get("httpGet", {})
                if get.get("path") != path or get.get("port") not in ports:
                    problems.append(f"{name}: {probe} is not GET {path} on the container's port")
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            problems += [
                f"{name}: {path} is not an emptyDir" for path in ("/data", "/tmp") if mounts.get(path) not in empty_dirs
            ]
    return problems


@pytest.mark.parametrize("values", ["minimal", "full"])
def test_helm_lint_passes_strict(values: str) -> None:
    report = helm.lint(str(CHART), ci_values(values), strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    # Severity 1 is information ("icon is recommended"); warnings fail under --strict.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("values", ["minimal", "full"])
def test_every_manifest_is_a_valid_kubernetes_object(values: str, request: pytest.FixtureRequest) -> None:
    docs: list[dict[str, Any]] = request.getfixturevalue(values)
    for doc in docs:
        manifest = {k: v for k, v in doc.items() if k != "source"}
        if doc["apiVersion"] == "monitoring.coreos.com/v1":
            continue  # a CRD: checked structurally in test_service_monitor_scrapes_every_role
        kubernetes_validate.validate(manifest, KUBE_VERSION, strict=True)


def test_default_release_renders_what_it_needs(minimal: list[dict[str, Any]]) -> None:
    kinds = sorted((doc["kind"], doc["metadata"]["name"]) for doc in minimal)
    assert kinds == [
        ("ConfigMap", "costops-llm-costops"),
        ("Deployment", "costops-llm-costops-api"),
        ("Deployment", "costops-llm-costops-sink"),
        ("Deployment", "costops-llm-costops-worker"),
        ("PodDisruptionBudget", "costops-llm-costops-api"),
        ("PodDisruptionBudget", "costops-llm-costops-sink"),
        ("PodDisruptionBudget", "costops-llm-costops-worker"),
        ("Secret", "costops-llm-costops"),
        ("Service", "costops-llm-costops-api"),
        ("Service", "costops-llm-costops-sink-metrics"),
        ("Service", "costops-llm-costops-worker-metrics"),
        ("ServiceAccount", "costops-llm-costops"),
    ]


def test_full_release_adds_the_optional_parts(full: list[dict[str, Any]]) -> None:
    counts: dict[str, int] = {}
    for doc in full:
        counts[doc["kind"]] = counts.get(doc["kind"], 0) + 1
    assert counts == {
        "ConfigMap": 1,
        "Deployment": 3,
        "HorizontalPodAutoscaler": 3,
        "Ingress": 1,
        "NetworkPolicy": 3,
        "PodDisruptionBudget": 3,
        "Service": 3,
        "ServiceAccount": 1,
        "ServiceMonitor": 1,
    }  # no Secret: secrets.existingSecret names one


@pytest.mark.parametrize("values", ["minimal", "full"])
def test_every_container_is_hardened_and_probed(values: str, request: pytest.FixtureRequest) -> None:
    assert hardening_problems(request.getfixturevalue(values)) == []


def test_hardening_check_catches_a_weakened_template(tmp_path: Path) -> None:
    chart = Path(shutil.copytree(CHART, tmp_path / "llm-costops"))
    deployment = chart / "templates" / "deployment.yaml"
    text = deployment.read_text()
    weakened = text.replace("{{- toYaml $.Values.securityContext | nindent 12 }}", "runAsNonRoot: true")
    weakened = weakened.replace("path: /ready", "path: /health")
    assert weakened != text
    deployment.write_text(weakened)
    problems = hardening_problems(render_chart(ci_values("minimal"), chart))
    assert "api/api: securityContext.readOnlyRootFilesystem is None, not True" in problems
    assert "worker/worker: readinessProbe is not GET /ready on the container's port" in problems


def test_schema_refuses_values_that_weaken_the_pods() -> None:
    values = deep_merge(ci_values("minimal"), {"securityContext": {"readOnlyRootFilesystem": False}})
    with pytest.raises(helm.HelmValuesError, match="readOnlyRootFilesystem"):
        render_chart(values)


def test_each_role_runs_its_command_on_its_port(minimal: list[dict[str, Any]]) -> None:
    config = by_kind(minimal, "ConfigMap")["costops-llm-costops"]["data"]
    commands = {"api": "api", "worker": "worker", "sink": "sink"}
    for role, deployment in deployments(minimal).items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        args = build_parser().parse_args(container["args"])  # the real CLI accepts them
        assert args.command == commands[role]
        port = container["ports"][0]["containerPort"]
        if role == "worker":
            assert int(config["WORKER__WEB_PORT"]) == port  # Faust's web server: no flag
        else:
            assert args.port == port
        if role == "api":
            assert args.role == "api"
    assert config["API_HOST"] == config["WORKER__WEB_HOST"] == "0.0.0.0"


def test_pods_restart_when_the_config_changes(minimal: list[dict[str, Any]]) -> None:
    values = ci_values("minimal")
    digest = hashlib.sha256(rendered_text(values, "configmap.yaml").encode()).hexdigest()
    for deployment in deployments(minimal).values():
        assert deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"] == digest
    changed = render_chart(deep_merge(values, {"logLevel": "debug"}))
    for role, deployment in deployments(changed).items():
        assert deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != digest, role


def test_secrets_go_only_to_the_roles_that_read_them(minimal: list[dict[str, Any]], full: list[dict[str, Any]]) -> None:
    wanted = {
        "api": ["COSTOPS_ADMIN_KEY", "JWT_SECRET", "DATABASE_URL", "CLICKHOUSE_URL"],
        "sink": ["CLICKHOUSE_URL"],
        "worker": [],
    }
    for docs, secret in ((minimal, "costops-llm-costops"), (full, "costops-secrets")):
        for role, deployment in deployments(docs).items():
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            refs = [e["valueFrom"]["secretKeyRef"] for e in container.get("env", [])]
            assert [r["key"] for r in refs] == wanted[role]
            assert {r["name"] for r in refs} <= {secret}
            annotations = deployment["spec"]["template"]["metadata"]["annotations"]
            # The chart's own Secret is hashed into the pods that read it.
            assert ("checksum/secret" in annotations) == (docs is minimal and bool(wanted[role]))


def test_consumer_autoscaling_is_bounded_by_partitions(full: list[dict[str, Any]]) -> None:
    partitions = ci_values("full")["kafka"]["partitions"]
    hpas = by_kind(full, "HorizontalPodAutoscaler")
    assert hpas["costops-llm-costops-worker"]["spec"]["maxReplicas"] <= partitions
    assert hpas["costops-llm-costops-sink"]["spec"]["maxReplicas"] <= partitions
    assert hpas["costops-llm-costops-api"]["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    for role in ("worker", "sink"):
        too_many = deep_merge(ci_values("full"), {role: {"autoscaling": {"maxReplicas": partitions + 1}}})
        with pytest.raises(helm.HelmRenderError, match=rf"{role}.autoscaling.maxReplicas \(13\) must not exceed"):
            render_chart(too_many)
        idle = deep_merge(ci_values("minimal"), {role: {"replicas": 9}})  # 8 partitions by default
        with pytest.raises(helm.HelmRenderError, match=rf"{role}.replicas \(9\) must not exceed"):
            render_chart(idle)


def test_network_policies_open_only_what_each_role_needs(full: list[dict[str, Any]]) -> None:
    policies = {
        doc["metadata"]["labels"]["app.kubernetes.io/component"]: doc for doc in full if doc["kind"] == "NetworkPolicy"
    }
    monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    ingress_nginx = ci_values("full")["networkPolicy"]["apiFrom"]
    assert policies["api"]["spec"]["ingress"] == [
        {"ports": [{"port": "http", "protocol": "TCP"}], "from": ingress_nginx},
        {"ports": [{"port": "http", "protocol": "TCP"}], "from": monitoring},
    ]
    egress_ports: dict[str, set[int]] = {}
    for role, policy in policies.items():
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        if role != "api":
            assert policy["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}], "from": monitoring}]
        egress_ports[role] = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {
        "worker": {53, 9092, 8081},
        "sink": {53, 9092, 8081, 8123, 8443},
        "api": {53, 9092, 8081, 8123, 8443, 5432, 443},
    }


def test_ingress_and_service_monitor_reach_the_services(full: list[dict[str, Any]]) -> None:
    services = by_kind(full, "Service")
    (ingress,) = by_kind(full, "Ingress").values()
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["port"]["name"] in {p["name"] for p in services[backend["name"]]["spec"]["ports"]}

    (monitor,) = by_kind(full, "ServiceMonitor").values()
    selector = monitor["spec"]["selector"]
    (expression,) = selector["matchExpressions"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    scraped = set()
    for service in services.values():
        labels = service["metadata"]["labels"]
        if selector["matchLabels"].items() <= labels.items() and labels[expression["key"]] in expression["values"]:
            assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
            scraped.add(labels["app.kubernetes.io/component"])
    assert scraped == set(ROLES)


def test_autoscaling_bounds_must_be_ordered() -> None:
    values = deep_merge(
        ci_values("minimal"), {"api": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 3}}}
    )
    with pytest.raises(
        helm.HelmRenderError, match=r"api.autoscaling.minReplicas \(5\) must not exceed maxReplicas \(3\)"
    ):
        render_chart(values)
