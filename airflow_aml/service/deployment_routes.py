"""A web service's operations the store routes cannot make: its keys, its regeneration and its
recent logs. They go through the ``Deployment`` lifecycle (the keys live in the workspace's
secrets, regenerating rewrites the replicas' config and waits until the old key is refused; the
logs are files of the supervisor's folder on this machine).

Each route checks the caller's role before it looks the deployment up, so that a Reader learns
nothing from a refusal: keys need ``read_secrets`` (Owner, Contributor), regenerating ``write``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from airflow_aml.deployments import Deployment
from airflow_aml.roles import Action
from airflow_aml.service.access import Access, refuse_run_token
from airflow_aml.service.errors import ERROR_RESPONSES
from airflow_aml.service.requests import get_access

_DEPLOYMENT = "/workspaces/{workspace}/deployments/{name}"
MAX_LOG_LINES = 5000

AccessDep = Annotated[Access, Depends(get_access)]


class DeploymentKeys(BaseModel):
    primary: str
    secondary: str


class RegeneratedKey(BaseModel):
    which: str
    key: str


class DeploymentLogs(BaseModel):
    name: str
    text: str


def deployment_router() -> APIRouter:
    router = APIRouter(tags=["deployments"], responses=ERROR_RESPONSES)

    @router.get(_DEPLOYMENT + "/keys", operation_id="get_deployment_keys", response_model=DeploymentKeys)
    def get_keys(access: AccessDep, workspace: str, name: str) -> DeploymentKeys:
        """The two scoring keys (Owner, Contributor)."""
        refuse_run_token(access, "read deployment keys")  # a script's run token reads only its named secrets
        ctx = access.context(workspace)
        ctx.require(Action.READ_SECRETS)
        primary, secondary = Deployment.get(ctx, name).get_keys()
        return DeploymentKeys(primary=primary, secondary=secondary)

    @router.post(_DEPLOYMENT + "/keys/{which}:regenerate", operation_id="regenerate_deployment_key",
                 response_model=RegeneratedKey)
    def regenerate_key(access: AccessDep, workspace: str, name: str,
                       which: Literal["primary", "secondary"]) -> RegeneratedKey:
        """Replace one key; the old one is refused once this answers (Owner, Contributor)."""
        refuse_run_token(access, "regenerate deployment keys")
        ctx = access.context(workspace)
        ctx.require(Action.WRITE)
        return RegeneratedKey(which=which, key=Deployment.get(ctx, name).regenerate_key(which))

    @router.get(_DEPLOYMENT + "/logs", operation_id="get_deployment_logs", response_model=DeploymentLogs)
    def get_logs(access: AccessDep, workspace: str, name: str,
                 tail: Annotated[int, Query(ge=1, le=MAX_LOG_LINES)] = 200) -> DeploymentLogs:
        """The supervisor's and each replica's log, last ``tail`` lines of each (any role)."""
        refuse_run_token(access, "read deployment logs")  # the UI's call, not a training script's
        ctx = access.context(workspace)
        ctx.require(Action.READ)
        return DeploymentLogs(name=name, text=Deployment.get(ctx, name).get_logs(tail=tail))

    return router
