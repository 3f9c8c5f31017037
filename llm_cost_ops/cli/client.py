"""The HTTP client CLI commands use to talk to a running pipeline's API."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import httpx

from llm_cost_ops.errors import (
    AuthenticationError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    PipelineError,
    UnavailableError,
)
from llm_cost_ops.runtime import api_url
from llm_cost_ops.settings import Settings


class ApiClient:
    """Thin JSON client; API errors come back as the pipeline's own error kinds.

    Args:
        base_url: the API's base URL.
        timeout_s: per-request timeout.
    """

    def __init__(self, base_url: str, timeout_s: float = 30.0, api_key: str | None = None) -> None:
        self.base_url = base_url
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, headers=headers)

    @classmethod
    def for_settings(cls, settings: Settings) -> ApiClient:
        return cls(api_url(settings), api_key=settings.client_key())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._request("GET", path, params=params)

    def post(self, path: str, body: Any) -> Any:
        return self._request("POST", path, json=body)

    def put(self, path: str, body: Any) -> Any:
        return self._request("PUT", path, json=body)

    def delete(self, path: str) -> Any:
        return self._request("DELETE", path)

    @contextmanager
    def stream(self, path: str, params: dict[str, Any] | None = None) -> Iterator[httpx.Response]:
        """A GET whose body is read as it arrives (``response.iter_bytes()``); an error status
        raises like the other methods, before the body is handed over."""
        answered = False
        try:
            with self._http.stream("GET", path, params=params, timeout=httpx.Timeout(30.0, read=300.0)) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for(response)
                answered = True
                yield response
        except httpx.TransportError as exc:
            if answered:
                broke = f"the download from {self.base_url} broke off ({exc.__class__.__name__})"
                raise UnavailableError(broke) from exc
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: httpx.TransportError) -> UnavailableError:
        return UnavailableError(
            f"no LLM-CostOps API answers at {self.base_url} ({exc.__class__.__name__}). "
            "Start the pipeline with `cost-ops up`, or set COSTOPS_API_URL."
        )

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code < 400:
            return response.json()
        _raise_for(response)


def _raise_for(response: httpx.Response) -> NoReturn:
    """The pipeline's error kind for an API error answer."""
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        error = {"code": "HTTP_ERROR", "message": response.text[:500]}
    message = f"{error.get('code')}: {error.get('message')}"
    if response.status_code == 401:
        raise AuthenticationError(
            f"{message}. Set COSTOPS_API_KEY to a key (`cost-ops auth create-api-key`), "
            "or run the command where the pipeline's data directory holds admin.key."
        )
    if response.status_code == 403:
        raise PermissionDeniedError(message, error.get("field_errors"))
    if response.status_code == 422:
        raise InvalidInputError(message, error.get("field_errors"))
    if response.status_code == 404:
        raise NotFoundError(message)
    if response.status_code == 503:
        raise UnavailableError(message, float(response.headers.get("Retry-After", 5)))
    raise PipelineError(f"API answered {response.status_code}: {message}")
