"""Reports: a request generated in the background, then downloaded (``/api/v1/reports``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llm_cost_ops.errors import InvalidInputError
from schemas.errors import validated
from schemas.query import CostFilterParams, UtcDatetime

ReportType = Literal["cost", "usage", "forecast", "audit", "budget", "summary"]
ReportFormat = Literal["csv", "json", "xlsx"]
ReportStatus = Literal["pending", "running", "completed", "failed"]


class ReportFilters(BaseModel):
    """What the report covers: the cost filters (dates ISO 8601; ``end_date`` as a date
    includes that day). The organization is the request's ``organization_id``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start_date: str | None = None
    end_date: str | None = None
    provider: str | None = None
    model: str | None = None
    project_id: str | None = None
    user_id: str | None = None
    currency: str | None = None
    tags: list[str] = Field(default_factory=list)

    def cost_filters(self, organization_id: str | None) -> CostFilterParams:
        """These filters as the cost queries take them (InvalidInputError naming ``filters.*``)."""
        data = {**self.model_dump(), "organization_id": organization_id, "tags": tuple(self.tags)}
        if data["currency"]:
            data["currency"] = data["currency"].upper()
        try:
            return validated(CostFilterParams, data, "report filters")
        except InvalidInputError as exc:
            fields = {f"filters.{k}": v for k, v in exc.field_errors.items()}
            raise InvalidInputError(f"invalid report filters: {', '.join(fields)}", fields) from None


class ReportRequest(BaseModel):
    """``POST /api/v1/reports``."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "report_type": "cost",
                    "organization_id": "org-123",
                    "format": "csv",
                    "filters": {"start_date": "2024-01-01", "end_date": "2024-01-31"},
                }
            ]
        },
    )

    report_type: ReportType
    format: ReportFormat = "csv"
    organization_id: str | None = Field(default=None, max_length=128)
    """The organization reported on (default: the caller's; an admin without one: every organization)."""
    filters: ReportFilters = Field(default_factory=ReportFilters)
    group_by: list[str] | None = None
    """For ``usage`` reports: provider, model, project_id, user_id, organization_id, tag or
    metadata.KEY (default provider and model)."""

    @field_validator("group_by")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else list(dict.fromkeys(k.strip() for k in value if k.strip()))

    @classmethod
    def parse(cls, data: object) -> ReportRequest:
        """Validate, raising :class:`InvalidInputError` with one reason per bad field."""
        return validated(cls, data, "report request")


class Report(BaseModel):
    """A report's state (its content is at ``/api/v1/reports/{id}/download``)."""

    id: str
    organization_id: str | None
    """None: a report over every organization (admins only)."""
    report_type: ReportType
    format: ReportFormat
    params: dict[str, Any]
    """The request's filters and group_by, as given."""
    status: ReportStatus
    error: str | None = None
    row_count: int | None = None
    size: int | None = None
    """Bytes of the file, once completed."""
    created_at: UtcDatetime
    completed_at: UtcDatetime | None = None
    created_by: str | None = None


class ReportList(BaseModel):
    data: list[Report]
