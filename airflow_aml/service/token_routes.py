"""Who am I, personal access tokens of the caller, and run tokens for a run being submitted."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from airflow_aml.entities import AccessTokenRecord
from airflow_aml.exceptions import AuthorizationError, ConflictError, SecretNotFoundError
from airflow_aml.roles import Action
from airflow_aml.service.access import Access, refuse_run_token
from airflow_aml.service.errors import ERROR_RESPONSES
from airflow_aml.service.requests import get_access, service_state
from airflow_aml.service.tokens import mint_personal_token, mint_run_token

AccessDep = Annotated[Access, Depends(get_access)]


class WhoAmI(BaseModel):
    principal: str
    kind: str
    run_id: str | None = None
    workspace: str | None = None


class TokenInfo(BaseModel):
    token_id: str
    name: str
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class TokenList(BaseModel):
    items: list[TokenInfo]
    next_cursor: str | None = None


class NewToken(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    expires_in_days: int | None = Field(default=90, ge=1, le=3650)


class CreatedToken(BaseModel):
    token: str  # shown once; the service keeps only its hash
    info: TokenInfo


class NewRunToken(BaseModel):
    secrets: list[str] = Field(default_factory=list, max_length=256)


class CreatedRunToken(BaseModel):
    token: str
    run_id: str
    expires_at: datetime | None = None


def _info(record: AccessTokenRecord) -> TokenInfo:
    return TokenInfo(token_id=record.token_id, name=record.name, created_at=record.created_at,
                     expires_at=record.expires_at, last_used_at=record.last_used_at, revoked_at=record.revoked_at)


def token_router() -> APIRouter:
    router = APIRouter(tags=["tokens"], responses=ERROR_RESPONSES)

    @router.get("/whoami", operation_id="whoami", response_model=WhoAmI)
    def whoami(access: AccessDep) -> WhoAmI:
        identity = access.identity
        return WhoAmI(principal=identity.principal, kind=identity.kind.value, run_id=identity.run_id,
                      workspace=identity.workspace)

    @router.get("/tokens", operation_id="list_tokens", response_model=TokenList)
    def list_tokens(request: Request, access: AccessDep) -> TokenList:
        """The caller's personal access tokens (never the tokens themselves)."""
        refuse_run_token(access, "list tokens")
        tokens = service_state(request).tokens.list_tokens(access.principal)
        return TokenList(items=[_info(record) for record in tokens])

    @router.post("/tokens", operation_id="create_token", response_model=CreatedToken)
    def create_token(request: Request, access: AccessDep, body: NewToken) -> CreatedToken:
        """A new personal access token for the caller."""
        refuse_run_token(access, "create tokens")
        expires = timedelta(days=body.expires_in_days) if body.expires_in_days else None
        token, record = mint_personal_token(service_state(request).tokens, access.principal, name=body.name,
                                            expires_in=expires)
        return CreatedToken(token=token, info=_info(record))

    @router.delete("/tokens/{token_id}", operation_id="revoke_token", status_code=204)
    def revoke_token(request: Request, access: AccessDep, token_id: str) -> Response:
        refuse_run_token(access, "revoke tokens")
        service_state(request).tokens.revoke_token(token_id, principal=access.principal)
        return Response(status_code=204)

    @router.post("/runs/{run_id}/tokens", operation_id="create_run_token", response_model=CreatedRunToken)
    def create_run_token(request: Request, access: AccessDep, run_id: str, body: NewRunToken) -> CreatedRunToken:
        """A token for the compute target of run ``run_id``: the submitter's rights on that run and
        its children only, and read access to the ``secrets`` named here (which needs
        read_secrets)."""
        refuse_run_token(access, "mint run tokens")
        run = access.store.get_run(run_id)
        context = access.context(run.workspace)
        context.store.get_run(run_id)  # the caller may read it
        context.require(Action.WRITE)
        if body.secrets:
            if not context.allows(Action.READ_SECRETS):
                raise AuthorizationError(context.refusal(Action.READ_SECRETS) + " (the run token names secrets)")
            known = set(context.vault.names())
            missing = sorted(set(body.secrets) - known)
            if missing:
                raise SecretNotFoundError(f"Secrets {missing} not found in workspace {run.workspace!r}")
        if run.status.is_terminal:
            raise ConflictError(f"Run {run_id!r} is {run.status.value}: no token for a run that ended")
        token, record = mint_run_token(service_state(request).tokens, principal=access.principal,
                                       workspace=run.workspace, run_id=run_id, secrets_allowed=body.secrets)
        return CreatedRunToken(token=token, run_id=run_id, expires_at=record.expires_at)

    return router
