"""Access tokens of the workspace service (personal and run tokens), by the SHA-256 of the token.

Not part of ``AbstractStore``: only the service that owns the database authenticates with it;
clients of the service never see another principal's tokens, nor any token's hash.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from airflow_aml.entities import AccessTokenRecord
from airflow_aml.exceptions import NotFoundError
from airflow_aml.store.sql.core import SqlCore, utcnow
from airflow_aml.store.sql.tables import AccessTokenRow


def _record(row: AccessTokenRow) -> AccessTokenRecord:
    return AccessTokenRecord(
        token_id=row.token_id, kind=row.kind, principal=row.principal, name=row.name,
        created_at=row.created_at, expires_at=row.expires_at, last_used_at=row.last_used_at,
        revoked_at=row.revoked_at, run_id=row.run_id, workspace=row.workspace, secrets=tuple(row.secrets or ()),
    )


class SqlTokenStore(SqlCore):
    def create_token(
        self, *, kind: str, principal: str, name: str, token_hash: str, expires_at: datetime | None,
        run_id: str | None = None, workspace: str | None = None, secrets: Sequence[str] = (),
    ) -> AccessTokenRecord:
        row = AccessTokenRow(
            token_id=uuid.uuid4().hex, token_hash=token_hash, kind=kind, principal=principal, name=name,
            created_at=utcnow(), expires_at=expires_at, last_used_at=None, revoked_at=None,
            run_id=run_id, workspace=workspace, secrets=sorted(set(secrets)),
        )

        def tx(session: Session) -> AccessTokenRecord:
            session.add(row)
            session.flush()
            return _record(row)

        return self._write(tx)

    def find_token(self, token_hash: str) -> AccessTokenRecord | None:
        def tx(session: Session) -> AccessTokenRecord | None:
            row = session.scalars(select(AccessTokenRow).where(AccessTokenRow.token_hash == token_hash)).first()
            return _record(row) if row is not None else None

        return self._read(tx)

    def list_tokens(self, principal: str | None, *, kind: str = "personal") -> list[AccessTokenRecord]:
        """``principal``'s tokens of ``kind``; every principal's for ``None`` (the administrator's
        ``airflow-aml token list`` on the service's database; the service itself always names one)."""

        def tx(session: Session) -> list[AccessTokenRecord]:
            query = select(AccessTokenRow).where(AccessTokenRow.kind == kind)
            if principal is not None:
                query = query.where(AccessTokenRow.principal == principal)
            rows = session.scalars(
                query.order_by(AccessTokenRow.created_at, AccessTokenRow.token_id)
            )
            return [_record(row) for row in rows]

        return self._read(tx)

    def revoke_token(self, token_id: str, *, principal: str) -> AccessTokenRecord:
        """Revoke one of ``principal``'s tokens (revoking twice keeps the first time)."""

        def tx(session: Session) -> AccessTokenRecord:
            row = session.get(AccessTokenRow, token_id)
            if row is None or row.principal != principal:
                raise NotFoundError(f"Token {token_id!r} not found for principal {principal!r}")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return _record(row)

        return self._write(tx)

    def revoke_run_tokens(self, run_id: str) -> int:
        """Revoke every token of run ``run_id``; how many were still live."""

        def tx(session: Session) -> int:
            result = session.execute(
                update(AccessTokenRow)
                .where(AccessTokenRow.run_id == run_id, AccessTokenRow.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

        return self._write(tx)

    def touch_token(self, token_id: str, at: datetime) -> None:
        def tx(session: Session) -> None:
            session.execute(update(AccessTokenRow).where(AccessTokenRow.token_id == token_id).values(last_used_at=at))

        self._write(tx)
