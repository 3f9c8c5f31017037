"""The one settings object, read from the environment and an optional TOML file.

Every entrypoint builds it once with :func:`load_settings` and passes it down; nothing
instantiates it at import time. The embedded defaults need no configuration at all.

Environment names: the documented flat names (``API_HOST``, ``API_PORT``, ``LOG_LEVEL``,
``KAFKA_BOOTSTRAP_SERVERS``, ``SCHEMA_REGISTRY_URL``, ``CLICKHOUSE_URL``, ``COSTOPS_DATA_DIR``)
and, for every other field, the nested form with ``__`` (``KAFKA__PARTITIONS=12``).
Precedence: constructor arguments, then environment, then the file, then defaults.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["text", "json"]

# Documented flat variable -> path inside the nested settings.
FLAT_ENV: dict[str, tuple[str, ...]] = {
    "API_HOST": ("api", "host"),
    "API_PORT": ("api", "port"),
    "LOG_LEVEL": ("log_level",),
    "LOG_FORMAT": ("log_format",),
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "SCHEMA_REGISTRY_URL": ("kafka", "schema_registry_url"),
    "CLICKHOUSE_URL": ("clickhouse", "url"),
    "COSTOPS_DATA_DIR": ("data_dir",),
    "COSTOPS_API_URL": ("api", "url"),
    "DATABASE_URL": ("database", "url"),
    "COSTOPS_ADMIN_KEY": ("auth", "admin_key"),
    "COSTOPS_API_KEY": ("api", "key"),
    "JWT_SECRET": ("auth", "jwt_secret"),
    "RATE_LIMIT_PER_SECOND": ("api", "rate_limit_per_second"),
    "RATE_LIMIT_BURST": ("api", "rate_limit_burst"),
    "ENABLE_COMPRESSION": ("api", "compression"),
}

_PLACEHOLDER_SECRETS = {"your-secret-key", "jwt-secret", "changeme", "change-me", "secret", "password"}


class _Section(BaseModel):
    model_config = {"frozen": True, "extra": "forbid"}


class KafkaSettings(_Section):
    """Kafka and topic settings."""

    bootstrap_servers: str | None = None
    """``host:port[,host:port]``. Unset means the embedded broker that ``cost-ops up`` starts."""
    schema_registry_url: str | None = None
    """Confluent Schema Registry; unset means the built-in schema table."""
    usage_topic: str = "usage-events"
    priced_topic: str = "priced-usage"
    dlq_topic: str = "usage-dlq"
    control_topic: str = "control"
    windows_topic: str = "cost-windows"
    """Closed event-time windows (JSON), keyed by organization."""
    alerts_topic: str = "alerts"
    """Anomaly and budget alerts (JSON), keyed by organization."""
    """Compacted, one partition: the pricing rules (and later budgets) every worker applies."""
    partitions: int = Field(default=8, ge=1, le=1024)
    """Partitions of the topics the pipeline creates (the ceiling on parallel workers)."""
    replication_factor: int = Field(default=1, ge=1)
    idempotent_producer: bool | None = None
    """Idempotent producer; ``None`` means on for real Kafka, off for the embedded broker
    (Tansu's memory storage rejects ``InitProducerId``)."""
    single_record_batches: bool = False
    """The worker produces one record per batch. For Tansu 0.6 (the embedded broker), whose
    ListOffsets answers the first offset of the last batch + 1: Faust's table recovery would
    stop short of the changelog's end, and a surviving worker's recovery would fail its
    consistency check. ``cost-ops up`` turns it on for its broker."""
    rebalance_timeout_s: float = Field(default=5.0, gt=0)
    """Faust's rebalance timeout. Tansu completes a group join only after it, so it bounds
    worker start-up time on the embedded broker."""
    compression: Literal["none", "gzip", "lz4", "zstd"] = "zstd"
    """Compression of the usage producers' messages. zstd: aiokafka compresses lz4 at level 9,
    which cost ~20x more CPU than zstd's default for a larger result (docs/performance.md)."""


class ClickHouseSettings(_Section):
    """Analytics store settings."""

    url: SecretStr | None = None
    """``http(s)://user:pass@host:8123/db`` for a ClickHouse server; unset means embedded chDB.
    Secret: it usually carries a password, so ``check-config`` prints it masked."""
    database: str = Field(default="costops", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Database of the pipeline's tables (an identifier: it is spliced into DDL)."""
    rollups: bool = True
    """Answer aggregates (summary, aggregate by hour or coarser, analytics, trends) from the hourly
    rollup ``usage_costs_hourly`` where it holds the data: same answers, less to read."""


class DatabaseSettings(_Section):
    """The control plane's relational store: pricing rules and their audit log."""

    url: SecretStr | None = None
    """``postgresql://user:pass@host:5432/db`` (``DATABASE_URL``); unset means SQLite under the
    data directory."""


class WorkerSettings(_Section):
    """The Faust pricing worker."""

    app_id: str = "llm-cost-ops"
    """Faust application id, also the consumer group of the pricing agent."""
    batch_size: int = Field(default=100, ge=1)
    """Most messages the agent takes at once (a message holds up to 500 events)."""
    batch_seconds: float = Field(default=0.1, gt=0)
    """Longest wait to fill a take; a bound on the latency the worker adds."""
    web_host: str = "127.0.0.1"
    """Interface of the worker's /health, /ready and /metrics (``0.0.0.0`` to be scraped from
    other hosts)."""
    web_port: int = Field(default=6066, ge=0, le=65535)
    """Port of the worker's /health, /ready and /metrics."""


class SinkSettings(_Section):
    """The ClickHouse sink."""

    group_id: str = "llm-cost-ops-sink"
    batch_size: int = Field(default=20_000, ge=1)
    """Rows that trigger a flush."""
    flush_seconds: float = Field(default=0.25, gt=0)
    """Longest time a consumed row waits before it is written."""
    retry_max_seconds: float = Field(default=30.0, gt=0)
    """Ceiling of the exponential backoff between failed inserts."""
    rollup_refresh_seconds: float = Field(default=5.0, gt=0)
    """How often the sink recomputes the hourly rollup's dirty hours (queries read those hours
    from ``usage_costs`` meanwhile, so this bounds work, not correctness)."""


class WindowSettings(_Section):
    """Event-time tumbling windows of cost, tokens and requests (docs/anomalies.md)."""

    sizes_s: Annotated[tuple[int, ...], NoDecode] = (60, 3600)
    """Window sizes in seconds (each divides a day)."""
    grace_s: int = Field(default=60, ge=0)
    """How long after its end a window still takes late events (event time)."""
    max_skew_s: int = Field(default=300, ge=0)
    """Event times beyond now + this count as now for the watermark (a wrong clock must not
    close every window)."""
    idle_s: float = Field(default=60.0, ge=0)
    """A live partition without a message for this long gets a tick: its watermark moves to
    now - idle_s, closing its windows without waiting for traffic (0: never)."""

    @field_validator("sizes_s", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("sizes_s")
    @classmethod
    def _divide_a_day(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("at least one window size")
        bad = [size for size in value if size <= 0 or 86_400 % size]
        if bad:
            raise ValueError(f"sizes must be positive and divide a day (86400 s): {bad}")
        return tuple(sorted(set(value)))


class AnomalySettings(_Section):
    """Anomaly detection on closed cost windows (docs/anomalies.md)."""

    window_s: int = Field(default=3600, gt=0)
    """The window size whose closed windows are scored (one of ``window.sizes_s``)."""
    method: Literal["robust", "zscore", "iqr"] = "robust"
    threshold: float | None = Field(default=None, gt=0)
    """Score beyond which a window is anomalous; unset: 4 (robust), 3 (zscore), 1.5 (iqr)."""
    min_history: int = Field(default=192, ge=2)
    """Windows of a series before it is scored at all (a week and a day of hours: the weekly
    season is known before a weekend is judged)."""
    history: int = Field(default=336, ge=4)
    """Windows of history kept per series (two weeks of hours covers a weekly season)."""
    seasons: Annotated[tuple[int, ...], NoDecode] = (24, 168)
    """Season lengths in windows (a day and a week of hourly windows); ``SEASONS=`` for none."""
    persistence: int = Field(default=1, ge=1)
    """Consecutive anomalous windows (one direction) before an alert."""
    adapt_after: int = Field(default=24, ge=1)
    """Windows after which a lasting change is the new normal."""
    min_impact_usd: Decimal = Field(default=Decimal("1"), ge=0)
    """Smallest |actual - expected| worth an alert."""
    severity_usd: Annotated[tuple[Decimal, Decimal, Decimal], NoDecode] = (Decimal(10), Decimal(100), Decimal(1000))
    """Impacts from which an alert is medium, high, critical (below: low)."""

    @field_validator("seasons", "severity_usd", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("severity_usd")
    @classmethod
    def _ascending(cls, value: tuple[Decimal, Decimal, Decimal]) -> tuple[Decimal, Decimal, Decimal]:
        if list(value) != sorted(value):
            raise ValueError("must be ascending: medium, high, critical")
        return value


class WebhookSettings(_Section):
    """Delivery of alerts to the webhooks users register (docs/anomalies.md)."""

    group_id: str = "llm-cost-ops-webhooks"
    """Consumer group of the notifier that reads ``alerts``."""
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_s: float = Field(default=1.0, gt=0)
    """Wait before the second attempt; doubled after each failure."""
    max_backoff_s: float = Field(default=30.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    """One attempt's time limit (connect and response)."""


class BudgetSettings(_Section):
    """Budgets (docs/budgets.md): how long spend is kept, and what a hard limit does."""

    retention_days: int = Field(default=3, ge=1, le=60)
    """Daily spend kept this many days before the newest event's day (monthly: the previous
    month too); later events are still stored, but no longer count into a budget."""
    hard_limit_action: Literal["reject", "flag"] = "reject"
    """An event under an exceeded hard budget: ``reject`` answers 429 ``BUDGET_001``; ``flag``
    accepts it and names the budgets in the answer (``budget_exceeded``)."""


class ApiSettings(_Section):
    """The HTTP API."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    url: str | None = None
    """Where CLI commands reach a running API; unset means the embedded one, then host:port."""
    key: SecretStr | None = None
    """The API key CLI commands send (``COSTOPS_API_KEY``); unset means the admin key
    (``COSTOPS_ADMIN_KEY``, else ``<data_dir>/admin.key`` of the embedded pipeline)."""
    max_batch: int = Field(default=1000, ge=1)
    """Most records accepted by one ``POST /api/v1/usage/batch``."""
    max_per_page: int = Field(default=1000, ge=1)
    rate_limit_per_second: float = Field(default=100.0, gt=0)
    """Requests per second each key (or user) may sustain, per API process (token bucket)."""
    rate_limit_burst: int = Field(default=200, ge=1)
    """Requests a key may make at once before the rate applies (the bucket's size)."""
    max_request_mb: float = Field(default=10.0, gt=0)
    """Largest request body accepted (413 above it)."""
    export_page_rows: int = Field(default=50_000, ge=1, le=1_000_000)
    """Rows an export reads per statement (its memory is about one page of them)."""
    max_report_mb: float = Field(default=50.0, gt=0)
    """Largest report stored; a report that would be larger fails, saying so."""
    report_workers: int = Field(default=2, ge=1, le=32)
    """Reports generated at once by one API process; the others wait, pending."""
    report_stale_s: float = Field(default=120.0, gt=0)
    """A running report whose process has not confirmed it for this long is marked failed
    (its process stopped or restarted)."""
    compression: bool = True
    """gzip or brotli responses, as the client accepts (over 1 KiB)."""
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    """Origins browsers may call the API from (``*`` for any); none by default."""
    public_docs: bool = False
    """Serve ``/docs`` and ``/openapi.json`` without a key (off: only /health, /ready and
    /metrics answer without one)."""

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(json.loads(value) if value.lstrip().startswith("[") else filter(None, value.split(",")))
        return value


class AuthSettings(_Section):
    """API keys, users and tokens."""

    admin_key: SecretStr | None = None
    """The bootstrap admin key (``COSTOPS_ADMIN_KEY``), for automation. Unset: the first start
    generates one, prints it once and writes it to ``<data_dir>/admin.key``."""
    default_organization: str = Field(default="default", min_length=1, max_length=128)
    """The organization of the bootstrap admin key (and of events the admin sends without one)."""
    jwt_secret: SecretStr | None = None
    """Signs users' access tokens (``JWT_SECRET``). Unset: generated into ``<data_dir>/jwt.secret``
    (one API process; set it when several API processes serve one deployment)."""
    jwt_expiry_minutes: int = Field(default=60, ge=1, le=24 * 60)
    refresh_days: int = Field(default=30, ge=1, le=365)
    cache_s: float = Field(default=5.0, ge=0)
    """How long an API process trusts what it read about a key or user; a revocation made
    through another process takes at most this long to apply here."""

    @field_validator("admin_key")
    @classmethod
    def _admin_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            secret = value.get_secret_value()
            if not secret.startswith("sk_") or len(secret) < 32:
                raise ValueError("must start with sk_ and be at least 32 characters (e.g. sk_live_ + 32 random)")
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _jwt_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            secret = value.get_secret_value()
            if secret.lower() in _PLACEHOLDER_SECRETS or len(secret) < 32:
                raise ValueError("must be a random secret of at least 32 characters, not a placeholder")
        return value


class IngestSettings(_Section):
    """``cost-ops ingest-topic``: usage events mapped from other topics' messages (docs/ingest.md)."""

    group_prefix: str = "llm-cost-ops-ingest"
    """Consumer group of an ingester without ``--group``: ``<group_prefix>-<topic>``."""
    batch_size: int = Field(default=500, ge=1, le=10_000)
    """Most source messages mapped, published and committed at once."""
    organization_attributes: Annotated[tuple[str, ...], NoDecode] = (
        "costops.organization_id",
        "organization.id",
        "tenant.id",
    )
    """OpenTelemetry resource (then span) attributes holding the organization, first found wins."""
    project_attributes: Annotated[tuple[str, ...], NoDecode] = ("costops.project_id", "project.id", "service.name")
    """Attributes holding the project, first found wins (none: no project)."""
    user_attributes: Annotated[tuple[str, ...], NoDecode] = ("user.id", "enduser.id")
    """Attributes holding the user, first found wins."""
    default_organization: str | None = Field(default=None, min_length=1, max_length=128)
    """The organization of a mapped message that names none; unset: such a message is a dead letter."""

    @field_validator("organization_attributes", "project_attributes", "user_attributes", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


class EmbeddedSettings(_Section):
    """What ``cost-ops up`` starts on one machine."""

    broker_port: int = Field(default=0, ge=0, le=65535)
    """Port of the embedded Tansu broker (0 picks a free one)."""


class Settings(BaseSettings):
    """Everything the pipeline's processes need to know."""

    model_config = SettingsConfigDict(frozen=True, env_nested_delimiter="__", extra="forbid")

    log_level: LogLevel = "info"
    log_format: LogFormat = "text"
    """``text`` for a terminal; ``json`` (one object a line, for log aggregation) is what the
    container deployments set (``LOG_FORMAT=json``)."""
    data_dir: Path = Path("data")
    """Embedded state: chDB data, the runtime file that CLI commands read."""
    custom_providers: Annotated[tuple[str, ...], NoDecode] = ()
    """Providers accepted besides the built-in list. The list-price catalog does not know them,
    so their events are stored as unpriced until custom pricing exists."""
    kafka: KafkaSettings = KafkaSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    database: DatabaseSettings = DatabaseSettings()
    worker: WorkerSettings = WorkerSettings()
    sink: SinkSettings = SinkSettings()
    api: ApiSettings = ApiSettings()
    window: WindowSettings = WindowSettings()
    anomaly: AnomalySettings = AnomalySettings()
    webhooks: WebhookSettings = WebhookSettings()
    budgets: BudgetSettings = BudgetSettings()
    auth: AuthSettings = AuthSettings()
    embedded: EmbeddedSettings = EmbeddedSettings()
    ingest: IngestSettings = IngestSettings()

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        # The seeds document LOG_LEVEL=warn; accept it as warning.
        if isinstance(value, str):
            value = value.lower()
            return "warning" if value == "warn" else value
        return value

    @field_validator("custom_providers", mode="before")
    @classmethod
    def _split_providers(cls, value: Any) -> Any:
        # CUSTOM_PROVIDERS=internal,acme (a JSON list works too, from the environment or a file)
        if isinstance(value, str):
            value = json.loads(value) if value.lstrip().startswith("[") else value.split(",")
        if isinstance(value, list | tuple):
            return tuple(str(p).strip().lower() for p in value if str(p).strip())
        return value

    @model_validator(mode="after")
    def _scored_window_exists(self) -> Settings:
        if self.anomaly.window_s not in self.window.sizes_s:
            raise ValueError(
                f"anomaly.window_s ({self.anomaly.window_s}) must be one of window.sizes_s {list(self.window.sizes_s)}"
            )
        return self

    @property
    def chdb_path(self) -> Path:
        return self.data_dir / "clickhouse"

    @property
    def control_db_url(self) -> str:
        """SQLAlchemy URL of the control plane store."""
        if self.database.url is not None:
            return self.database.url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'control.db').resolve()}"

    @property
    def admin_key_file(self) -> Path:
        return self.data_dir / "admin.key"

    def client_key(self) -> str | None:
        """The API key CLI commands send: ``api.key``, else the admin key, else the embedded
        pipeline's ``admin.key`` file."""
        if self.api.key is not None:
            return self.api.key.get_secret_value()
        if self.auth.admin_key is not None:
            return self.auth.admin_key.get_secret_value()
        try:
            return self.admin_key_file.read_text().strip() or None
        except OSError:
            return None

    @property
    def runtime_file(self) -> Path:
        return self.data_dir / "runtime.json"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            _FlatEnvSource(settings_cls),
            env_settings,
            TomlConfigSettingsSource(settings_cls),
        )


class _FlatEnvSource(PydanticBaseSettingsSource):
    """Maps the documented flat variables (``API_PORT``) onto nested fields."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ builds the whole dict

    def __call__(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for name, path in FLAT_ENV.items():
            value = os.environ.get(name)
            if value is None or value == "":
                continue
            node = result
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = value
        return result


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings once for an entrypoint.

    Args:
        config_file: optional TOML file (also taken from ``COSTOPS_CONFIG``); its tables mirror
            the nested sections (``[kafka]``, ``[api]`` ...).
        overrides: values that win over every other source.
    """
    path = config_file or (Path(p) if (p := os.environ.get("COSTOPS_CONFIG")) else None)
    if path is None:
        return Settings(**overrides)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")

    class _FileSettings(Settings):
        model_config = SettingsConfigDict(toml_file=path)

    return _FileSettings(**overrides)
