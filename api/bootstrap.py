"""First start: the default organization, the bootstrap admin key and the token-signing secret.

* ``COSTOPS_ADMIN_KEY`` set: that key is the admin key (created, or replacing the previous one).
* unset, and no admin key yet: one is generated, printed once, and written to
  ``<data_dir>/admin.key`` (mode 0600), where the CLI finds it.
* unset, and an admin key exists: nothing changes (its secret is not stored, only its hash).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

from llm_cost_ops.credentials import new_api_key, new_token
from llm_cost_ops.settings import Settings
from schemas.control import Actor
from sinks.access_store import AccessStore

logger = logging.getLogger(__name__)

_SYSTEM = Actor(name="system:bootstrap")


def bootstrap_access(settings: Settings, access: AccessStore) -> None:
    org = settings.auth.default_organization
    access.ensure_organization(org, "Default organization", _SYSTEM)
    if settings.auth.admin_key is not None:
        if access.ensure_bootstrap_key(settings.auth.admin_key.get_secret_value(), org, _SYSTEM, replace=True):
            logger.info("the admin key is now the one COSTOPS_ADMIN_KEY sets", extra={"operation": "bootstrap"})
        return
    if access.has_bootstrap_key():
        return
    secret = new_api_key("live")
    if not access.ensure_bootstrap_key(secret, org, _SYSTEM, replace=False):
        return  # another API process created it first
    write_secret_file(settings.admin_key_file, secret)
    sys.stderr.write(
        f"\nLLM-CostOps admin key (shown once; also in {settings.admin_key_file}, mode 0600):\n  {secret}\n\n"
    )
    sys.stderr.flush()


def jwt_secret(settings: Settings) -> str:
    """``JWT_SECRET``, or a secret generated once into ``<data_dir>/jwt.secret``."""
    if settings.auth.jwt_secret is not None:
        return settings.auth.jwt_secret.get_secret_value()
    path = settings.data_dir / "jwt.secret"
    with contextlib.suppress(FileExistsError):  # another process wrote it first
        write_secret_file(path, new_token() + new_token(), exclusive=True)
    return path.read_text().strip()


def write_secret_file(path: Path, secret: str, *, exclusive: bool = False) -> None:
    """Write ``secret`` readable by its owner only (created 0600, never widened)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(secret + "\n")
    os.chmod(path, 0o600)
