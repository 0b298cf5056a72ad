"""Personal access tokens and run tokens: minting, and authenticating a request with one.

A token is ``aml_pat_<random>`` or ``aml_run_<random>`` (256 random bits); the database keeps only
its SHA-256, so a stolen dump holds no credential. ``TokenAuthenticator`` reads
``Authorization: Bearer <token>`` and answers the ``Identity`` it stands for.

A run token acts for the run's submitter, only on that run and its children (see
``airflow_aml.service.access``), and only until the run ends plus ``RUN_TOKEN_GRACE`` for the
supervisor's last writes after the final status (the activity's end, the last log lines).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from starlette.requests import Request

from airflow_aml.entities import AccessTokenRecord
from airflow_aml.exceptions import AuthenticationError, NotFoundError
from airflow_aml.service.identity import Identity, IdentityKind
from airflow_aml.store.base import AbstractStore
from airflow_aml.store.sql.tokens import SqlTokenStore

PERSONAL_PREFIX = "aml_pat_"
RUN_PREFIX = "aml_run_"
RUN_TOKEN_GRACE = timedelta(minutes=5)
RUN_TOKEN_LIFETIME = timedelta(days=7)  # a run's longest credible life; ends with the run anyway
_TOUCH_EVERY_SECONDS = 60.0  # last_used_at is a write: at most once a minute per token and process


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def mint_personal_token(
    tokens: SqlTokenStore, principal: str, *, name: str, expires_in: timedelta | None,
) -> tuple[str, AccessTokenRecord]:
    """A new personal access token for ``principal``: (the token, shown once; its record)."""
    token = _new_token(PERSONAL_PREFIX)
    expires_at = datetime.now(UTC) + expires_in if expires_in else None
    record = tokens.create_token(kind=IdentityKind.PERSONAL.value, principal=principal, name=name,
                                 token_hash=hash_token(token), expires_at=expires_at)
    return token, record


def mint_run_token(
    tokens: SqlTokenStore, *, principal: str, workspace: str, run_id: str, secrets_allowed: Sequence[str] = (),
) -> tuple[str, AccessTokenRecord]:
    token = _new_token(RUN_PREFIX)
    record = tokens.create_token(
        kind=IdentityKind.RUN.value, principal=principal, name=f"run {run_id}", token_hash=hash_token(token),
        expires_at=datetime.now(UTC) + RUN_TOKEN_LIFETIME, run_id=run_id, workspace=workspace,
        secrets=secrets_allowed,
    )
    return token, record


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class TokenAuthenticator:
    """Authenticates ``Authorization: Bearer`` personal and run tokens against the token table."""

    def __init__(self, tokens: SqlTokenStore, store: AbstractStore) -> None:
        self._tokens = tokens
        self._store = store
        self._touched: dict[str, float] = {}

    async def __call__(self, request: Request) -> Identity | None:
        token = bearer_token(request)
        if token is None:
            return None
        # The lookup is a blocking database read: off the event loop.
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(self.identify, token)

    def identify(self, token: str) -> Identity:
        if not token.startswith((PERSONAL_PREFIX, RUN_PREFIX)):
            raise AuthenticationError("Not an airflow-aml token (expected aml_pat_... or aml_run_...)")
        record = self._tokens.find_token(hash_token(token))
        now = datetime.now(UTC)
        if record is None:
            raise AuthenticationError("Unknown token")
        if record.revoked_at is not None:
            raise AuthenticationError(f"Token {record.name!r} was revoked")
        if record.expires_at is not None and now >= record.expires_at:
            raise AuthenticationError(f"Token {record.name!r} expired at {record.expires_at.isoformat()}")
        if record.kind == IdentityKind.RUN.value:
            self._check_run_alive(record, now)
        self._touch(record, now)
        return Identity(
            principal=record.principal, kind=IdentityKind(record.kind), token_id=record.token_id,
            run_id=record.run_id, workspace=record.workspace, secrets=frozenset(record.secrets),
        )

    def _check_run_alive(self, record: AccessTokenRecord, now: datetime) -> None:
        assert record.run_id is not None
        try:
            run = self._store.get_run(record.run_id)
        except NotFoundError:
            raise AuthenticationError(f"The run of token {record.name!r} no longer exists") from None
        if run.status.is_terminal and run.end_time is not None and now - run.end_time > RUN_TOKEN_GRACE:
            raise AuthenticationError(
                f"Run {run.run_id!r} ended ({run.status.value}) at {run.end_time.isoformat()}: "
                "its token is no longer valid"
            )

    def _touch(self, record: AccessTokenRecord, now: datetime) -> None:
        last = self._touched.get(record.token_id, 0.0)
        if time.monotonic() - last < _TOUCH_EVERY_SECONDS:
            return
        self._touched[record.token_id] = time.monotonic()
        self._tokens.touch_token(record.token_id, now)
