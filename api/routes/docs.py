"""The OpenAPI document and its browsable page, behind a key like every other endpoint
(``API__PUBLIC_DOCS=true`` serves FastAPI's own, public ones instead)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from api.auth import PrincipalDep

router = APIRouter(tags=["system"])


@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request, principal: PrincipalDep) -> dict[str, Any]:
    return request.app.openapi()  # type: ignore[no-any-return]


@router.get("/docs", include_in_schema=False)
def docs(principal: PrincipalDep) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="LLM-CostOps API")
