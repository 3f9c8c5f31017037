"""Secrets and their hashes: API keys (SHA-256, as the seeds store them), passwords (scrypt),
refresh tokens. Only hashes are ever stored; comparisons are constant-time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

KEY_PREFIXES = {"live": "sk_live_", "test": "sk_test_"}
SHOWN_PREFIX = 12
"""Characters of a key kept in clear (``sk_live_AbCd``), to recognise it in a list."""

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def new_api_key(environment: str) -> str:
    """A fresh key: ``sk_live_`` or ``sk_test_`` and 256 random bits."""
    return KEY_PREFIXES[environment] + secrets.token_urlsafe(32)


def looks_like_api_key(value: str) -> bool:
    return value.startswith("sk_")


def sha256_hex(secret: str) -> str:
    """The stored form of an API key or refresh token (high-entropy secrets: no salt needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str | None) -> bool:
    """True if ``password`` matches ``stored``. Without a stored hash (unknown user) the work
    is done anyway, so the answer takes as long either way."""
    if stored is None:
        hash_password(password)
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, _unb64(digest))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
