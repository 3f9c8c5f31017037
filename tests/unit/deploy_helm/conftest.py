"""Fixtures: the chart rendered with the CI values files (``helm/llm-costops/ci``)."""

from __future__ import annotations

from typing import Any

import pytest
from chart_render import ci_values, render_chart


@pytest.fixture(scope="module")
def minimal() -> list[dict[str, Any]]:
    return render_chart(ci_values("minimal"))


@pytest.fixture(scope="module")
def full() -> list[dict[str, Any]]:
    return render_chart(ci_values("full"))
