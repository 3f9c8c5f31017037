"""Provider names other tools use -> the pipeline's (``schemas.provider``). A name not listed
here is kept lower-cased: validation then accepts it only if it is known or configured."""

from __future__ import annotations

ALIASES: dict[str, str] = {
    # OpenTelemetry GenAI (gen_ai.system / gen_ai.provider.name)
    "aws.bedrock": "aws",
    "az.ai.inference": "azure",
    "az.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "azure.ai.openai": "azure",
    "gcp.gemini": "google",
    "gcp.gen_ai": "google",
    "gcp.vertex_ai": "google",
    "mistral_ai": "mistral",
    # LiteLLM (custom_llm_provider)
    "bedrock": "aws",
    "bedrock_converse": "aws",
    "sagemaker": "aws",
    "azure_ai": "azure",
    "azure_text": "azure",
    "vertex_ai": "google",
    "vertex_ai_beta": "google",
    "gemini": "google",
    "cohere_chat": "cohere",
    "text-completion-openai": "openai",
}


def canonical_provider(name: object) -> object:
    """The pipeline's name for ``name``; anything not a string is passed on for validation
    to reject."""
    if not isinstance(name, str):
        return name
    key = name.strip().lower()
    return ALIASES.get(key, key)
