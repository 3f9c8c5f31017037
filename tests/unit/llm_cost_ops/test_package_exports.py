"""``llm_cost_ops``'s lazily imported names: ``__all__`` and the table that locates them agree."""

from __future__ import annotations

import llm_cost_ops


def test_every_exported_name_resolves() -> None:
    assert sorted(llm_cost_ops.__all__) == sorted(llm_cost_ops._WHERE)
    for name in llm_cost_ops.__all__:
        assert getattr(llm_cost_ops, name).__name__ == name
