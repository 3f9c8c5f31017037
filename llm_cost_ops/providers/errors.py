"""Errors of reading usage out of provider responses."""

from __future__ import annotations

from llm_cost_ops.errors import InvalidInputError


class UsageMissingError(InvalidInputError):
    """A response (or stream) has no usable usage: ``missing`` names the absent field, as a
    dotted path (``usage``, ``usageMetadata``, ``model``), and ``api`` the shape it was read as."""

    def __init__(self, message: str, missing: str, api: str | None = None) -> None:
        super().__init__(message, field_errors={missing: message})
        self.missing = missing
        self.api = api
