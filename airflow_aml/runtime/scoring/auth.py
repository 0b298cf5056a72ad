"""Key authentication, as Azure ML endpoints do it: ``Authorization: Bearer <key>``.

A service has a primary and a secondary key so that clients can move to a new key while the
other still works. Only the keys' SHA-256 hashes are stored (in the config file); a request's key
is hashed and compared to both in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from airflow_aml.runtime.scoring.config import ScoringConfig
from airflow_aml.runtime.scoring.errors import HttpError

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def generate_key() -> str:
    """A new random key (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The SHA-256 hex digest of ``key``: what the config stores instead of the key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def check_authorization(header: str | None, config: ScoringConfig) -> None:
    """Raise a 401 ``HttpError`` unless ``header`` carries the primary or the secondary key."""
    if not config.auth_enabled:
        return
    if not header:
        raise HttpError(401, "Missing 'Authorization: Bearer <key>' header", "Unauthorized", _CHALLENGE)
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise HttpError(401, "The Authorization header must be 'Bearer <key>'", "Unauthorized", _CHALLENGE)
    digest = hash_key(key).encode("ascii")
    # Both comparisons always run (| not or), so the time taken tells nothing about which key
    # matched; an unset key hash compares against a value no digest can equal.
    primary = hmac.compare_digest(digest, (config.primary_key_hash or "-").encode("ascii"))
    secondary = hmac.compare_digest(digest, (config.secondary_key_hash or "-").encode("ascii"))
    if not (primary | secondary):
        raise HttpError(401, "Invalid key", "Unauthorized", _CHALLENGE)
