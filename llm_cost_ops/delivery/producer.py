"""The synchronous, non-blocking producer of usage events for high-volume services.

``send`` validates a record and queues it; one background thread does the rest:

1. Batch the records per organization (up to ``MAX_BATCH`` events, or ``linger_s``).
2. Encode each batch as the pipeline's batch message (Avro, Confluent framing): the worker
   reads it unchanged. Key = ``organization_id``; partitioner murmur2, as the Java client and
   aiokafka (the API's producer) use, so one organization lands on one partition whoever wrote it.
3. Produce with confluent-kafka (``acks=all``, compressed, idempotent unless the settings say
   otherwise: Tansu rejects ``InitProducerId``).
4. While the broker is unreachable (all connections down, or a produce failed retriably),
   messages go to the on-disk spool (:mod:`llm_cost_ops.delivery.spool`) in order; once the
   broker answers for the topic again, the spool is replayed in order, and only then do new
   messages go straight to Kafka again.

Guarantees: at-least-once delivery. A message whose acknowledgement was lost (the broker went
down after writing it) is sent again from the spool; every event carries its id and the
pipeline stores an event id once, so the accounting stays exactly-once. Order per
organization: messages of one organization are produced in the order their batches were
made, across an outage too (a retried message may repeat after later ones, never go missing).
"""

from __future__ import annotations

import atexit
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from prometheus_client import CollectorRegistry

from llm_cost_ops.delivery.errors import (
    DeliveryError,
    ProducerBackpressureError,
    ProducerClosedError,
    SpoolFullError,
)
from llm_cost_ops.delivery.metrics import ProducerMetrics
from llm_cost_ops.delivery.spool import Spool, SpoolEntry
from llm_cost_ops.kafka import BrokerUnavailableError
from llm_cost_ops.runtime import Runtime
from llm_cost_ops.settings import Settings, load_settings
from llm_cost_ops.wire import build_codec
from schemas.codec import UsageCodec
from schemas.provider import allowed_providers
from schemas.usage import UsageEvent

logger = logging.getLogger(__name__)

MAX_BATCH = 500
"""Most events in one message: the pipeline's batch size (``llm_cost_ops.producer.MAX_BATCH``)."""

DeliveryCallback = Callable[[UsageEvent, DeliveryError | None], None]
"""``on_delivery(event, error)``: ``error`` is None once Kafka acknowledged the event, else why it
never will be. Called on the producer's thread: keep it quick; what it raises is logged."""

_PERMANENT = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.INVALID_REQUIRED_ACKS,
        KafkaError._INVALID_ARG,
    }
)
"""Errors no retry can cure; any other failure spools the message (nothing is dropped)."""


@dataclass
class _Record:
    event: UsageEvent
    callback: DeliveryCallback | None


@dataclass
class _Message:
    seq: int
    key: bytes
    value: bytes
    records: list[_Record] = field(default_factory=list)


class UsageProducer:
    """Publishes usage events to Kafka from a synchronous service, without blocking it.

    Args:
        settings: the pipeline settings; default :func:`~llm_cost_ops.settings.load_settings`.
        bootstrap_servers: overrides ``KAFKA_BOOTSTRAP_SERVERS``. With neither, the broker of a
            running ``cost-ops up`` (its runtime file), with idempotence off (Tansu).
        topic: overrides ``kafka.usage_topic``.
        idempotence: overrides ``kafka.idempotent_producer`` (default on; off for the embedded broker).
        spool_dir: where undelivered messages wait; default ``<data_dir>/spool/<topic>``. One
            producer process per directory (it is locked); a new producer replays what is there.
        spool_max_bytes: past this, ``send`` raises :class:`SpoolFullError`.
        linger_s: longest wait for more events of an organization before its batch is sent.
        delivery_timeout_s: how long a message may wait for the broker before it is spooled.
        max_queued: records ``send`` may queue before the thread has batched them.
        flush_on_exit: register :meth:`close` with ``atexit`` (unregistered by ``close``).
        registry: where the metrics go; default a registry of this producer (``.metrics.registry``).
        codec: the wire-format codec; default :func:`~llm_cost_ops.wire.build_codec`.
        config: extra librdkafka settings, applied last.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        bootstrap_servers: str | None = None,
        topic: str | None = None,
        idempotence: bool | None = None,
        spool_dir: Path | str | None = None,
        spool_max_bytes: int = 256 * 1024 * 1024,
        linger_s: float = 0.05,
        delivery_timeout_s: float = 10.0,
        max_queued: int = 100_000,
        flush_on_exit: bool = True,
        registry: CollectorRegistry | None = None,
        codec: UsageCodec | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        settings = settings or load_settings()
        servers = bootstrap_servers or settings.kafka.bootstrap_servers
        idempotent = idempotence if idempotence is not None else settings.kafka.idempotent_producer
        if servers is None:
            runtime = Runtime.read(settings.runtime_file)
            if runtime is None:
                raise BrokerUnavailableError(
                    "KAFKA_BOOTSTRAP_SERVERS is not set and no `cost-ops up` is running: set it to your brokers"
                )
            servers = runtime.kafka_bootstrap_servers
            idempotent = False if idempotent is None else idempotent
        self.topic = topic or settings.kafka.usage_topic
        self.metrics = ProducerMetrics(registry)
        self._codec = codec or build_codec(settings)
        self._providers = allowed_providers(settings.custom_providers) if settings.custom_providers else None
        self._linger_s = linger_s
        self._spool = Spool(Path(spool_dir or settings.data_dir / "spool" / self.topic), spool_max_bytes)
        self.metrics.spool_bytes.set(self._spool.size_bytes)
        enabled = True if idempotent is None else idempotent
        conf: dict[str, Any] = {
            "bootstrap.servers": servers,
            "acks": "all",
            "enable.idempotence": enabled,
            "compression.type": settings.kafka.compression,
            "linger.ms": 5,
            "message.timeout.ms": int(delivery_timeout_s * 1000),
            "partitioner": "murmur2_random",
            "reconnect.backoff.max.ms": 1000,
            "error_cb": self._on_kafka_error,
            "logger": logging.getLogger(f"{__name__}.librdkafka"),
        }
        if not enabled:
            # Without idempotence a retried request may overtake the next one: one at a time
            # per connection keeps each partition (each organization) in order.
            conf["max.in.flight.requests.per.connection"] = 1
        conf.update(config or {})
        self._kafka = Producer(conf)

        self._queue: queue.Queue[_Record] = queue.Queue(maxsize=max_queued)
        self._cond = threading.Condition()
        self._outstanding = 0  # accepted records not yet delivered or failed (guarded by _cond)
        self._flushers = 0
        self._closed = False
        self._stop = threading.Event()
        self._spool_full = False

        # The thread's own state from here on.
        self._seq = 0
        self._batches: dict[str, list[_Record]] = {}
        self._batch_since: float | None = None
        self._inflight: dict[int, _Message] = {}  # produced straight to Kafka, no report yet
        self._returned: list[_Message] = []  # came back from Kafka unsent: to the spool
        self._held: list[_Message] = []  # made while spooling, before the in-flight ones came back
        self._spooling = not self._spool.is_empty()  # a previous process left messages: replay first
        self._purge = False
        self._spool_records: dict[tuple[int, int], list[_Record]] = {}
        self._window: list[SpoolEntry] = []
        self._window_errors: dict[tuple[int, int], KafkaError | None] = {}
        self._probe_at = 0.0
        self._backoff = 0.5

        self._thread = threading.Thread(target=self._run, name=f"usage-producer-{self.topic}", daemon=True)
        self._thread.start()
        # The thread is a daemon (the interpreter does not wait for it); atexit flushes instead.
        self._flush_on_exit = flush_on_exit
        if flush_on_exit:
            atexit.register(self.close)

    # -- the caller's side ---------------------------------------------------------------

    def send(self, record: Mapping[str, Any] | UsageEvent, on_delivery: DeliveryCallback | None = None) -> None:
        """Validate ``record`` and queue it; returns at once.

        Raises:
            schemas.errors.EventValidationError: the record is invalid (``field_errors`` names each field).
            SpoolFullError: the broker is unreachable and the spool is full: the record is not kept.
            ProducerBackpressureError: more than ``max_queued`` records wait for the thread.
            ProducerClosedError: after :meth:`close`.
        """
        event = record if isinstance(record, UsageEvent) else UsageEvent.parse(record, self._providers)
        if self._closed:
            self.metrics.rejected.labels("closed").inc()
            raise ProducerClosedError("the producer is closed")
        if self._spool_full:
            self.metrics.rejected.labels("spool_full").inc()
            raise SpoolFullError(
                f"Kafka is unreachable and the producer spool {self._spool.directory} is full "
                f"({self._spool.size_bytes} of {self._spool.max_bytes} bytes); the record was not accepted",
                spool_bytes=self._spool.size_bytes,
            )
        with self._cond:
            self._outstanding += 1
        try:
            self._queue.put_nowait(_Record(event, on_delivery))
        except queue.Full:
            with self._cond:
                self._outstanding -= 1
            self.metrics.rejected.labels("queue_full").inc()
            raise ProducerBackpressureError(
                f"{self._queue.maxsize} records are already queued; the record was not accepted", retry_after=0.1
            ) from None
        self.metrics.sent.inc()

    def flush(self, timeout: float | None = None) -> int:
        """Wait until every accepted record is delivered (or failed for good) and the spool is
        empty, or ``timeout`` seconds; return the number of records still undelivered."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flushers += 1
            try:
                while (self._outstanding or self._spooling) and self._thread.is_alive():
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    self._cond.wait(0.1 if left is None else min(left, 0.1))
                return self._outstanding
            finally:
                self._flushers -= 1

    def close(self, timeout: float = 30.0) -> int:
        """Flush for up to ``timeout`` seconds, then stop. What is still undelivered stays in the
        spool for the next producer on the same ``spool_dir`` (its callbacks are not called);
        returns how many records that is."""
        if self._closed:
            return 0
        self._closed = True
        if self._flush_on_exit:
            atexit.unregister(self.close)
        self.flush(timeout)
        self._stop.set()
        self._thread.join()
        with self._cond:
            left = self._outstanding
        if left:
            logger.warning(
                "%d record(s) left in the spool %s; the next producer on it sends them",
                left,
                self._spool.directory,
                extra={"operation": "close", "topic": self.topic, "rows": left},
            )
        return left

    def __enter__(self) -> UsageProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._take(0.01 if self._flushers or self._inflight or self._window else self._linger_s)
                self._emit_batches(force=bool(self._flushers))
                self._kafka.poll(0)
                self._purge_if_asked()
                if self._spooling:
                    self._spool_step()
                with self._cond:
                    self._cond.notify_all()
            self._shutdown()
        except Exception:
            logger.exception("usage producer thread failed", extra={"operation": "produce", "topic": self.topic})
        finally:
            with self._cond:
                self._cond.notify_all()

    def _take(self, timeout: float) -> None:
        records: list[_Record] = []
        try:
            records.append(self._queue.get(timeout=timeout))
            while len(records) < 10 * MAX_BATCH:
                records.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        for record in records:
            if self._batch_since is None:
                self._batch_since = time.monotonic()
            batch = self._batches.setdefault(record.event.organization_id, [])
            batch.append(record)
            if len(batch) >= MAX_BATCH:
                self._dispatch(self._message(self._batches.pop(record.event.organization_id)))

    def _emit_batches(self, force: bool) -> None:
        if not self._batches or self._batch_since is None:
            return
        if force or time.monotonic() - self._batch_since >= self._linger_s:
            batches, self._batches, self._batch_since = self._batches, {}, None
            for batch in batches.values():
                self._dispatch(self._message(batch))

    def _message(self, records: list[_Record]) -> _Message:
        self._seq += 1
        value = self._codec.encode_usage_batch([r.event for r in records])
        return _Message(self._seq, records[0].event.organization_id.encode(), value, records)

    def _dispatch(self, message: _Message) -> None:
        if self._spooling:
            self._held.append(message)
            return
        try:
            self._kafka.produce(
                self.topic, message.value, message.key, on_delivery=functools.partial(self._on_direct, message)
            )
        except (BufferError, KafkaException) as exc:
            # librdkafka's own queue is full (the broker is slow or away): the spool takes over.
            self._start_spooling(f"produce refused: {exc!r}")
            self._held.append(message)
            return
        self._inflight[message.seq] = message

    def _on_direct(self, message: _Message, err: KafkaError | None, _msg: Message) -> None:
        del self._inflight[message.seq]
        if err is None:
            self._resolve(message.records, None)
        elif err.code() in _PERMANENT or err.fatal():
            self._resolve(message.records, DeliveryError(f"Kafka refused the message: {err.str()}"))
        else:
            self._returned.append(message)
            self._start_spooling(err.str())

    def _on_kafka_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._start_spooling(err.str())
        else:
            logger.debug("kafka client error: %s", err.str(), extra={"operation": "produce", "topic": self.topic})

    def _start_spooling(self, reason: str) -> None:
        if not self._spooling:
            logger.warning(
                "Kafka unreachable (%s): spooling to %s",
                reason,
                self._spool.directory,
                extra={"operation": "spool", "topic": self.topic},
            )
            self._spooling = True
            self._probe_at = time.monotonic() + self._backoff
        # What librdkafka still holds comes back (as purge errors) to go to the spool in order.
        self._purge = True

    def _purge_if_asked(self) -> None:
        if self._purge:
            self._purge = False
            self._kafka.purge(in_queue=True, in_flight=True, blocking=False)
            self._kafka.poll(0)

    def _spool_step(self) -> None:
        """One step of the spooling state: move returned and held messages to the spool once
        no direct message is out (sequence order is the order of the batches), then replay."""
        if self._inflight:
            return  # their reports decide where they go: the spool must get them first
        if self._returned or self._held:
            pending = sorted(self._returned + self._held, key=lambda m: m.seq)
            self._returned, self._held = [], []
            for message in pending:
                self._to_spool(message)
        if self._window:
            if len(self._window_errors) == len(self._window):
                self._finish_window()
            return
        if self._spool.is_empty():
            self._spooling = False
            self._backoff = 0.5
            logger.info("spool drained: producing straight to Kafka", extra={"operation": "spool", "topic": self.topic})
            return
        now = time.monotonic()
        if now < self._probe_at:
            return
        if not self._topic_ready():
            self._backoff = min(self._backoff * 2, 5.0)
            self._probe_at = time.monotonic() + self._backoff
            return
        self._window = self._spool.read(max_entries=MAX_BATCH)
        self._window_errors = {}
        for entry in self._window:
            self._kafka.produce(
                self.topic, entry.value, entry.key, on_delivery=functools.partial(self._on_replayed, entry)
            )

    def _on_replayed(self, entry: SpoolEntry, err: KafkaError | None, _msg: Message) -> None:
        self._window_errors[entry.position] = err

    def _finish_window(self) -> None:
        """Acknowledge the window's longest prefix of delivered messages; after a failure the
        rest is sent again (from the cursor) once the broker answers."""
        window, errors = self._window, self._window_errors
        self._window, self._window_errors = [], {}
        acked: SpoolEntry | None = None
        failed = False
        for entry in window:
            err = errors[entry.position]
            records = self._spool_records.get(entry.position, [])
            if err is not None and err.code() not in _PERMANENT and not err.fatal():
                self._start_spooling(err.str())
                failed = True
                break
            if err is not None:
                logger.error(
                    "Kafka refused a spooled message for good: %s",
                    err.str(),
                    extra={"operation": "replay", "topic": self.topic, "offset": entry.offset},
                )
            self._spool_records.pop(entry.position, None)
            self._resolve(records, None if err is None else DeliveryError(f"Kafka refused it: {err.str()}"))
            self.metrics.replayed.inc()
            acked = entry
        if acked is not None:
            self._spool.ack(acked)
        if failed:
            # The rest is sent again from the cursor once the broker answers for the topic.
            self._probe_at = time.monotonic() + self._backoff
        self.metrics.spool_bytes.set(self._spool.size_bytes)
        if self._spool_full and self._spool.size_bytes < self._spool.max_bytes * 0.9:
            self._spool_full = False

    def _to_spool(self, message: _Message) -> None:
        try:
            entry = self._spool.append(message.key, message.value)
        except SpoolFullError as exc:
            logger.error(
                "spool full: %d record(s) could not be kept",
                len(message.records),
                extra={"operation": "spool", "topic": self.topic, "rows": len(message.records)},
            )
            self._resolve(message.records, exc)
            # Only now refuse new records: whoever sees the refusal has had the failures reported.
            self._spool_full = True
            return
        self._spool_records[entry.position] = message.records
        self.metrics.spooled.inc(len(message.records))
        self.metrics.spool_bytes.set(self._spool.size_bytes)

    def _topic_ready(self) -> bool:
        """The broker answers and knows the topic (a restarted broker may not have it yet)."""
        try:
            metadata = self._kafka.list_topics(self.topic, timeout=2.0)
        except KafkaException:
            return False
        found = metadata.topics.get(self.topic)
        return found is not None and found.error is None and bool(found.partitions)

    def _resolve(self, records: list[_Record], error: DeliveryError | None) -> None:
        (self.metrics.delivered if error is None else self.metrics.failed).inc(len(records))
        for record in records:
            if record.callback is not None:
                try:
                    record.callback(record.event, error)
                except Exception:
                    logger.exception("on_delivery callback failed", extra={"operation": "deliver"})
        with self._cond:
            self._outstanding -= len(records)
            self._cond.notify_all()

    def _shutdown(self) -> None:
        """Whatever is not delivered goes to the spool, in order, for the next producer."""
        self._take(0)
        while not self._queue.empty():
            self._take(0)
        self._emit_batches(force=True)
        if self._inflight or self._window:
            self._kafka.purge(in_queue=True, in_flight=True, blocking=False)
            deadline = time.monotonic() + 10.0
            while (self._inflight or len(self._window_errors) < len(self._window)) and time.monotonic() < deadline:
                self._kafka.poll(0.1)
        if self._window:
            self._finish_window()
        self._spooling = True
        self._spool_step_to_disk()
        self._spool.close()
        self.metrics.spool_bytes.set(self._spool.size_bytes)

    def _spool_step_to_disk(self) -> None:
        pending = sorted(self._returned + self._held + list(self._inflight.values()), key=lambda m: m.seq)
        self._returned, self._held, self._inflight = [], [], {}
        for message in pending:
            self._to_spool(message)
