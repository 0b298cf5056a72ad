"""One MLflow request as the handlers see it: the caller's ``Access``, the workspace the tracking
URI names, and the request's fields (the JSON body, or the query string of a GET, as MLflow's
client sends them); store calls go through the workspace's ``GuardedStore`` after the run-token
scope check, exactly as the service's own store routes make them."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from airflow_aml.service.access import Access
from airflow_aml.service.mlflow.errors import MlflowError, MlflowRoute
from airflow_aml.service.requests import get_access

# The tracking URI of a workspace is the service's URL + this (under the API prefix):
# mlflow.set_tracking_uri("http://host:8765/api/v1/workspaces/<ws>/mlflow").
MLFLOW_PREFIX = "/workspaces/{workspace}/mlflow"
REST_PREFIX = f"{MLFLOW_PREFIX}/api/2.0/mlflow"


async def request_fields(request: Request) -> dict[str, Any]:
    if request.method in ("GET", "DELETE"):
        return dict(request.query_params)
    body = await request.body()
    fields = json.loads(body) if body.strip() else {}
    if not isinstance(fields, dict):
        raise MlflowError("The request body must be a JSON object")
    return fields


@dataclass
class MlflowCall:
    access: Access
    workspace: str
    fields: dict[str, Any]

    def store_call(self, method: str, **arguments: Any) -> Any:
        self.access.check_store_call(method, arguments)
        return getattr(self.access.context(self.workspace).store, method)(**arguments)

    def text(self, name: str, *, default: str | None = None, alias: str | None = None) -> str:
        value = self.fields.get(name)
        if value is None and alias is not None:
            value = self.fields.get(alias)
        if value is None or value == "":
            if default is not None:
                return default
            raise MlflowError(f"Missing value for required parameter '{name}'")
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise MlflowError(f"Invalid value {value!r} for parameter '{name}': expected a string")
        return str(value)

    def integer(self, name: str, *, default: int | None = None) -> int | None:
        value = self.fields.get(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except (TypeError, ValueError):
            raise MlflowError(f"Invalid value {value!r} for parameter '{name}': expected an integer") from None

    def number(self, name: str) -> float:
        value = self.fields.get(name)
        if value is None:
            raise MlflowError(f"Missing value for required parameter '{name}'")
        try:
            return float(value)  # "NaN" / "Infinity" as protobuf's JSON writes them, too
        except (TypeError, ValueError):
            raise MlflowError(f"Invalid value {value!r} for parameter '{name}': expected a number") from None

    def items(self, name: str) -> list[Any]:
        value = self.fields.get(name) or []
        if not isinstance(value, list):
            raise MlflowError(f"Invalid value for parameter '{name}': expected a list")
        return value

    def run_id(self) -> str:
        return self.text("run_id", alias="run_uuid")


def key_values(entries: list[Any], what: str) -> dict[str, str]:
    """MLflow's ``[{"key": ..., "value": ...}]`` as a dict (values as strings, as MLflow keeps them)."""
    pairs: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str) or "value" not in entry:
            raise MlflowError(f"Invalid {what}: each needs a string 'key' and a 'value'")
        pairs[entry["key"]] = str(entry["value"])
    return pairs


def encode_page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_page_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError):
        raise MlflowError(f"Invalid page_token {token!r}") from None
    if not isinstance(offset, int) or offset < 0:
        raise MlflowError(f"Invalid page_token {token!r}")
    return offset


Handler = Callable[[MlflowCall], dict[str, Any]]


def _endpoint(handler: Handler) -> Callable[..., Response]:
    def endpoint(
        request: Request,
        workspace: str,
        access: Annotated[Access, Depends(get_access)],
        fields: Annotated[dict[str, Any], Depends(request_fields)],
    ) -> Response:
        # Path parameters (logged-models/{model_id}) are fields like the others.
        fields.update({key: value for key, value in request.path_params.items() if key != "workspace"})
        answer = handler(MlflowCall(access, workspace, fields))
        return Response(json.dumps(answer, allow_nan=False), media_type="application/json")

    endpoint.__name__ = handler.__name__
    return endpoint


def mlflow_routes(router: APIRouter, table: list[tuple[str, str, Handler]], prefix: str = REST_PREFIX) -> None:
    """Add ``(verb, path, handler)`` rows to ``router`` under the tracking URI's REST prefix. Not
    in the service's OpenAPI document: MLflow's protos define this API."""
    for verb, path, handler in table:
        router.add_api_route(f"{prefix}{path}", _endpoint(handler), methods=[verb], name=f"mlflow_{handler.__name__}",
                             include_in_schema=False, route_class_override=MlflowRoute)
