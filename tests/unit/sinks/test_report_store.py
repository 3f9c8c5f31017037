"""Reports in the control store (sinks/report_store.py) on SQLite and PostgreSQL: the lifecycle,
audit rows, files stored byte for byte, and the sweep of reports nobody finishes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from llm_cost_ops.errors import NotFoundError
from schemas.auth import AuditQuery
from schemas.control import Actor
from schemas.report import ReportRequest
from sinks.access_store import AccessStore
from sinks.control_store import ControlStore, create_control_engine
from sinks.report_store import ReportStore


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def control_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'control.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def control(control_url: str, clock: Clock) -> Iterator[ControlStore]:
    ControlStore.open(control_url).close()  # migrated
    store = ControlStore(create_control_engine(control_url), clock)
    yield store
    store.close()


def request(**values: object) -> ReportRequest:
    return ReportRequest.parse({"report_type": "cost", "format": "xlsx", **values})


def test_lifecycle_and_audit(control: ControlStore, clock: Clock) -> None:
    reports = ReportStore(control)
    alice = Actor("key:a", organization_id="org-a", source="10.0.0.1")
    created = reports.create(request(filters={"start_date": "2025-01-01"}), "org-a", alice)
    assert (created.status, created.organization_id, created.created_by) == ("pending", "org-a", "key:a")
    assert created.params == {"filters": {**created.params["filters"], "start_date": "2025-01-01"}, "group_by": None}
    assert reports.start(created.id) and not reports.start(created.id)  # only a pending report starts
    content = bytes(range(256)) * 1000
    clock.now += timedelta(seconds=3)
    reports.complete(created.id, content, 42)
    done = reports.get(created.id)
    assert (done.status, done.size, done.row_count) == ("completed", len(content), 42)
    assert done.completed_at == clock.now
    assert reports.content(created.id) == content
    reports.fail(created.id, "too late")  # a finished report stays as it is
    assert reports.get(created.id).status == "completed"

    other = reports.create(request(), "org-b", Actor("key:b"))
    everyone = reports.create(request(), None, Actor("key:admin"))
    assert [r.id for r in reports.list("org-a")] == [created.id]
    assert {r.id for r in reports.list(None)} == {created.id, other.id, everyone.id}

    deleted = reports.delete(created.id, alice)
    assert deleted.id == created.id
    with pytest.raises(NotFoundError):
        reports.get(created.id)
    assert reports.content(created.id) is None
    entries = AccessStore(control).audit(AuditQuery(entity_id=created.id)).data
    assert [(e.action, e.entity_type, e.organization_id, e.actor, e.source) for e in entries] == [
        ("delete", "report", "org-a", "key:a", "10.0.0.1"),
        ("create", "report", "org-a", "key:a", "10.0.0.1"),
    ]
    assert entries[0].before is not None and entries[0].before["status"] == "completed"


def test_a_report_deleted_before_it_starts_is_not_generated(control: ControlStore) -> None:
    reports = ReportStore(control)
    report = reports.create(request(), "org-a", Actor("key:a"))
    reports.delete(report.id, Actor("key:a"))
    assert not reports.start(report.id)
    reports.complete(report.id, b"x", 1)  # nothing to update
    assert reports.list(None) == []


def test_unconfirmed_reports_fail_and_confirmed_ones_do_not(control: ControlStore, clock: Clock) -> None:
    reports = ReportStore(control)
    stale_after = timedelta(minutes=2)
    abandoned = reports.create(request(), "org-a", Actor("key:a"))
    reports.start(abandoned.id)
    alive = reports.create(request(), "org-a", Actor("key:a"))
    reports.start(alive.id)
    never_started = reports.create(request(), "org-a", Actor("key:a"))
    finished = reports.create(request(), "org-a", Actor("key:a"))
    reports.start(finished.id)
    reports.complete(finished.id, b"done", 1)

    clock.now += timedelta(minutes=1)
    assert reports.fail_stale(stale_after) == 0
    reports.heartbeat([alive.id])
    clock.now += timedelta(minutes=1, seconds=30)
    assert reports.fail_stale(stale_after) == 2
    states = {r.id: (r.status, r.error) for r in reports.list(None)}
    assert states[alive.id] == ("running", None)
    assert states[finished.id] == ("completed", None)
    for report_id in (abandoned.id, never_started.id):
        status, error = states[report_id]
        assert status == "failed" and error is not None and "stopped" in error
