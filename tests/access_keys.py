"""Keys for tests that build the API's routers on a real control store."""

from __future__ import annotations

from api.auth import Authenticator
from llm_cost_ops.credentials import new_api_key
from llm_cost_ops.settings import Settings
from schemas.control import Actor
from sinks.access_store import AccessStore
from sinks.control_store import ControlStore

JWT_SECRET = "test-jwt-secret-" + "x" * 32


def admin_authenticator(control: ControlStore, settings: Settings | None = None) -> tuple[Authenticator, str]:
    """An authenticator over ``control`` and the secret of its bootstrap admin key."""
    access = AccessStore(control)
    access.ensure_organization("default", "Default organization", Actor("test"))
    secret = new_api_key("test")
    access.ensure_bootstrap_key(secret, "default", Actor("test"), replace=True)
    return Authenticator(settings or Settings(_env_file=None), access, JWT_SECRET), secret
