"""Settings from defaults, the environment and a TOML file (llm_cost_ops/settings.py)."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from llm_cost_ops.settings import FLAT_ENV, Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "settings.toml"
SECTIONS = ("kafka", "clickhouse", "worker", "sink", "api", "embedded")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No variable of the machine running the tests reaches the settings."""
    fields = {name.upper() for name in Settings.model_fields}
    for name in list(os.environ):
        upper = name.upper()
        if upper in FLAT_ENV or upper == "COSTOPS_CONFIG" or upper.split("__")[0] in fields:
            monkeypatch.delenv(name)
    # A stray settings file in the working directory must not matter either.
    monkeypatch.chdir(tmp_path)


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_need_no_env() -> None:
    settings = load_settings()
    assert settings.log_level == "info"
    assert settings.data_dir == Path("data")
    assert settings.custom_providers == ()
    assert settings.kafka.bootstrap_servers is None
    assert settings.kafka.schema_registry_url is None
    assert (settings.kafka.usage_topic, settings.kafka.priced_topic, settings.kafka.dlq_topic) == (
        "usage-events",
        "priced-usage",
        "usage-dlq",
    )
    assert settings.kafka.partitions == 8
    assert settings.kafka.compression == "zstd"
    assert settings.kafka.idempotent_producer is None
    assert settings.clickhouse.url is None
    assert settings.clickhouse.database == "costops"
    assert settings.api.host == "127.0.0.1"
    assert settings.api.port == 8080
    assert settings.api.url is None
    assert settings.worker.app_id == "llm-cost-ops"
    assert settings.sink.batch_size == 20_000
    assert settings.embedded.broker_port == 0
    assert settings.chdb_path == Path("data") / "clickhouse"
    assert settings.runtime_file == Path("data") / "runtime.json"


def test_settings_factory_fixture(settings_factory: Callable[..., Settings], tmp_path: Path) -> None:
    settings = settings_factory(log_level="debug")
    assert settings.data_dir == tmp_path / "data"
    assert settings.log_level == "debug"


def test_flat_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_HOST", "0.0.0.0")
    monkeypatch.setenv("API_PORT", "9090")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("CLICKHOUSE_URL", "http://default:pw@ch:8123/costops")
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", "http://registry:8081")
    monkeypatch.setenv("COSTOPS_DATA_DIR", "/var/lib/costops")
    monkeypatch.setenv("COSTOPS_API_URL", "http://api:8080")
    monkeypatch.setenv("LOG_LEVEL", "warn")

    settings = load_settings()

    assert settings.api.host == "0.0.0.0"
    assert settings.api.port == 9090
    assert settings.kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert settings.clickhouse.url is not None
    assert settings.clickhouse.url.get_secret_value() == "http://default:pw@ch:8123/costops"
    assert "pw" not in repr(settings.clickhouse)
    assert settings.kafka.schema_registry_url == "http://registry:8081"
    assert settings.data_dir == Path("/var/lib/costops")
    assert settings.api.url == "http://api:8080"
    assert settings.log_level == "warning"
    # Fields not named keep their defaults.
    assert settings.kafka.partitions == 8
    assert settings.clickhouse.database == "costops"


@pytest.mark.parametrize(("value", "expected"), [("WARN", "warning"), ("Debug", "debug"), ("error", "error")])
def test_log_level_normalized(monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    monkeypatch.setenv("LOG_LEVEL", value)
    assert load_settings().log_level == expected


def test_empty_flat_env_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_PORT", "")
    assert load_settings().api.port == 8080


def test_nested_env_form(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA__PARTITIONS", "12")
    monkeypatch.setenv("SINK__FLUSH_SECONDS", "1.5")
    monkeypatch.setenv("KAFKA__COMPRESSION", "zstd")
    settings = load_settings()
    assert settings.kafka.partitions == 12
    assert settings.sink.flush_seconds == 1.5
    assert settings.kafka.compression == "zstd"
    assert settings.kafka.usage_topic == "usage-events"


def test_nested_and_flat_env_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA__PARTITIONS", "12")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    settings = load_settings()
    assert settings.kafka.partitions == 12
    assert settings.kafka.bootstrap_servers == "kafka:9092"


def test_custom_providers_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOM_PROVIDERS", "Acme, internal-llm,")
    assert load_settings().custom_providers == ("acme", "internal-llm")


def test_toml_file(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path / "costops.toml",
        'log_level = "debug"\n'
        'custom_providers = ["acme"]\n'
        "[kafka]\n"
        'bootstrap_servers = "kafka:9092"\n'
        "partitions = 24\n"
        "[api]\n"
        'host = "0.0.0.0"\n'
        "port = 9000\n",
    )
    settings = load_settings(path)
    assert isinstance(settings, Settings)
    assert settings.log_level == "debug"
    assert settings.custom_providers == ("acme",)
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.kafka.partitions == 24
    assert settings.kafka.dlq_topic == "usage-dlq"
    assert settings.api.host == "0.0.0.0"
    assert settings.api.port == 9000
    assert settings.api.max_batch == 1000


def test_toml_file_from_costops_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write_toml(tmp_path / "c.toml", "[api]\nport = 7000\n")
    monkeypatch.setenv("COSTOPS_CONFIG", str(path))
    assert load_settings().api.port == 7000


def test_env_beats_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write_toml(
        tmp_path / "c.toml", '[kafka]\npartitions = 24\nbootstrap_servers = "file:9092"\n[api]\nport = 9000\n'
    )
    monkeypatch.setenv("API_PORT", "9100")
    monkeypatch.setenv("KAFKA__PARTITIONS", "6")
    settings = load_settings(path)
    assert settings.api.port == 9100
    assert settings.kafka.partitions == 6
    # The file still supplies what the environment does not.
    assert settings.kafka.bootstrap_servers == "file:9092"


def test_overrides_beat_env_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write_toml(tmp_path / "c.toml", 'log_level = "error"\n')
    monkeypatch.setenv("LOG_LEVEL", "debug")
    assert load_settings(path, log_level="warning").log_level == "warning"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_missing_file_from_costops_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COSTOPS_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(FileNotFoundError):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("API_PORT", "not-a-port"),
        ("API_PORT", "70000"),
        ("LOG_LEVEL", "verbose"),
        ("KAFKA__PARTITIONS", "0"),
        ("KAFKA__COMPRESSION", "brotli"),
    ],
)
def test_invalid_env_value(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        load_settings()


@pytest.mark.parametrize(
    "text", ["[api]\nport = -1\n", "[kafka]\nno_such_option = 1\n", "[nosection]\nx = 1\n", 'log_level = "loud"\n']
)
def test_invalid_file_value(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValidationError):
        load_settings(write_toml(tmp_path / "c.toml", text))


def test_settings_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.log_level = "debug"
    with pytest.raises(ValidationError):
        settings.api.port = 1


def _flatten(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out: dict[tuple[str, ...], Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, (*prefix, key)))
        else:
            out[(*prefix, key)] = value
    return out


def test_example_settings_file() -> None:
    if not EXAMPLE.is_file():
        pytest.skip(f"{EXAMPLE} does not exist yet")
    settings = load_settings(EXAMPLE)
    assert isinstance(settings, Settings)

    # Every value the file sets is the value loaded (extra="forbid" already rejects unknown keys).
    dumped = _flatten(settings.model_dump(mode="json"))
    if settings.clickhouse.url is not None:  # a secret: dumped masked
        dumped[("clickhouse", "url")] = settings.clickhouse.url.get_secret_value()
    file_values = _flatten(tomllib.loads(EXAMPLE.read_text(encoding="utf-8")))
    assert file_values, "the example file sets nothing"
    for key, value in file_values.items():
        loaded = dumped[key]
        if key == ("log_level",):
            value = "warning" if value.lower() == "warn" else value.lower()
        elif key == ("custom_providers",):
            value = [p.lower() for p in value]
        assert loaded == value, key


def test_the_scored_window_size_must_be_a_window_size() -> None:
    with pytest.raises(ValidationError, match=r"anomaly\.window_s"):
        Settings(window={"sizes_s": (60,)})
    with pytest.raises(ValidationError, match="divide a day"):
        Settings(window={"sizes_s": (60, 7)})
    assert Settings(window={"sizes_s": "3600,60"}).window.sizes_s == (60, 3600)
