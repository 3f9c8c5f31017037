"""``--mapping``: a built-in name or a TOML file -> the function that maps one message."""

from __future__ import annotations

from pathlib import Path

from llm_cost_ops.errors import InvalidInputError
from llm_cost_ops.ingest.custom import CustomMapping
from llm_cost_ops.ingest.litellm import LiteLlmMapping
from llm_cost_ops.ingest.mapped import MessageMapping
from llm_cost_ops.ingest.otel import OtelGenAiMapping
from llm_cost_ops.settings import IngestSettings

BUILT_IN = ("otel-genai", "litellm")


def load_mapping(name: str, settings: IngestSettings) -> MessageMapping:
    """``otel-genai``, ``litellm``, or the path of a TOML mapping file."""
    if name == "otel-genai":
        return OtelGenAiMapping(settings)
    if name == "litellm":
        return LiteLlmMapping(settings)
    path = Path(name)
    if path.suffix.lower() != ".toml" and not path.is_file():
        raise InvalidInputError(
            f"unknown mapping {name!r}", {"mapping": f"must be one of {', '.join(BUILT_IN)}, or a TOML file"}
        )
    if not path.is_file():
        raise InvalidInputError(f"unknown mapping {name!r}", {"mapping": f"{path} does not exist"})
    return CustomMapping.load(path)
