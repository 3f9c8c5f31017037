"""Windows and anomaly alerts through the running pipeline, on replayed old-timestamped events.

Two organizations send three weeks of hourly traffic whose cost follows a daily and weekly
season (``llm_cost_ops.synthetic.normal_level``, with noise). ``org-calm`` stays normal;
``org-wild`` has, after two weeks of warm-up, a runaway spike (one hour at 6x), a sustained 3x
level shift (12 hours) and a slow leak (an extra cost growing to +100 % over 24 hours). The
worker is SIGKILLed in the middle of an hour shortly before the spike and restarted: the spike
is caught only if the windows and the detector state survived.
"""

from __future__ import annotations

import json
import math
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from receivers import Receiver

from llm_cost_ops.broker import EmbeddedBroker, free_port
from llm_cost_ops.synthetic import normal_level

from processes import Process, api_client, pipeline_env, query_stopped_chdb, wait_consumed, wait_for, wait_ok

pytestmark = pytest.mark.integration

START = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday
HOURS = 3 * 168
EVENTS_PER_HOUR = 4
RESTART_AT = 340
SPIKE, SHIFT, LEAK = 350, (380, 392), (420, 444)
SESSION_S = 10.0


@dataclass(frozen=True)
class Traffic:
    records: list[dict[str, Any]]
    hourly: dict[tuple[str, int], Decimal]
    """(organization, hour) -> exact cost."""


def hourly_cost(org: str, hour: int, rng: random.Random) -> Decimal:
    level = normal_level(hour, 40.0, 0.003) * math.exp(rng.gauss(0, 0.08))
    if org == "org-wild":
        if hour == SPIKE:
            level *= 6
        elif SHIFT[0] <= hour < SHIFT[1]:
            level *= 3
        elif LEAK[0] <= hour < LEAK[1]:
            level += normal_level(LEAK[0], 40.0, 0.003) * (hour - LEAK[0] + 1) / (LEAK[1] - LEAK[0])
    return Decimal(f"{level:.6f}")


def traffic(seed: int = 7) -> Traffic:
    """Events in time order; at $1 per million input tokens, an hour's tokens are its cost x 1e6."""
    rng = random.Random(seed)
    records, hourly = [], {}
    for hour in range(HOURS):
        for org in ("org-calm", "org-wild"):
            cost = hourly_cost(org, hour, rng)
            hourly[(org, hour)] = cost
            tokens = int(cost * 1_000_000)
            shares = [tokens // EVENTS_PER_HOUR] * EVENTS_PER_HOUR
            shares[-1] += tokens - sum(shares)
            for n, share in enumerate(shares):
                at = START + timedelta(hours=hour, minutes=n * 14 + 1)
                records.append(
                    {
                        "id": f"{org}-{hour}-{n}",
                        "timestamp": at.isoformat().replace("+00:00", "Z"),
                        "provider": "openai",
                        "model": "anomaly-model",
                        "organization_id": org,
                        "prompt_tokens": share,
                        "completion_tokens": 0,
                    }
                )
    # In time order across organizations: a partition's watermark is its latest event time, so
    # one organization running an hour ahead of another in a partition would make it late.
    records.sort(key=lambda r: (r["timestamp"], r["organization_id"]))
    return Traffic(records, hourly)


@pytest.fixture(scope="module")
def run(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The whole stream through API, worker (killed once) and sink; what the API says after."""
    root = tmp_path_factory.mktemp("anomalies")
    api_port = free_port()
    env = pipeline_env(
        broker.bootstrap_servers, root, uuid.uuid4().hex[:8],
        KAFKA__PARTITIONS="2", API_PORT=str(api_port), WORKER__WEB_PORT=str(free_port()),
        WINDOW__SIZES_S="60,3600", WINDOW__GRACE_S="60", ANOMALY__WINDOW_S="3600",
    )  # fmt: skip
    stream = traffic()
    api = Process("api", ["api", "--role", "all"], env, root)
    worker = Process("worker", ["worker"], env, root)
    results: dict[str, Any] = {"traffic": stream, "root": root}
    receiver = Receiver([500])  # the first delivery fails and is retried
    try:
        api.start()
        with receiver, api_client(f"http://127.0.0.1:{api_port}", 60) as client:
            wait_ok(client, "/ready", root)
            hook = {"url": receiver.url, "events": ["cost.anomaly"], "organization_id": "org-wild"}
            assert client.post("/api/v1/webhooks", json=hook).status_code == 201
            structure = {"type": "per_token", "input_price_per_million": "1", "output_price_per_million": "1"}
            rule = {"provider": "openai", "model": "anomaly-model", "pricing_structure": structure}
            assert client.post("/api/v1/pricing", json=rule).status_code == 201
            worker.start()
            worker_ready = f"http://127.0.0.1:{env['WORKER__WEB_PORT']}/ready"
            wait_ok(client, worker_ready, root)
            records = stream.records
            cut = RESTART_AT * 2 * EVENTS_PER_HOUR + 5  # in the middle of hour 340
            publish(client, records[:cut])
            wait_for(lambda: stored(client) >= cut, "the first part stored")
            worker.kill()  # mid-hour: an open window and the detectors' state in the tables only
            time.sleep(SESSION_S + 3)  # Tansu: see docs/delivery.md
            worker.start()
            wait_ok(client, worker_ready, root)
            publish(client, records[cut:])
            # One more event per organization, hours later: the watermark closes the last hour.
            late = START + timedelta(hours=HOURS + 3)
            flush = [
                {**records[0], "id": f"flush-{org}", "organization_id": org, "timestamp": late.isoformat()}
                for org in ("org-calm", "org-wild")
            ]
            assert client.post("/api/v1/usage/batch", json={"records": flush}).status_code == 202
            wait_for(lambda: stored(client) >= len(records) + 2, "every event stored")
            # Windows of both sizes, organization and model dimensions, both organizations.
            expected_windows = HOURS * (1 + EVENTS_PER_HOUR) * 2 * 2
            worker_metrics = worker_ready.replace("/ready", "/metrics")
            try:
                wait_for(lambda: windows_written(client) >= expected_windows, "every window")
            except BaseException:
                closed = [line for line in client.get(worker_metrics).text.splitlines() if "windows_closed" in line
                          or "late_events_total " in line]  # fmt: skip
                print(f"windows written {windows_written(client)} of {expected_windows}; worker: {closed}")
                raise
            wait_consumed(broker.bootstrap_servers, env["WORKER__APP_ID"], env["KAFKA__WINDOWS_TOPIC"], 2)
            time.sleep(3)  # the last alerts on their way to ClickHouse
            results["alerts"] = client.get("/api/v1/alerts", params={"per_page": 1000}).json()
            wait_for(
                lambda: len({h["X-CostOps-Delivery"] for h, _ in receiver.requests}) >= 6, "six webhook deliveries"
            )
            results["webhook"] = [json.loads(body) for _, body in receiver.requests]
            results["daily"] = {
                org: client.get(
                    "/api/v1/forecast/anomalies",
                    params={"organization_id": org, "start_date": "2025-03-17", "end_date": "2025-03-23"},
                )
                for org in ("org-calm", "org-wild", "org-nobody")
            }
            results["forecasts"] = {
                name: client.post(path, json=body)
                for name, path, body in [
                    ("cost", "/api/v1/forecast/cost", {"organization_id": "org-calm", "horizon_days": 14}),
                    ("usage", "/api/v1/forecast/usage", {"organization_id": "org-calm", "model": "moving_average"}),
                    ("holt", "/api/v1/forecast/cost", {"forecast_model": "exponential_smoothing", "horizon_days": 7}),
                    ("nobody", "/api/v1/forecast/cost", {"organization_id": "org-nobody"}),
                    ("bad", "/api/v1/forecast/cost", {"model": "prophet", "confidence_level": 1.5}),
                ]
            }
    finally:
        worker.stop()
        api.stop()
    yield results


def stored(client: httpx.Client) -> int:
    return int(client.get("/api/v1/usage/stats").json()["events"])


def windows_written(client: httpx.Client) -> int:
    """Closed windows the sink has written (a window closed twice after a crash counts twice)."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('costops_sink_rows_written_total{table="cost_windows"}'):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def publish(client: httpx.Client, records: list[dict[str, Any]]) -> None:
    for start in range(0, len(records), 1000):
        response = client.post("/api/v1/usage/batch", json={"records": records[start : start + 1000]})
        assert response.status_code == 202, response.text


def alerts_of(run: dict[str, Any], org: str, dimension: str = "organization") -> list[dict[str, Any]]:
    return [a for a in run["alerts"]["data"] if a["organization_id"] == org and a["dimension"] == dimension]


def hour_of(alert: dict[str, Any]) -> int:
    start = datetime.fromisoformat(alert["window_start"].replace("Z", "+00:00"))
    return int((start - START).total_seconds() // 3600)


def test_the_spike_the_level_shift_and_the_leak_alert_once_each_and_in_time(run: dict[str, Any]) -> None:
    alerts = sorted(alerts_of(run, "org-wild"), key=hour_of)
    hours = [hour_of(a) for a in alerts]
    assert len(alerts) == 3, alerts
    assert hours[0] == SPIKE  # caught in its own window, right after a worker restart
    assert SHIFT[0] <= hours[1] <= SHIFT[0] + 1  # within one window of the shift
    assert LEAK[0] <= hours[2] < LEAK[1]
    assert all(a["direction"] == "spike" and a["method"] == "robust" and a["type"] == "cost.anomaly" for a in alerts)
    spike = alerts[0]
    assert Decimal(spike["actual_cost"]) == run["traffic"].hourly[("org-wild", SPIKE)]
    assert Decimal(spike["impact"]) == Decimal(spike["actual_cost"]) - Decimal(spike["expected_cost"])
    assert spike["severity"] in {"high", "critical"}  # about 5x an hour of $40-60
    assert len(alerts_of(run, "org-wild", "model")) == 3  # its one model follows the same series


def test_a_normal_seasonal_stream_raises_nothing(run: dict[str, Any]) -> None:
    assert alerts_of(run, "org-calm") == []
    assert alerts_of(run, "org-calm", "model") == []


def test_every_hour_is_one_closed_window_with_the_exact_cost(run: dict[str, Any]) -> None:
    rows = query_stopped_chdb(
        run["root"] / "data",
        "SELECT organization_id, toUnixTimestamp(window_start), cost, requests, count() OVER () "
        "FROM costops.cost_windows FINAL WHERE size_seconds = 3600 AND dimension = 'organization'",
    )
    windows = {(str(org), (int(str(start)) - int(START.timestamp())) // 3600): (Decimal(str(cost)), requests)
               for org, start, cost, requests, _ in rows}  # fmt: skip
    expected = {key: (cost, EVENTS_PER_HOUR) for key, cost in run["traffic"].hourly.items()}
    assert windows == expected  # every hour, once, to the last decimal, across the kill
    minutes = query_stopped_chdb(
        run["root"] / "data",
        "SELECT sum(cost), sum(requests) FROM costops.cost_windows FINAL "
        "WHERE size_seconds = 60 AND dimension = 'organization' AND organization_id = 'org-wild'",
    )
    wild = [cost for (org, _), cost in run["traffic"].hourly.items() if org == "org-wild"]
    assert Decimal(str(minutes[0][0])) == sum(wild) and minutes[0][1] == HOURS * EVENTS_PER_HOUR


def test_daily_anomalies_follow_the_seeds_shape(run: dict[str, Any]) -> None:
    calm, wild, nobody = (run["daily"][org] for org in ("org-calm", "org-wild", "org-nobody"))
    assert calm.status_code == 200 and calm.json()["data"] == []
    days = {a["date"]: a for a in wild.json()["data"]}
    shift_day = (START + timedelta(hours=SHIFT[0])).date().isoformat()
    assert shift_day in days, wild.json()
    assert set(days[shift_day]) == {"date", "actual_cost", "expected_cost", "score", "method", "severity", "direction"}
    assert days[shift_day]["method"] == "robust" and days[shift_day]["direction"] == "spike"
    assert nobody.status_code == 422 and nobody.json()["error"]["code"] == "FORECAST_001"


def test_the_alerts_reach_the_webhook(run: dict[str, Any]) -> None:
    """Three windows, organization and model dimension: six alerts, each delivered once after
    the receiver's first 500 was retried."""
    delivered = {payload["id"]: payload for payload in run["webhook"]}
    assert len(run["webhook"]) == 7 and len(delivered) == 6
    assert {p["data"]["alert_id"] for p in delivered.values()} == {
        a["alert_id"] for a in run["alerts"]["data"] if a["organization_id"] == "org-wild"
    }


def test_forecasts_of_cost_and_usage(run: dict[str, Any]) -> None:
    forecasts = run["forecasts"]
    cost = forecasts["cost"].json()
    assert forecasts["cost"].status_code == 200, cost
    # Three weeks of hours, plus the flush event's day.
    assert cost["history"] == {"start": "2025-03-03", "end": "2025-03-24", "days": 22}
    assert [p["date"] for p in cost["predictions"]][:2] == ["2025-03-25", "2025-03-26"]
    assert len(cost["predictions"]) == 14 and cost["model"] == "linear" and cost["currency"] == "USD"
    for point in cost["predictions"]:
        assert Decimal(point["lower_bound"]) <= Decimal(point["value"]) <= Decimal(point["upper_bound"])
    assert Decimal(cost["total"]["value"]) == sum(Decimal(p["value"]) for p in cost["predictions"])
    usage = forecasts["usage"].json()
    assert usage["metric"] == "tokens" and usage["currency"] is None and len(usage["predictions"]) == 30
    assert int(usage["predictions"][0]["value"]) > 0
    assert forecasts["holt"].json()["model"] == "exponential_smoothing"
    nobody = forecasts["nobody"].json()
    assert forecasts["nobody"].status_code == 422 and nobody["error"]["code"] == "FORECAST_001"
    assert "minimum 7 days required" in nobody["error"]["message"]
    bad = forecasts["bad"].json()["error"]
    assert bad["code"] == "VALIDATION_ERROR" and set(bad["field_errors"]) == {"model", "confidence_level"}
