"""Reading usage files in every format (llm_cost_ops/ingest/): records and where they are."""

from __future__ import annotations

import io
import json

import pytest

from llm_cost_ops.ingest import json_array
from llm_cost_ops.ingest.records import Located, read_records
from llm_cost_ops.ingest.source import Format, detect_format


def records(data: bytes, fmt: Format) -> list[Located]:
    return list(read_records(io.BufferedReader(io.BytesIO(data)), fmt))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "first", "expected"),
    [
        ("a.json", b"{", "json"),
        ("a.JSONL", b"[", "jsonl"),
        ("a.ndjson", b"", "jsonl"),
        ("a.csv", b"[", "csv"),
        ("-", b"  \n[", "json"),
        ("data", b"{", "jsonl"),
        ("-", b"provider,model", "csv"),
    ],
)
def test_format_from_extension_then_first_byte(path: str, first: bytes, expected: str) -> None:
    assert detect_format(path, first) == expected


def test_json_array_elements_across_chunk_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_array, "CHUNK", 7)  # every element, number and keyword is cut somewhere
    items = [{"n": 12345678, "ok": True, "s": 'a \\" ] , b', "none": None}, [1, 2], -0.5e3, "x"]
    text = "[\n" + ",\n".join(json.dumps(item) for item in items) + "\n]\n"
    got = records(text.encode(), "json")
    assert [r.record for r in got] == items
    assert [r.where for r in got] == [f"record {i} (line {i + 1})" for i in range(1, 5)]


def test_json_array_syntax_error_names_the_record_and_line() -> None:
    text = b'[{"a": 1},\n {"a": 2},\n {"a": tru}, {"a": 4}]'
    got = records(text, "json")
    assert [r.record for r in got[:2]] == [{"a": 1}, {"a": 2}]
    assert got[2].where == "record 3 (line 3)" and got[2].error is not None
    assert got[2].error.startswith("not valid JSON: Expecting value (line 3)")
    assert len(got) == 3  # past a syntax error the array cannot be read reliably


def test_json_array_cut_off_and_empty() -> None:
    assert records(b"  [ ]  ", "json") == []
    cut = records(b'[{"a": 1}, {"a"', "json")
    assert cut[0].record == {"a": 1} and cut[1].error is not None


def test_json_format_with_json_lines_inside_is_read_as_lines() -> None:
    got = records(b'{"a": 1}\n\n{"a": 2\n', "json")
    assert got[0] == Located("line 1", {"a": 1})
    assert got[1].where == "line 3" and got[1].error is not None and got[1].error.startswith("not valid JSON")


def test_csv_columns_become_usage_fields() -> None:
    text = (
        b"provider,model,model.version,organization_id,prompt_tokens,completion_tokens,tags,metadata.team,metadata,latency_ms\n"
        b'openai,gpt-4o,2024-08-06,org-1,10,5,a|b,search,"{""env"": ""prod""}",\n'
        b'anthropic,claude,,org-1,1,2,"[""x"", ""y""]",,,300\n'
        b"\n"
        b"openai,gpt-4o,,org-1,ten,5,,,,\n"
    )
    got = records(text, "csv")
    assert got[0] == Located(
        "line 2",
        {
            "provider": "openai",
            "model": {"name": "gpt-4o", "version": "2024-08-06"},
            "organization_id": "org-1",
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "tags": ["a", "b"],
            "metadata": {"team": "search", "env": "prod"},
        },
    )
    assert got[1].record["tags"] == ["x", "y"] and got[1].record["latency_ms"] == 300
    assert "model" in got[1].record and "metadata" not in got[1].record  # empty cells are absent
    assert got[2] == Located("line 5", error="prompt_tokens: must be an integer (got 'ten')")


def test_csv_quoted_newline_keeps_line_numbers_of_row_starts() -> None:
    text = b'provider,metadata.note\nopenai,"two\nlines"\nopenai,x,extra\n'
    got = records(text, "csv")
    assert got[0].where == "line 2" and got[0].record["metadata"] == {"note": "two\nlines"}
    assert got[1].where == "line 4" and got[1].error == "row: has 3 cells but the header has 2 columns"
