"""What a request handler gets from the app: the service's state and the caller's ``Access``."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from airflow_aml.exceptions import AuthenticationError
from airflow_aml.service.access import Access
from airflow_aml.service.identity import Authenticator
from airflow_aml.store.base import AbstractStore
from airflow_aml.store.sql.tokens import SqlTokenStore


@dataclass
class ServiceState:
    store: AbstractStore  # the workspace's own store (SQL), unguarded: Access guards every call
    store_uri: str
    tokens: SqlTokenStore
    authenticator: Authenticator
    max_upload_bytes: int


def service_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.aml
    return state


async def get_access(request: Request) -> Access:
    """The caller, authenticated: 401 for a request without credentials (deny by default)."""
    state = service_state(request)
    identity = await state.authenticator(request)
    if identity is None:
        raise AuthenticationError("Authentication required: send 'Authorization: Bearer <token>'")
    return Access(state.store, state.store_uri, identity)
