"""The custom pricing rules a worker applies, indexed for lookup by group of events.

Lookup order for an event: a rule of its project, of its organization, a global rule; the
caller falls back to the catalog list price, then to unpriced. Within a scope a rule naming
the event's pinned model version wins over one naming the model. Rules cover
``[effective_date, end_date)`` on whole UTC minutes, so every event of one minute shares them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from schemas.pricing_rule import PricingRule

_OPEN = 2**62


@dataclass(frozen=True)
class RuleBook:
    """An immutable set of rules; a new control message builds a new book."""

    rules: tuple[PricingRule, ...] = ()
    version: int = 0
    """The control plane's audit position the rules were published at (0: none yet)."""
    _by_model: dict[tuple[str, str], tuple[PricingRule, ...]] = field(default_factory=dict, init=False, repr=False)
    _scoped: frozenset[tuple[str, str]] = field(default=frozenset(), init=False, repr=False)

    def __post_init__(self) -> None:
        by_model: dict[tuple[str, str], list[PricingRule]] = {}
        for rule in self.rules:
            by_model.setdefault((rule.provider, rule.model.lower()), []).append(rule)
        object.__setattr__(self, "_by_model", {k: tuple(v) for k, v in by_model.items()})
        scoped = {k for k, rules in by_model.items() if any(r.scope != "global" for r in rules)}
        object.__setattr__(self, "_scoped", frozenset(scoped))

    @classmethod
    def of(cls, rules: Iterable[PricingRule], version: int = 0) -> RuleBook:
        return cls(tuple(rules), version)

    def _names(self, provider: str, model: str, model_version: str | None) -> list[tuple[str, str]]:
        names = [(provider, model_version.lower())] if model_version else []
        return [*names, (provider, model.lower())]

    def covers(self, provider: str, model: str, model_version: str | None) -> bool:
        """Whether any rule names this model (or its version), in any scope or period."""
        return any(name in self._by_model for name in self._names(provider, model, model_version))

    def scoped(self, provider: str, model: str, model_version: str | None) -> bool:
        """Whether a rule of an organization or project names this model: the lookup then
        depends on each event's organization and project, not only on its model."""
        return any(name in self._scoped for name in self._names(provider, model, model_version))

    def find(
        self,
        provider: str,
        model: str,
        model_version: str | None,
        organization_id: str | None,
        project_id: str | None,
        timestamp_ms: int,
    ) -> PricingRule | None:
        """The rule in force for these events at ``timestamp_ms``, or None (use the catalog)."""
        names = self._names(provider, model, model_version)
        for scope in ("project", "organization", "global"):
            for name in names:
                for rule in self._by_model.get(name, ()):
                    if rule.scope != scope:
                        continue
                    if scope != "global" and rule.organization_id != organization_id:
                        continue
                    if scope == "project" and rule.project_id != project_id:
                        continue
                    end = rule.end_ms if rule.end_ms is not None else _OPEN
                    if rule.effective_ms <= timestamp_ms < end:
                        return rule
        return None
