"""Reports: generated in the background, then listed, downloaded and deleted.

A report belongs to an organization: the caller's own (or, for an admin, the one named, or
none: every organization). Another organization's report answers 404, as if it did not exist.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from api.auth import Principal, PrincipalDep
from api.deps import ActorDep, ContextDep, json_body
from api.report_runner import ReportRunner
from llm_cost_ops.errors import ConflictError, InvalidInputError, NotFoundError, UnavailableError
from schemas.errors import field_errors
from schemas.query import AggregateParams
from schemas.report import Report, ReportList, ReportRequest
from sinks.report_store import ReportStore

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])


def _inlined(schema: Any, defs: dict[str, Any]) -> Any:
    """``schema`` with its ``$defs`` references replaced by the definitions (the request body
    is declared inline, where ``#/$defs/...`` would not resolve)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref", "")
        if ref.startswith("#/$defs/"):
            return _inlined(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inlined(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inlined(item, defs) for item in schema]
    return schema


_SCHEMA = ReportRequest.model_json_schema()
_BODY = {"required": True, "content": {"application/json": {"schema": _inlined(_SCHEMA, _SCHEMA.get("$defs", {}))}}}
_MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_FILE = {"schema": {"type": "string", "format": "binary"}}


def get_reports(context: ContextDep) -> ReportStore:
    if context.control is None:
        raise UnavailableError("reports are not available on this process", retry_after=5)
    return ReportStore(context.control)


def get_reporter(context: ContextDep) -> ReportRunner:
    if context.reporter is None:
        raise UnavailableError("reports are not generated on this process", retry_after=5)
    return context.reporter


ReportsDep = Annotated[ReportStore, Depends(get_reports)]
ReporterDep = Annotated[ReportRunner, Depends(get_reporter)]


@router.post(
    "",
    status_code=202,
    response_model=Report,
    openapi_extra={"requestBody": _BODY},
    responses={202: {"description": "Accepted: the report is `pending`; poll GET /api/v1/reports/{id}"}},
)
async def create_report(
    request: Request, reports: ReportsDep, reporter: ReporterDep, principal: PrincipalDep, actor: ActorDep
) -> JSONResponse:
    """Generate a report in the background: ``cost`` (the cost records, as the export),
    ``usage`` (totals by provider and model, or ``group_by``), ``summary``, ``budget``,
    ``audit`` or ``forecast``, as ``csv``, ``json`` or ``xlsx``. Answers 202 with the report,
    ``pending``; it becomes ``completed`` (download it) or ``failed`` (``error`` says why)."""
    body = ReportRequest.parse(await json_body(request))
    organization_id = principal.scope(body.organization_id)
    body.filters.cost_filters(organization_id)  # a bad filter is a 422 now, not a failed report later
    if body.group_by is not None:
        if body.report_type != "usage":
            raise InvalidInputError("invalid report request: group_by", {"group_by": "is only for usage reports"})
        try:
            AggregateParams(group_by=tuple(body.group_by))
        except ValidationError as exc:
            fields = field_errors(exc)
            raise InvalidInputError(f"invalid report request: {', '.join(fields)}", fields) from None
    report = await asyncio.to_thread(reports.create, body, organization_id, actor)
    reporter.submit(report)
    return JSONResponse(report.model_dump(mode="json"), status_code=202)


@router.get("", response_model=ReportList)
async def list_reports(reports: ReportsDep, principal: PrincipalDep) -> ReportList:
    """The caller's organization's reports, newest first (an admin's: every organization's)."""
    return ReportList(data=await asyncio.to_thread(reports.list, principal.scope(None)))


@router.get("/{report_id}", response_model=Report)
async def get_report(reports: ReportsDep, principal: PrincipalDep, report_id: str) -> Report:
    """The report's status (pending, running, completed, failed), error, size and row count."""
    return await _owned(reports, principal, report_id)


@router.get(
    "/{report_id}/download",
    response_class=Response,
    responses={
        200: {"description": "The report's file", "content": {media: _FILE for media in _MEDIA.values()}},
        409: {"description": "The report is not completed (pending, running or failed)"},
    },
)
async def download_report(reports: ReportsDep, principal: PrincipalDep, report_id: str) -> Response:
    """The report's file, as an attachment; 409 (``CONFLICT``) until it is completed."""
    report = await _owned(reports, principal, report_id)
    if report.status != "completed":
        detail = f": {report.error}" if report.error else "; retry when its status is completed"
        raise ConflictError(f"report {report_id} is {report.status}{detail}")
    content = await asyncio.to_thread(reports.content, report_id)
    if content is None:  # deleted between the two reads
        raise NotFoundError(f"no report {report_id}")
    filename = f"{report.report_type}-report-{report.id}.{report.format}"
    return Response(
        content,
        media_type=_MEDIA[report.format],
        headers={"Content-Disposition": f"attachment; filename={filename}"},
    )


@router.delete("/{report_id}", response_model=Report)
async def delete_report(reports: ReportsDep, principal: PrincipalDep, actor: ActorDep, report_id: str) -> Report:
    """Delete the report and its file (audited). A report still being generated is dropped
    when it finishes."""
    await _owned(reports, principal, report_id)
    return await asyncio.to_thread(reports.delete, report_id, actor)


async def _owned(reports: ReportStore, principal: Principal, report_id: str) -> Report:
    report = await asyncio.to_thread(reports.get, report_id)
    principal.check_owns(report.organization_id, f"report {report_id}")
    return report
