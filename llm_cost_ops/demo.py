"""A realistic synthetic usage stream for ``cost-ops up --demo`` and ``cost-ops demo``.

Several organizations and projects, providers and models from the price catalog, token
counts with a long tail, prompt caching, reasoning tokens on reasoning models, and a daily
rhythm: traffic follows business hours (UTC) with a quiet night.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from llm_cost_ops.producer import UsageProducer
from schemas.usage import UsageEvent

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoModel:
    provider: str
    name: str
    weight: float
    reasoning: bool = False
    cache_rate: float = 0.3


MODELS: tuple[DemoModel, ...] = (
    DemoModel("openai", "gpt-4o", 0.25),
    DemoModel("openai", "gpt-4o-mini", 0.25),
    DemoModel("openai", "o1", 0.03, reasoning=True),
    DemoModel("anthropic", "claude-3-5-sonnet-20241022", 0.18),
    DemoModel("anthropic", "claude-3-haiku-20240307", 0.1),
    DemoModel("google", "gemini-1.5-flash", 0.1, cache_rate=0.0),
    DemoModel("mistral", "mistral-large-latest", 0.05, cache_rate=0.0),
    DemoModel("cohere", "command-r-plus", 0.04, cache_rate=0.0),
)
ORGANIZATIONS: dict[str, tuple[str, ...]] = {
    "org-acme": ("proj-support-bot", "proj-search"),
    "org-globex": ("proj-copilot",),
    "org-initech": ("proj-reports", "proj-etl", "proj-chat"),
}


def daily_factor(moment: datetime) -> float:
    """0.15 at night, 1.0 at the afternoon peak (UTC)."""
    hour = moment.hour + moment.minute / 60
    return 0.15 + 0.85 * max(0.0, math.sin(math.pi * (hour - 6) / 14)) if 6 <= hour <= 20 else 0.15


class DemoStream:
    """Generates events; ``seed`` makes a run repeatable."""

    def __init__(self, seed: int | None = None, clock: Callable[[], datetime] | None = None) -> None:
        self._rng = random.Random(seed)
        self._clock = clock or (lambda: datetime.now(UTC))

    def event(self) -> UsageEvent:
        rng = self._rng
        model = rng.choices(MODELS, weights=[m.weight for m in MODELS])[0]
        org = rng.choice(list(ORGANIZATIONS))
        prompt = int(rng.lognormvariate(6.5, 1.0)) + 1
        completion = int(rng.lognormvariate(5.5, 0.9)) + 1
        reasoning = int(completion * rng.uniform(0.3, 0.8)) if model.reasoning else 0
        cached = int(prompt * rng.uniform(0.2, 0.9)) if rng.random() < model.cache_rate else 0
        return UsageEvent.parse(
            {
                "timestamp": self._clock(),
                "provider": model.provider,
                "model": model.name,
                "organization_id": org,
                "project_id": rng.choice(ORGANIZATIONS[org]),
                "user_id": f"user-{rng.randint(1, 40):03d}",
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "cached_tokens": cached,
                "reasoning_tokens": reasoning,
                "latency_ms": int(200 + completion * rng.uniform(8, 25)),
                "tags": rng.sample(["production", "api", "batch", "experiment"], k=rng.randint(1, 2)),
                "metadata": {"endpoint": "/v1/chat/completions", "region": rng.choice(["us", "eu"])},
                "source": {"type": "demo"},
            }
        )


async def run_demo(producer: UsageProducer, rate: float, duration_s: float | None, stream: DemoStream) -> int:
    """Publish ``rate`` events/s (times the daily factor) until ``duration_s`` elapses."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    carry = 0.0
    while duration_s is None or loop.time() - started < duration_s:
        carry += rate * daily_factor(datetime.now(UTC)) * 0.5
        count, carry = int(carry), carry - int(carry)
        if count:
            await producer.publish([stream.event() for _ in range(count)])
            sent += count
        await asyncio.sleep(0.5)
    logger.info("demo published %d events", sent)
    return sent
