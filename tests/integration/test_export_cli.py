"""``cost-ops export`` against a real uvicorn server over chDB: the file equals the API's
export, the format follows the extension, and errors are one line with no file left behind."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from served_api import ServedApi, serve_api, tenant_key
from test_cost_exports import insert_rows

from llm_cost_ops.cli.client import ApiClient
from llm_cost_ops.cli.export import download
from llm_cost_ops.cli.main import main
from sinks.store import ClickHouseStore

pytestmark = pytest.mark.usefixtures("restore_logging")  # main() configures the root logger


@pytest.fixture
def api(store: ClickHouseStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServedApi]:
    insert_rows(store, 40)
    with serve_api(store, tmp_path / "server", export_page_rows=9) as served:
        monkeypatch.setenv("COSTOPS_API_URL", served.url)
        monkeypatch.setenv("COSTOPS_API_KEY", served.admin_key)
        monkeypatch.delenv("COSTOPS_CONFIG", raising=False)
        monkeypatch.setenv("DATA_DIR", str(tmp_path / "cli-data"))
        yield served


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["export", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


DATES = ("--start-date", "2025-01-01", "--end-date", "2025-01-02")


def test_export_to_csv_equals_the_api_export(
    api: ServedApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out" / "costs.csv"
    code, out, err = run(capsys, "--output", str(output), "--format", "csv", *DATES)
    assert (code, err) == (0, "")
    assert out.startswith("wrote 40 records (") and out.endswith(f") to {output}\n")
    with api.client() as client:
        expected = client.get(
            "/api/v1/costs/export", params={"format": "json", "start_date": "2025-01-01", "end_date": "2025-01-02"}
        ).json()
    rows = list(csv.DictReader(io.StringIO(output.read_text())))
    assert rows == [{k: "" if v is None else str(v) for k, v in r.items()} for r in expected]
    assert [p.name for p in output.parent.iterdir()] == ["costs.csv"]  # no temporary file left


def test_format_from_the_extension_and_filters(
    api: ServedApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "costs.parquet"
    code, out, _ = run(capsys, "-o", str(output), "--organization", "org-b", "--model", "gpt-4o", "-q", *DATES)
    assert code == 0
    table = pq.read_table(output)
    assert table.num_rows > 0 and set(table.column("organization_id").to_pylist()) == {"org-b"}
    assert set(table.column("model").to_pylist()) == {"gpt-4o"}
    assert out.startswith(f"wrote {table.num_rows} records")
    jsonl = tmp_path / "costs.jsonl"
    assert run(capsys, "-o", str(jsonl), "--provider", "openai", *DATES)[0] == 0
    assert len([json.loads(line) for line in jsonl.read_text().splitlines()]) == 40
    # The default period (the last 30 days) holds none of these 2025 events.
    empty = tmp_path / "recent.json"
    code, out, _ = run(capsys, "-o", str(empty))
    assert code == 0 and json.loads(empty.read_text()) == [] and out.startswith("wrote 0 records")


def test_errors_are_one_line_and_leave_no_file(
    api: ServedApi, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "costs.csv"
    output.write_text("previous export\n")
    monkeypatch.setenv("COSTOPS_API_KEY", tenant_key(api, "org-a", "analyst"))
    code, out, err = run(capsys, "-o", str(output), "--organization", "org-b")
    assert (code, out) == (1, "")
    assert err.startswith("error: AUTH_002: this API key can only access organization org-a") and "Traceback" not in err
    assert output.read_text() == "previous export\n"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["costs.csv", "server"]

    code, _, err = run(capsys, "-o", str(tmp_path / "bad.csv"), "--start-date", "soon")
    assert code == 2 and "start_date" in err and not (tmp_path / "bad.csv").exists()
    code, _, err = run(capsys, "-o", str(tmp_path / "costs.pdf"))
    assert code == 2 and "--format" in err

    monkeypatch.setenv("COSTOPS_API_URL", "http://127.0.0.1:9")
    code, _, err = run(capsys, "-o", str(tmp_path / "none.csv"))
    assert code == 1 and err.startswith("error: no LLM-CostOps API answers at http://127.0.0.1:9")
    assert not (tmp_path / "none.csv").exists()


def test_the_viewer_role_cannot_export(
    api: ServedApi, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COSTOPS_API_KEY", tenant_key(api, "org-a", "viewer"))
    code, _, err = run(capsys, "-o", str(tmp_path / "costs.csv"))
    assert code == 1 and "export:data" in err
    with httpx.Client(base_url=api.url) as client:
        assert client.get("/api/v1/costs/export").status_code == 401


def test_progress_bar_counts_records_to_the_total(api: ServedApi, tmp_path: Path) -> None:
    output = tmp_path / "costs.jsonl"
    bar = io.StringIO()
    with ApiClient(api.url, api_key=api.admin_key) as client:
        result = download(client, output, "jsonl", {"start_date": "2025-01-01"}, progress=True, bar_file=bar)
    assert (result.records, result.size) == (40, output.stat().st_size)
    assert "40/40" in bar.getvalue().rsplit("\r", 1)[-1]
    parquet = tmp_path / "costs.parquet"
    with ApiClient(api.url, api_key=api.admin_key) as client:
        download(client, parquet, "parquet", {}, progress=True, bar_file=bar)
    assert f"costs.parquet: {parquet.stat().st_size / 1000:.1f}kB" in bar.getvalue()  # bytes: no total
