"""Secret values through the service: the service encrypts and decrypts them with its own key;
clients never hold the key nor see ciphertext. Names are listed by ``GET .../secrets`` (a store
route); a value only ever leaves in the answer to its explicit read, which needs Contributor
(``read_secrets``) or a run token minted with the secret's name."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from starlette.responses import Response

from airflow_aml.service.access import Access, refuse_run_token
from airflow_aml.service.errors import ERROR_RESPONSES
from airflow_aml.service.requests import get_access

_SECRET = "/workspaces/{workspace}/secrets/{name}"
MAX_SECRET_BYTES = 64 * 1024

AccessDep = Annotated[Access, Depends(get_access)]


class SecretValue(BaseModel):
    value: str = Field(max_length=MAX_SECRET_BYTES)


class SecretAnswer(BaseModel):
    name: str
    value: str


def secret_router() -> APIRouter:
    router = APIRouter(tags=["secrets"], responses=ERROR_RESPONSES)

    @router.put(_SECRET, operation_id="set_secret", status_code=204)
    def set_secret(access: AccessDep, workspace: str, name: str, body: SecretValue) -> Response:
        """Set a secret (Owner; a web service's keys: whoever may deploy)."""
        refuse_run_token(access, "set secrets")
        access.context(workspace).vault.set(name, body.value)
        return Response(status_code=204)

    @router.get(_SECRET, operation_id="get_secret", response_model=SecretAnswer)
    def get_secret(access: AccessDep, workspace: str, name: str) -> SecretAnswer:
        """A secret's value (Contributor or Owner, or a run token minted with its name)."""
        access.require_secret(name)
        return SecretAnswer(name=name, value=access.context(workspace).vault.get(name))

    @router.delete(_SECRET, operation_id="delete_secret", status_code=204)
    def delete_secret(access: AccessDep, workspace: str, name: str) -> Response:
        refuse_run_token(access, "delete secrets")
        access.context(workspace).vault.delete(name)
        return Response(status_code=204)

    return router
