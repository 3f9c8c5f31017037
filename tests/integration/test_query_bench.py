"""The query benchmark, tiny: it runs end to end and both modes give the same answers (no timing)."""

from __future__ import annotations

import uuid

from clickhouse_connect.driver.client import Client

from benchmarks.query_load import endpoints, run_query_benchmark, table


def test_query_benchmark_runs_and_the_modes_agree(chdb_client: Client) -> None:
    database = f"bench_{uuid.uuid4().hex[:12]}"
    result = run_query_benchmark(200_000, 2, 0.2, lambda _: None, client=chdb_client, database=database)
    assert result["answers_agree"] == dict.fromkeys(endpoints(), True)
    assert result["rollup_rows"] > 0
    for modes in result["endpoints"].values():
        assert modes["base"]["requests"] > 0 and modes["rollup"]["requests"] > 0
    assert "costs/summary" in table(result)
