"""A fuzz pass over the OpenAPI document (schemathesis): whatever the parameters and bodies,
the running API answers in its error format, never with a 5xx."""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings

from processes import ADMIN_HEADERS, ApiPipeline

EXAMPLES = int(os.environ.get("COSTOPS_FUZZ_EXAMPLES", "30"))
"""Cases per operation (about 70 operations: about two thousand requests, ~30 s)."""
DEEP = "COSTOPS_FUZZ_EXAMPLES" in os.environ
"""A deeper pass (``COSTOPS_FUZZ_EXAMPLES=500``) draws new cases each run; the default pass
draws the same cases every run, so CI is repeatable."""


def test_no_server_errors(pipeline: ApiPipeline) -> None:
    schema = schemathesis.openapi.from_dict(pipeline.api.get("/openapi.json").json())
    base_url = str(pipeline.api.base_url)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=not DEEP,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call(base_url=base_url, headers=ADMIN_HEADERS, timeout=30)
            where = f"{case.method} {case.formatted_path}"
            if response.status_code >= 500:
                failures.append(f"{where}: {response.status_code} {response.text[:300]}")
            elif response.status_code >= 400 and set(response.json()) != {"error"}:
                failures.append(f"{where}: not the error format: {response.text[:300]}")

        check()
    assert failures == []
