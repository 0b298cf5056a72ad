"""The Airflow authenticator against tokens from Airflow's own generator (the configured auth
manager's ``generate_jwt``), through a tiny FastAPI app: what the service sees of a request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from airflow_aml.exceptions import AuthenticationError
from airflow_aml.service.airflow_auth import airflow_authenticator
from airflow_aml.service.identity import IdentityKind

SECRET = "test-jwt-secret-" + "0123456789abcdef" * 5  # >= 64 bytes: HS512 warns below


@pytest.fixture
def auth_manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    # A fixed secret: otherwise Airflow generates one (with a warning) on first use.
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", SECRET)
    from airflow.api_fastapi.app import create_auth_manager, purge_cached_app

    manager = create_auth_manager()
    # get_user_from_token checks Airflow's revoked_token table (logout): the one table it needs
    # from Airflow's metadata database, created in this session's throw-away AIRFLOW_HOME.
    from airflow import settings
    from airflow.models.revoked_token import RevokedToken

    RevokedToken.__table__.create(settings.engine, checkfirst=True)
    type(manager)._get_token_validator.cache_clear()  # cached per class: built with this secret
    yield manager
    type(manager)._get_token_validator.cache_clear()
    purge_cached_app()


def _token(manager: object, username: str = "alice", *, valid_for: int = 300) -> str:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return manager.generate_jwt(  # type: ignore[attr-defined]
        SimpleAuthManagerUser(username=username, role="VIEWER"), expiration_time_in_seconds=valid_for,
    )


@pytest.fixture
def client(auth_manager: object) -> TestClient:
    app = FastAPI()

    @app.get("/whoami")
    async def whoami(request: Request) -> JSONResponse:
        try:
            identity = await airflow_authenticator(request)
        except AuthenticationError as refused:
            return JSONResponse({"refused": str(refused)}, status_code=401)
        if identity is None:
            return JSONResponse({"anonymous": True}, status_code=401)
        return JSONResponse({"principal": identity.principal, "kind": identity.kind.value})

    return TestClient(app)


def test_a_bearer_token_from_airflow_is_its_user(client: TestClient, auth_manager: object) -> None:
    answer = client.get("/whoami", headers={"Authorization": f"Bearer {_token(auth_manager)}"})
    assert answer.status_code == 200
    assert answer.json() == {"principal": "alice", "kind": IdentityKind.AIRFLOW.value}


def test_the_ui_cookie_is_accepted(client: TestClient, auth_manager: object) -> None:
    client.cookies.set("_token", _token(auth_manager, "bob"))
    assert client.get("/whoami").json()["principal"] == "bob"


def test_the_bearer_token_wins_over_the_cookie(client: TestClient, auth_manager: object) -> None:
    # Airflow's own order (get_user): an explicit credential before the ambient session.
    client.cookies.set("_token", _token(auth_manager, "bob"))
    answer = client.get("/whoami", headers={"Authorization": f"Bearer {_token(auth_manager, 'alice')}"})
    assert answer.json()["principal"] == "alice"


def test_no_token_is_no_identity(client: TestClient) -> None:
    answer = client.get("/whoami")
    assert answer.status_code == 401 and answer.json() == {"anonymous": True}


def test_a_forged_signature_is_refused(client: TestClient, auth_manager: object) -> None:
    header, payload, signature = _token(auth_manager).split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"
    answer = client.get("/whoami", headers={"Authorization": f"Bearer {forged}"})
    assert answer.status_code == 401 and "Invalid JWT token" in answer.json()["refused"]


def test_a_token_signed_with_another_key_is_refused(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import jwt

    other = jwt.encode({"sub": "mallory", "aud": "apache-airflow", "exp": 9999999999}, "another-secret" * 8,
                       algorithm="HS512")
    answer = client.get("/whoami", headers={"Authorization": f"Bearer {other}"})
    assert answer.status_code == 401 and "refused" in answer.json()


def test_an_expired_token_is_refused(client: TestClient, auth_manager: object,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_LEEWAY", "0")
    type(auth_manager)._get_token_validator.cache_clear()
    expired = _token(auth_manager, valid_for=-60)
    answer = client.get("/whoami", headers={"Authorization": f"Bearer {expired}"})
    assert answer.status_code == 401 and "Token Expired" in answer.json()["refused"]


def test_garbage_is_refused_not_crashed(client: TestClient) -> None:
    answer = client.get("/whoami", headers={"Authorization": "Bearer not-a-jwt"})
    assert answer.status_code == 401 and "refused" in answer.json()


def test_a_token_revoked_by_logout_is_refused(client: TestClient, auth_manager: object) -> None:
    # Airflow's logout records the token's jti in revoked_token; its helper honours that.
    from datetime import UTC, datetime, timedelta

    import jwt
    from airflow.models.revoked_token import RevokedToken

    token = _token(auth_manager, "carol")
    RevokedToken.revoke(jwt.decode(token, options={"verify_signature": False})["jti"],
                        datetime.now(UTC) + timedelta(minutes=5))
    answer = client.get("/whoami", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401 and "refused" in answer.json()
