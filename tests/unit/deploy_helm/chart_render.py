"""Renders the Helm chart with Helm itself: Helm v4's Go SDK, loaded from the helm-python-sdk wheel.

No cluster is contacted. Rendering applies ``values.schema.json`` and the templates' ``fail`` and
``required`` exactly as ``helm install`` would, so what these tests read is what a cluster gets.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

CHART = Path(__file__).resolve().parents[3] / "helm" / "llm-costops"
RELEASE = "costops"
NAMESPACE = "costops"


def ci_values(name: str) -> dict[str, Any]:
    """``helm/llm-costops/ci/<name>-values.yaml``."""
    values: dict[str, Any] = yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text())
    return values


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def render_chart(values: dict[str, Any], chart: Path = CHART) -> list[dict[str, Any]]:
    """The manifests ``helm template`` would print, parsed, with ``source`` naming each template."""
    with helm.Chart.load(str(chart)) as loaded:
        rendered = loaded.render(values, name=RELEASE, namespace=NAMESPACE)
    docs: list[dict[str, Any]] = []
    for source, text in sorted(rendered.items()):
        if not source.endswith(".yaml"):
            continue  # NOTES.txt
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append({**doc, "source": source})
    return docs


def rendered_text(values: dict[str, Any], template: str) -> str:
    """One template's rendered text (what ``include ... | sha256sum`` hashes)."""
    with helm.Chart.load(str(CHART)) as loaded:
        return loaded.render(values, name=RELEASE, namespace=NAMESPACE)[f"llm-costops/templates/{template}"]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def deployments(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Deployments by role (their ``app.kubernetes.io/component`` label)."""
    return {
        doc["metadata"]["labels"]["app.kubernetes.io/component"]: doc for doc in by_kind(docs, "Deployment").values()
    }
