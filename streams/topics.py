"""The Faust topics of the pipeline. Values are raw bytes: the agent decodes them itself so an
undecodable message becomes a dead letter instead of crashing the stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from llm_cost_ops.settings import Settings


@dataclass(frozen=True)
class PipelineTopics:
    usage: Any  # faust.TopicT; Faust ships few types, so the seam stays Any
    priced: Any
    dlq: Any
    windows: Any
    alerts: Any


def declare_topics(app: faust.App, settings: Settings) -> PipelineTopics:
    k = settings.kafka

    def topic(name: str) -> Any:
        return app.topic(
            name,
            key_serializer="raw",
            value_serializer="raw",
            partitions=k.partitions,
            replicas=k.replication_factor,
        )

    return PipelineTopics(
        usage=topic(k.usage_topic),
        priced=topic(k.priced_topic),
        dlq=topic(k.dlq_topic),
        windows=topic(k.windows_topic),
        alerts=topic(k.alerts_topic),
    )
