"""``cost-ops pricing ...`` (llm_cost_ops/cli/pricing.py) against a real HTTP server: uvicorn in
a thread, serving the pricing routes over a control store on SQLite."""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from access_keys import admin_authenticator
from fastapi import FastAPI
from served import served

from api.errors import register_error_handlers
from api.routes import pricing
from llm_cost_ops.cli.main import main
from sinks.control_store import ControlStore


class _Context:
    def __init__(self, control: ControlStore) -> None:
        self.control = control

    async def control_changed(self) -> None:
        return None


pytestmark = pytest.mark.usefixtures("restore_logging")  # main() configures the root logger


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ControlStore]:
    store = ControlStore.open(f"sqlite:///{tmp_path / 'control.db'}")
    yield store
    store.close()


@pytest.fixture
def api_url(store: ControlStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    app = FastAPI()
    register_error_handlers(app)
    app.include_router(pricing.router)
    app.state.context = _Context(store)
    app.state.authenticator, secret = admin_authenticator(store)
    monkeypatch.setenv("COSTOPS_API_KEY", secret)
    with served(app) as url:
        monkeypatch.setenv("COSTOPS_API_URL", url)
        monkeypatch.delenv("COSTOPS_CONFIG", raising=False)
        yield url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["pricing", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rules(api_url: str) -> list[dict[str, Any]]:
    key = os.environ["COSTOPS_API_KEY"]  # set by the api_url fixture
    data: list[dict[str, Any]] = httpx.get(f"{api_url}/api/v1/pricing", headers={"X-API-Key": key}).json()["data"]
    return data


def add_seed(capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    code, out, err = run(
        capsys,
        "add",
        "--provider=openai",
        "--model=gpt-4-turbo",
        "--input-price=10.0",
        "--output-price=30.0",
        "--cached-discount=0.5",
        "--effective-date=2025-01-01",
        *extra,
    )
    assert (code, err) == (0, "")
    rule_id = out.split()[1]
    assert out.startswith(f"created {rule_id}\n")
    return rule_id


def test_add_sends_exact_prices(api_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys,
        "add",
        "--provider",
        "openai",
        "--model",
        "gpt-4o",
        "--input-price",
        "0.0000000001",
        "--output-price",
        "123456789.1234567891",
        "--cached-price",
        "1.25",
        "--reasoning-price",
        "60",
        "--organization",
        "org-1",
        "--description",
        "negotiated",
    )
    assert (code, err) == (0, "")
    [rule] = rules(api_url)
    assert out.startswith(f"created {rule['id']}\n")
    assert "in 0.0000000001, out 123456789.1234567891, cached 1.25, reasoning 60 /1M (USD)" in out
    assert "organization org-1" in out
    structure = rule["pricing_structure"]
    assert structure["output_price_per_million"] == "123456789.1234567891"
    assert (structure["cached_input_price_per_million"], structure["reasoning_price_per_million"]) == ("1.25", "60")
    assert (rule["scope"], rule["organization_id"], rule["description"]) == ("organization", "org-1", "negotiated")


def test_add_per_request(api_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "add",
        "--provider=acme",
        "--model=m",
        "--per-request=0.002",
        "--included-tokens=1000",
        "--overage-price=1.5",
        "--currency=eur",
    )
    assert code == 0
    assert "0.002/request, 1000 tokens included, then 1.5/1M (EUR)" in out
    assert rules(api_url)[0]["pricing_structure"] == {
        "type": "per_request",
        "price_per_request": "0.002",
        "included_tokens": 1000,
        "overage_price_per_million": "1.5",
    }


def test_add_tiers_inline_and_from_a_file(api_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    tiers = [
        {"threshold": 0, "input_price_per_million": 3.0, "output_price_per_million": 15.0},
        {"threshold": 1000000000, "input_price_per_million": 2.5, "output_price_per_million": 12.5},
    ]
    code, out, _ = run(capsys, "add", "--provider=anthropic", "--model=a", "--tiers", json.dumps(tiers))
    assert code == 0
    assert "from 0: in 3.0, out 15.0 /1M; from 1000000000: in 2.5, out 12.5 /1M" in out
    path = tmp_path / "tiers.json"
    path.write_text(json.dumps({"tiers": tiers}))
    assert run(capsys, "add", "--provider=anthropic", "--model=b", "--tiers", str(path))[0] == 0
    for rule in rules(api_url):
        assert rule["pricing_structure"]["tiers"][1]["input_price_per_million"] == "2.5"


def test_invalid_price_reports_the_option(api_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "add", "--provider=openai", "--model=m", "--input-price=-1", "--output-price=3")
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        "error: VALIDATION_ERROR: invalid pricing: pricing_structure.input_price_per_million",
        "  --input-price: must be greater than or equal to 0",
    ]
    assert rules(api_url) == []


def test_missing_price_reports_the_option(api_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "add", "--provider=openai", "--model=m", "--output-price=3")
    assert code == 2
    assert "  --input-price: is required" in err.splitlines()


def test_non_numeric_price_is_a_usage_error(api_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["pricing", "add", "--provider=openai", "--model=m", "--input-price=ten", "--output-price=3"])
    assert exited.value.code == 2
    assert "'ten' is not a number" in capsys.readouterr().err
    assert rules(api_url) == []


def test_conflicting_structures_are_refused_before_sending(api_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "add", "--provider=o", "--model=m", "--tiers=[]", "--input-price=1")
    assert code == 2
    assert "  --tiers: cannot be combined with --input-price" in err.splitlines()
    code, _, err = run(capsys, "add", "--provider=o", "--model=m", "--per-request=1", "--input-price=1")
    assert code == 2
    assert "  --per-request: per-request pricing takes no --input-price" in err.splitlines()
    assert rules(api_url) == []


def test_overlap_reports_the_rule_in_the_way(api_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    first = add_seed(capsys)
    later = ("add", "--provider=openai", "--model=gpt-4-turbo", "--input-price=1", "--output-price=2")
    code, _, err = run(capsys, *later, "--effective-date=2025-03-01")
    assert code == 2
    assert err.splitlines()[1] == (
        f"  --effective-date: overlaps {first} (from 2025-01-01T00:00:00Z to open); set its end_date first"
    )
    code, _, err = run(capsys, *later)  # from the default start, 2000-01-01: it would run into the first
    assert code == 2
    assert err.splitlines()[1].endswith("to open); end this rule by 2025-01-01T00:00:00Z")
    assert len(rules(api_url)) == 1


def test_list_as_a_table(api_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "list")[1] == "no pricing rules match\n"
    old = add_seed(capsys, "--end-date=2025-02-01")
    new = add_seed(capsys, "--effective-date=2025-02-01T06:30:00Z")
    code, out, _ = run(capsys, "list", "--provider", "openai")
    assert code == 0
    header, rule, *rows = out.splitlines()
    assert header.split() == ["ID", "PROVIDER", "MODEL", "FOR", "PRICES", "CURRENCY", "FROM", "TO"]
    assert set(rule) == {"-", " "}
    assert [re.split(r"\s{2,}", row) for row in rows] == [
        [old, "openai", "gpt-4-turbo", "everyone", "in 10.0, out 30.0, cached -50% /1M", "USD", "2025-01-01",
         "2025-02-01"],
        [new, "openai", "gpt-4-turbo", "everyone", "in 10.0, out 30.0, cached -50% /1M", "USD",
         "2025-02-01 06:30 UTC", "open"],
    ]  # fmt: skip
    assert len(run(capsys, "list", "--active")[1].splitlines()) == 3
    assert run(capsys, "list", "--provider", "anthropic")[1] == "no pricing rules match\n"


def test_update_changes_only_what_is_given(api_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    rule_id = add_seed(capsys, "--description=list price")
    code, out, _ = run(capsys, "update", rule_id, "--end-date", "2025-06-01")
    assert code == 0
    assert out.startswith(f"updated {rule_id}\n")
    [rule] = rules(api_url)
    assert rule["end_date"] == "2025-06-01T00:00:00Z"
    assert rule["description"] == "list price"
    assert rule["pricing_structure"]["input_price_per_million"] == "10.0"

    assert run(capsys, "update", rule_id, "--cached-price=2", "--end-date=none", "--description=")[0] == 0
    [rule] = rules(api_url)
    assert (rule["end_date"], rule["description"]) == (None, None)
    structure = rule["pricing_structure"]
    assert (structure["cached_input_price_per_million"], structure["cached_input_discount"]) == ("2", None)
    assert structure["output_price_per_million"] == "30.0"

    assert run(capsys, "update", rule_id, "--per-request=0.5")[0] == 0
    assert rules(api_url)[0]["pricing_structure"]["type"] == "per_request"


def test_show_with_history(api_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    rule_id = add_seed(capsys)
    run(capsys, "update", rule_id, "--output-price=25", "--end-date=2025-03-01")
    code, out, _ = run(capsys, "show", rule_id)
    assert code == 0
    assert f"id:          {rule_id}" in out
    assert "price of:    openai/gpt-4-turbo, everyone" in out
    assert "in force:    2025-01-01 to 2025-03-01" in out
    history = out.split("\n\n")[1].splitlines()
    assert history[0].split() == ["CHANGE", "AT", "ACTOR", "ACTION", "FIELDS"]
    assert history[2].split()[-2:] == ["create", "-"]
    assert history[3].split()[-3:] == ["update", "pricing_structure,", "end_date"]


def test_delete(api_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    rule_id = add_seed(capsys, "--organization=org-9", "--project=web")
    code, out, _ = run(capsys, "delete", rule_id)
    assert (code, out) == (0, f"deleted {rule_id} (openai/gpt-4-turbo, project org-9/web)\n")
    assert rules(api_url) == []
    code, out, err = run(capsys, "delete", rule_id)
    assert (code, out, err) == (1, "", f"error: NOT_FOUND: no pricing rule {rule_id}\n")


def test_show_unknown(api_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "show", "price_nope") == (1, "", "error: NOT_FOUND: no pricing rule price_nope\n")


def test_no_api_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    monkeypatch.setenv("COSTOPS_API_URL", f"http://127.0.0.1:{sock.getsockname()[1]}")
    try:
        code, out, err = run(capsys, "list")
    finally:
        sock.close()
    assert (code, out) == (1, "")
    assert len(err.splitlines()) == 1
    assert err.startswith("error: no LLM-CostOps API answers at")
