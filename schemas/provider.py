"""The providers the platform knows by name."""

from __future__ import annotations

# The seeds' list; these names are also genai-prices provider ids.
KNOWN_PROVIDERS: frozenset[str] = frozenset({"openai", "anthropic", "google", "azure", "aws", "cohere", "mistral"})


def allowed_providers(custom: tuple[str, ...] | frozenset[str] = ()) -> frozenset[str]:
    """The known providers plus the configured custom ones."""
    return KNOWN_PROVIDERS | frozenset(p.lower() for p in custom)
