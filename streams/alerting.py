"""Raising an alert: the one way the worker's agents put an alert record on ``alerts``."""

from __future__ import annotations

import json
import logging
from typing import Any

from llm_cost_ops.metrics import PipelineMetrics

logger = logging.getLogger(__name__)


async def send_alert(topic: Any, alert: dict[str, Any], metrics: PipelineMetrics) -> Any:
    """Produce ``alert`` to the ``alerts`` topic (keyed by its organization), count it and log
    it. Returns the broker's acknowledgement: await it before writing the state that records
    the alert as raised, so a crash in between raises it again (same id), never not at all."""
    value = json.dumps(alert, separators=(",", ":")).encode()
    sent = await topic.send(key=str(alert["organization_id"]).encode(), value=value)
    metrics.alerts.labels(alert["type"], alert["severity"]).inc()
    logger.warning("%s: %s", alert["type"], alert["message"], extra={"alert_id": alert["alert_id"]})
    return sent
