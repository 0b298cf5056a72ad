"""``airflow-aml token create/list/revoke``: personal access tokens of the workspace service.

Two places to act on, chosen by the store URI:

* the service's own database (``sqlite://`` / ``postgresql://``): the administrator's bootstrap.
  Whoever can open that database can mint a token for any principal, so ``--principal`` is named
  explicitly every time.
* a served workspace (``http(s)://`` with ``$AML_TOKEN``): the caller's own tokens, through the
  service's ``/tokens`` routes. The service never mints for another principal.

``token create`` prints the token alone on stdout (``TOKEN=$(airflow-aml token create ...)``);
everything meant for a human goes to stderr. No command ever prints a token's hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer

from airflow_aml.cli._app import AmlTyper
from airflow_aml.cli._common import JsonOption, fmt_time, info, print_json, print_table, state, want_json
from airflow_aml.exceptions import ValidationError
from airflow_aml.store import get_store
from airflow_aml.store.base import AbstractStore

token_app = AmlTyper(help="Personal access tokens of the workspace service.")

DEFAULT_EXPIRY_DAYS = 90  # the service's own default for POST /tokens

PrincipalOption = Annotated[
    str | None,
    typer.Option(
        "--principal",
        metavar="NAME",
        help="Whose tokens (required on the service's database; yourself over a service).",
    ),
]


@dataclass(frozen=True)
class TokenRow:
    """What a listing shows of a token: never the token, never its hash."""

    token_id: str
    name: str
    principal: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


def _is_served(store: AbstractStore) -> bool:
    return bool(getattr(store, "served", False))


def _sql_tokens(store: AbstractStore) -> Any:
    from airflow_aml.store.sql.store import SqlStore
    from airflow_aml.store.sql.tokens import SqlTokenStore

    if not isinstance(store, SqlStore):
        raise ValidationError(f"Tokens live in the service's SQL database, not in {store!r}")
    return SqlTokenStore(store.engine)


def _require_principal(principal: str | None) -> str:
    if not principal or not principal.strip():
        raise ValidationError(
            "--principal is required on the service's database (whose token is it?); over a served "
            "workspace (http:// store URI) the token's own principal is used"
        )
    return principal.strip()


def _check_self(store: Any, principal: str | None, action: str) -> str:
    """Over a service, the caller acts on their own tokens only: a different --principal is refused
    here, with the way to do it, instead of failing obscurely."""
    me = str(store.principal)
    if principal and principal.strip() != me:
        raise ValidationError(
            f"The workspace service lets {me!r} {action} only their own tokens, not those of {principal!r}; an "
            "administrator does that with --store-uri set to the service's database"
        )
    return me


def _from_api(item: dict[str, Any], principal: str) -> TokenRow:
    def when(key: str) -> datetime | None:
        value = item.get(key)
        return datetime.fromisoformat(value) if value else None

    created = when("created_at")
    assert created is not None
    return TokenRow(
        token_id=item["token_id"],
        name=item["name"],
        principal=principal,
        created_at=created,
        expires_at=when("expires_at"),
        last_used_at=when("last_used_at"),
        revoked_at=when("revoked_at"),
    )


def _from_record(record: Any) -> TokenRow:
    return TokenRow(
        token_id=record.token_id,
        name=record.name,
        principal=record.principal,
        created_at=record.created_at,
        expires_at=record.expires_at,
        last_used_at=record.last_used_at,
        revoked_at=record.revoked_at,
    )


@token_app.command("create")
def token_create(
    principal: PrincipalOption = None,
    name: Annotated[
        str | None, typer.Option("--name", metavar="LABEL", help="A label to recognise it by (default: 'cli').")
    ] = None,
    expires_in_days: Annotated[
        int | None,
        typer.Option(
            "--expires-in-days",
            metavar="DAYS",
            min=1,
            max=3650,
            help=f"Lifetime in days (default {DEFAULT_EXPIRY_DAYS}).",
        ),
    ] = None,
    no_expiry: Annotated[
        bool, typer.Option("--no-expiry", help="A token that never expires (revoke it by hand).")
    ] = False,
) -> None:
    """Create a personal access token and print it alone on stdout (it is shown once)."""
    if no_expiry and expires_in_days is not None:
        raise ValidationError("--expires-in-days and --no-expiry exclude each other")
    days = None if no_expiry else (expires_in_days or DEFAULT_EXPIRY_DAYS)
    label = (name or "cli").strip() or "cli"
    store = get_store(state().store_uri)
    if _is_served(store):
        import json

        owner = _check_self(store, principal, "create")
        answer = store.client.request(  # type: ignore[attr-defined]
            "POST",
            "/tokens",
            content=json.dumps({"name": label, "expires_in_days": days}).encode(),
            json_body=True,
        ).json()
        token, row = answer["token"], _from_api(answer["info"], owner)
    else:
        from airflow_aml.service.tokens import mint_personal_token

        owner = _require_principal(principal)
        token, record = mint_personal_token(
            _sql_tokens(store), owner, name=label, expires_in=timedelta(days=days) if days else None
        )
        row = _from_record(record)
    typer.echo(token)
    expiry = f"expires {fmt_time(row.expires_at)}" if row.expires_at else "never expires"
    info(
        f"Token {row.name!r} (id {row.token_id}) for {row.principal}, {expiry}. It is shown only once: "
        "keep it secret (use it as $AML_TOKEN)."
    )


@token_app.command("list")
def token_list(principal: PrincipalOption = None, json_output: JsonOption = False) -> None:
    """List personal access tokens (never the tokens themselves): yours over a service, everyone's
    or --principal's on the service's database."""
    store = get_store(state().store_uri)
    if _is_served(store):
        owner = _check_self(store, principal, "list")
        items = store.client.request("GET", "/tokens").json()["items"]  # type: ignore[attr-defined]
        rows = [_from_api(item, owner) for item in items]
    else:
        rows = [_from_record(r) for r in _sql_tokens(store).list_tokens(principal.strip() if principal else None)]
    if want_json(json_output):
        print_json(rows)
        return
    if not rows:
        info("No tokens; create one with: airflow-aml token create --principal NAME")
    print_table(
        "Personal access tokens",
        ["Id", "Name", "Principal", "Created", "Expires", "Last used", "Revoked"],
        [
            (
                r.token_id,
                r.name,
                r.principal,
                fmt_time(r.created_at),
                fmt_time(r.expires_at) or "never",
                fmt_time(r.last_used_at),
                fmt_time(r.revoked_at),
            )
            for r in rows
        ],
    )


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (from 'airflow-aml token list').")],
    principal: PrincipalOption = None,
) -> None:
    """Revoke a personal access token: the service answers 401 to it from then on."""
    store = get_store(state().store_uri)
    if _is_served(store):
        from urllib.parse import quote

        owner = _check_self(store, principal, "revoke")
        store.client.request("DELETE", f"/tokens/{quote(token_id, safe='')}")  # type: ignore[attr-defined]
    else:
        owner = _require_principal(principal)
        _sql_tokens(store).revoke_token(token_id, principal=owner)
    typer.echo(f"Token {token_id} of {owner} revoked")
