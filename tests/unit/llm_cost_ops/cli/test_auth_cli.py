"""``cost-ops auth``: create, list, rotate and revoke keys against a real uvicorn server in a
thread, serving the admin routes over a control store on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from access_keys import admin_authenticator
from fastapi import FastAPI
from served import served

from api.auth import Authenticator
from api.errors import register_error_handlers
from api.routes import admin, auth_routes
from llm_cost_ops.cli.main import main
from llm_cost_ops.settings import AuthSettings, Settings
from sinks.access_store import AccessStore
from sinks.control_store import ControlStore


@dataclass
class _Context:
    control: ControlStore
    settings: Settings
    authenticator: Authenticator | None = None

    @property
    def access(self) -> AccessStore:
        return AccessStore(self.control)


pytestmark = pytest.mark.usefixtures("restore_logging")  # main() configures the root logger


@pytest.fixture
def api_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    control = ControlStore.open(f"sqlite:///{tmp_path / 'control.db'}")
    settings = Settings(_env_file=None, auth=AuthSettings(cache_s=0))
    app = FastAPI()
    register_error_handlers(app)
    app.include_router(admin.router)
    app.include_router(auth_routes.router)
    context = _Context(control, settings)
    context.authenticator, secret = admin_authenticator(control, settings)
    app.state.context, app.state.authenticator = context, context.authenticator
    with served(app) as url:
        monkeypatch.setenv("COSTOPS_API_URL", url)
        monkeypatch.setenv("COSTOPS_API_KEY", secret)
        monkeypatch.delenv("COSTOPS_ADMIN_KEY", raising=False)
        monkeypatch.delenv("COSTOPS_CONFIG", raising=False)
        yield url
    control.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["auth", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def works(url: str, key: str) -> bool:
    return httpx.get(f"{url}/api/v1/auth/me", headers={"X-API-Key": key}).status_code == 200


def test_create_list_rotate_revoke(api_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "create-api-key", "--name", "New Key", "--role", "viewer", "--test")
    assert code == 0, err
    key = out.strip()
    assert key.startswith("sk_test_") and "shown once" in err
    assert works(api_url, key)
    key_id = err.split()[1]

    code, out, _ = run(capsys, "list-api-keys")
    assert code == 0 and key_id in out and key[:12] in out and key not in out and "2 key(s)" in out

    code, out, err = run(capsys, "rotate-api-key", key_id)
    assert code == 0, err
    rotated = out.strip()
    assert rotated != key and not works(api_url, key) and works(api_url, rotated)

    code, out, _ = run(capsys, "revoke-api-key", key_id)
    assert code == 0 and f"revoked {key_id}" in out
    assert not works(api_url, rotated)


def test_errors_are_for_people(
    api_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, "create-api-key", "--name", "x", "--role", "nobody")
    assert code == 2 and "unknown role(s) nobody" in err and "Traceback" not in err
    code, _, err = run(capsys, "revoke-api-key", "key_missing")
    assert code == 1 and "no API key key_missing" in err
    monkeypatch.setenv("COSTOPS_API_KEY", "sk_live_" + "x" * 40)
    code, _, err = run(capsys, "list-api-keys")
    assert code == 1 and "AUTH_001" in err and "COSTOPS_API_KEY" in err and "Traceback" not in err
