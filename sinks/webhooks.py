"""The notifier: alerts (``alerts`` topic) -> the webhooks that want them, signed and retried.

Each alert goes to every webhook that subscribes to its event (``cost.anomaly``,
``budget.threshold``) and organization, as a JSON POST:

    {"id": "<delivery id>", "event": "cost.anomaly", "created_at": "...", "data": {<the alert>}}

with the headers ``X-CostOps-Event``, ``X-CostOps-Delivery`` (the same on every attempt: a
receiver dedupes on it), ``X-CostOps-Timestamp`` (Unix seconds) and ``X-CostOps-Signature:
sha256=<hex>``, the HMAC-SHA256 of ``"<timestamp>.<body>"`` keyed by the webhook's secret.
A 2xx answer is a delivery; anything else (or no answer within ``timeout_s``) is retried with
exponential backoff up to ``max_attempts``. Every attempt is in the delivery log. The alert's
offset is committed once each of its webhooks has succeeded or used up its attempts, so a
restart delivers again what was in flight (at least once).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from llm_cost_ops.kafka import bootstrap_servers
from llm_cost_ops.metrics import PipelineMetrics
from llm_cost_ops.settings import Settings
from schemas.webhook import Delivery, Webhook
from sinks.webhook_store import WebhookStore

logger = logging.getLogger(__name__)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, "<timestamp>.<body>"): what receivers check."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def delivery_id(alert_id: str, webhook_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{webhook_id}|{alert_id}"))


class WebhookNotifier:
    def __init__(self, settings: Settings, store: WebhookStore, metrics: PipelineMetrics) -> None:
        self._settings = settings
        self._store = store
        self._metrics = metrics

    async def run(self, stop: asyncio.Event) -> None:
        s = self._settings
        consumer = AIOKafkaConsumer(
            s.kafka.alerts_topic,
            bootstrap_servers=bootstrap_servers(s),
            group_id=s.webhooks.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # webhooks only get alerts raised after they existed
            rebalance_timeout_ms=int(s.kafka.rebalance_timeout_s * 1000),
        )
        await consumer.start()
        try:
            async with httpx.AsyncClient(timeout=s.webhooks.timeout_s) as client:
                while not stop.is_set():
                    fetched = await consumer.getmany(timeout_ms=500, max_records=50)
                    for tp, records in fetched.items():
                        for record in records:
                            await self._notify(client, record, stop)
                            if stop.is_set():
                                return  # this alert's offset stays uncommitted: delivered again
                        await self._commit(consumer, tp, records[-1].offset + 1)
        finally:
            await consumer.stop()

    async def _commit(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        try:
            await consumer.commit({tp: offset})
        except KafkaError as exc:
            logger.warning("webhook offsets not committed (deliveries may repeat): %s", exc)

    async def _notify(
        self, client: httpx.AsyncClient, record: ConsumerRecord[bytes, bytes], stop: asyncio.Event
    ) -> None:
        try:
            alert: dict[str, Any] = json.loads(record.value or b"")
            event, org = str(alert["type"]), str(alert["organization_id"])
            if not alert.get("alert_id"):
                raise KeyError("alert_id")  # it names the delivery
            raised = datetime.fromisoformat(str(alert["created_at"]).replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError) as exc:
            logger.error("alert not delivered, unreadable: %s", exc, extra={"offset": record.offset})
            return
        hooks = await asyncio.to_thread(self._store.subscribers, event, org, raised)
        await asyncio.gather(*(self._deliver(client, hook, secret, alert, stop) for hook, secret in hooks))

    async def _deliver(
        self, client: httpx.AsyncClient, hook: Webhook, secret: str, alert: dict[str, Any], stop: asyncio.Event
    ) -> None:
        w = self._settings.webhooks
        event = str(alert["type"])
        ident = delivery_id(str(alert["alert_id"]), hook.id)
        body = json.dumps(
            {"id": ident, "event": event, "created_at": alert["created_at"], "data": alert}, separators=(",", ":")
        ).encode()
        delay = w.backoff_s
        for attempt in range(1, w.max_attempts + 1):
            timestamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "llm-cost-ops-webhooks",
                "X-CostOps-Event": event,
                "X-CostOps-Delivery": ident,
                "X-CostOps-Timestamp": timestamp,
                "X-CostOps-Signature": signature(secret, timestamp, body),
            }
            started = time.perf_counter()
            status, error = None, None
            try:
                response = await client.post(hook.url, content=body, headers=headers)
                status = response.status_code
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            success = error is None
            await asyncio.to_thread(
                self._store.record,
                Delivery(
                    id=0,
                    webhook_id=hook.id,
                    delivery_id=ident,
                    event=event,
                    alert_id=str(alert["alert_id"]),
                    attempt=attempt,
                    at=datetime.now(UTC),
                    status_code=status,
                    error=error,
                    success=success,
                    duration_ms=int((time.perf_counter() - started) * 1000),
                ),
            )
            outcome = "delivered" if success else ("failed" if attempt == w.max_attempts else "retried")
            self._metrics.webhook_deliveries.labels(event, outcome).inc()
            if success:
                return
            if attempt == w.max_attempts:
                logger.error("webhook %s gave up on %s after %d attempts: %s", hook.id, ident, attempt, error)
                return
            logger.warning("webhook %s attempt %d failed (%s); retrying in %.1fs", hook.id, attempt, error, delay)
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
                return
            except TimeoutError:
                delay = min(delay * 2, w.max_backoff_s)
