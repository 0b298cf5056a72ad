"""Authenticating Airflow's signed-in user, for the service mounted inside Airflow's api-server.

The JWT is the one Airflow itself issues: ``Authorization: Bearer <jwt>`` (from ``POST
/auth/token``) or the ``_token`` cookie the Airflow UI sets. It is checked by Airflow's own
helper, ``airflow.api_fastapi.core_api.security.resolve_user_from_token``, the function behind
Airflow's ``get_user`` dependency: it asks the configured auth manager
(``get_user_from_token``), so the signature, audience, expiry, leeway, revocation (logout) and the
user's deserialization are exactly Airflow's, for whichever auth manager is configured (simple,
FAB, Keycloak...). No JWT is validated here.

``get_user`` itself is a FastAPI dependency (it needs its security schemes resolved), so the
choice between header and cookie is repeated here, in the same order: an explicit bearer token
wins over the ambient cookie.

The user maps to ``Identity(principal=<Airflow username>, kind=airflow)``: the workspace's role
table then decides what that principal may do, as for any other caller.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.requests import Request

from airflow_aml.exceptions import AuthenticationError
from airflow_aml.service.identity import Identity, IdentityKind
from airflow_aml.service.tokens import bearer_token


def airflow_token(request: Request) -> str | None:
    """The Airflow JWT a request carries: the bearer token, else the UI's cookie."""
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

    return bearer_token(request) or request.cookies.get(COOKIE_NAME_JWT_TOKEN) or None


async def airflow_authenticator(request: Request) -> Identity | None:
    """An ``Authenticator``: Airflow's signed-in user, None without a token, AuthenticationError
    for a token Airflow refuses (bad signature, expired, revoked)."""
    # Imported here: importing Airflow's security module pulls in its models and configuration,
    # which the service must not pay for (or fail on) when it runs standalone.
    from airflow.api_fastapi.core_api.security import resolve_user_from_token

    token = airflow_token(request)
    if token is None:
        return None
    try:
        user = await resolve_user_from_token(token)
    except HTTPException as refused:  # 401 "Token Expired", 403 "Invalid JWT token"
        raise AuthenticationError(f"Airflow refused the token: {refused.detail}") from None
    name = user.get_name()
    if not name:
        raise AuthenticationError("Airflow's token names no user")
    return Identity(principal=name, kind=IdentityKind.AIRFLOW)
