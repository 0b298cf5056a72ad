"""The metadata-store routes of the service, built from the one table in
``airflow_aml.store.http.endpoints``: a route per store call, authorized per request.

A handler authenticates the caller (``Access``), lets a run token's scope refuse what it may not
do, finds the workspace the call acts on, and makes the call through that workspace's
``GuardedStore`` (the role table of ``roles.STORE_ACTIONS``). Answers are the entity records as
JSON; listings are paginated with an opaque cursor.
"""

from __future__ import annotations

import base64
import dataclasses
import inspect
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, cast

from fastapi import APIRouter, Body, Depends, Query
from fastapi import Path as PathParam
from starlette.responses import Response

from airflow_aml import config
from airflow_aml.context import DEFAULT_DATASTORE, GuardedStore
from airflow_aml.entities import RunQuery
from airflow_aml.exceptions import AuthorizationError, ValidationError
from airflow_aml.names import validate_name
from airflow_aml.service.access import Access, refuse_run_token, workspaces_visible
from airflow_aml.service.errors import ERROR_RESPONSES
from airflow_aml.service.requests import get_access
from airflow_aml.store.http.endpoints import (
    ENDPOINTS,
    Endpoint,
    body_model,
    page_type,
    query_annotation,
    query_parameters,
    to_wire,
)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

AccessDep = Annotated[Access, Depends(get_access)]
ENDPOINTS_BY_METHOD = {endpoint.method: endpoint for endpoint in ENDPOINTS}


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        offset = json.loads(base64.urlsafe_b64decode(padded.encode()))["offset"]
    except (ValueError, KeyError, TypeError):
        raise ValidationError(f"Invalid cursor {cursor!r}: pass next_cursor of the previous page") from None
    if not isinstance(offset, int) or offset < 0:
        raise ValidationError(f"Invalid cursor {cursor!r}: pass next_cursor of the previous page")
    return offset


def call_store(endpoint: Endpoint, access: Access, arguments: dict[str, Any]) -> Any:
    """Make the store call of ``endpoint`` for the caller, authorized."""
    for name in endpoint.principal_params:
        arguments[name] = access.principal
    access.check_store_call(endpoint.method, arguments)
    if endpoint.method == "create_workspace":
        return _create_workspace(access, arguments)
    if endpoint.method == "list_workspaces":
        records = access.store.list_workspaces()
        visible = set(workspaces_visible(access, [record.name for record in records]))
        return [record for record in records if record.name in visible]
    workspace, looked_up = _workspace_of(endpoint, access, arguments)
    if workspace is None:  # get_latest_(scalar_)metrics of no runs
        return {}
    if endpoint.method == "register_datastore" and arguments.get("kind") == "local":
        arguments["config"] = confine_local_datastore(workspace, dict(arguments.get("config") or {}))
    store = access.context(workspace).store
    if looked_up is not None:
        # The guard checks that the run / activity is of this workspace: it was just read, so the
        # guard need not read it again (one query less on every run-scoped call, log_batch too).
        cast(GuardedStore, store).remember(looked_up)
    return getattr(store, endpoint.method)(**arguments)


def confine_local_datastore(workspace: str, settings: dict[str, Any]) -> dict[str, Any]:
    """A served workspace's local datastore is a folder of the service's machine, so it must stay
    inside the service's folder for that workspace: any principal may create a workspace (and is
    its Owner), and a datastore rooted at ``/`` would let it read the service's database and
    ``secret.key``, or another workspace's files. A relative root is taken inside that folder."""
    base = config.default_datastore_root(workspace, "").resolve()
    root = Path(str(settings.get("root") or ""))
    resolved = (root if root.is_absolute() else base / root).resolve()
    if resolved != base and not resolved.is_relative_to(base):
        raise AuthorizationError(
            f"A local datastore of served workspace {workspace!r} must lie under {str(base)!r}, "
            f"not {str(resolved)!r}: the service's other files are not the workspace's"
        )
    return {**settings, "root": str(resolved)}


def _workspace_of(endpoint: Endpoint, access: Access, arguments: dict[str, Any]) -> tuple[str | None, Any]:
    """The workspace the call acts on, and the run or activity record read to find it (if any)."""
    if endpoint.scope == "workspace":
        return str(arguments["workspace"]), None
    if endpoint.scope == "name":
        return str(arguments["name"]), None
    if endpoint.scope in ("run", "runs"):
        run_ids = [arguments["run_id"]] if endpoint.scope == "run" else list(arguments.get("run_ids") or ())
        if not run_ids:
            return None, None
        run = access.store.get_run(str(run_ids[0]))
        return run.workspace, run
    if endpoint.scope == "activity":
        activity = access.store.get_activity(str(arguments["activity_id"]))
        return activity.workspace, activity
    raise AssertionError(f"unknown scope {endpoint.scope!r}")


def _create_workspace(access: Access, arguments: dict[str, Any]) -> Any:
    """Any signed-in principal may create a workspace, and becomes its Owner. Its default
    datastore is a folder of the service's machine: a client's local path means nothing here."""
    refuse_run_token(access, "create a workspace")
    name = str(arguments["name"])
    validate_name("workspace", name)
    datastore, default = arguments.get("datastore"), arguments.get("default_datastore") or ""
    if default:
        validate_name("datastore", default)
    if datastore is not None and not (
        set(datastore) == {"kind", "config"} and isinstance(datastore["kind"], str)
        and isinstance(datastore["config"], Mapping)
    ):
        # The store reads these keys as given: a client's malformed mapping is its error, not a 500.
        raise ValidationError('datastore must be {"kind": <str>, "config": {...}}')
    if datastore is not None and datastore.get("kind") == "local":
        root = Path(config.default_datastore_root(name, default or DEFAULT_DATASTORE))
        arguments["datastore"] = {"kind": "local", "config": {"root": str(root.resolve())}}
    return access.store.create_workspace(**arguments)


def _search_page(access: Access, arguments: dict[str, Any], cursor: str | None, limit: int) -> Response:
    """One page of a run search, read by the database: the cursor's offset and the page size go
    into the query (one more run than the page, to know whether another page follows), so page
    400 of 20,000 runs costs what page 1 does instead of loading every match to slice it."""
    position = decode_cursor(cursor)
    query = arguments.get("query") or RunQuery()
    if (query.max_results or 0) < 0 or query.offset < 0:
        call_store(ENDPOINTS_BY_METHOD["search_runs"], access, arguments)  # the store's own refusal
    wanted = limit if query.max_results is None else max(0, min(limit, query.max_results - position))
    further = query.max_results is None or position + wanted < query.max_results
    page_query = dataclasses.replace(
        query, offset=query.offset + position, max_results=wanted + 1 if further else wanted,
    )
    found = call_store(ENDPOINTS_BY_METHOD["search_runs"], access, {**arguments, "query": page_query})
    more = len(found) > wanted
    return _json({"items": found[:wanted], "next_cursor": encode_cursor(position + wanted) if more else None})


def _json(value: Any) -> Response:
    return Response(to_wire(value), media_type="application/json")


def _handler(endpoint: Endpoint) -> Callable[..., Response]:
    model = body_model(endpoint.method)
    queries = query_parameters(endpoint)
    listing = endpoint.is_listing

    def handler(access: Access, **kwargs: Any) -> Response:
        arguments = {name: kwargs[name] for name in endpoint.path_params}
        arguments.update({name: kwargs[name] for name in queries})
        body = kwargs.get("body")
        if body is not None:
            arguments.update({name: getattr(body, name) for name in type(body).model_fields})
        if endpoint.method == "search_runs":
            return _search_page(access, arguments, kwargs.get("cursor"), kwargs["limit"])
        result = call_store(endpoint, access, arguments)
        if listing:
            offset, limit = decode_cursor(kwargs.get("cursor")), kwargs["limit"]
            items = result[offset : offset + limit]
            more = offset + limit < len(result)
            # A plain dict, not the Page model: a model would write NaN as null (its own config).
            return _json({"items": items, "next_cursor": encode_cursor(offset + limit) if more else None})
        if endpoint.return_type is type(None) or endpoint.return_type is None:
            return Response(status_code=204)
        return _json(result)

    parameters = [inspect.Parameter("access", inspect.Parameter.KEYWORD_ONLY, annotation=AccessDep)]
    for name in endpoint.path_params:
        annotation = endpoint.parameters[name].annotation
        parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                            annotation=Annotated[annotation, PathParam()]))
    for name, parameter in queries.items():
        default = None if parameter.default is inspect.Parameter.empty else parameter.default
        required = parameter.default is inspect.Parameter.empty
        parameters.append(inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[query_annotation(parameter.annotation), Query()],
            **({} if required else {"default": default}),
        ))
    if model is not None:
        parameters.append(inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY,
                                            annotation=Annotated[model, Body()]))
    if listing:
        parameters.append(inspect.Parameter(
            "limit", inspect.Parameter.KEYWORD_ONLY, default=DEFAULT_PAGE_SIZE,
            annotation=Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]))
        parameters.append(inspect.Parameter(
            "cursor", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[str | None, Query()]))
    # Required keyword-only parameters may follow optional ones; FastAPI reads names and
    # annotations only.
    handler.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    handler.__name__ = endpoint.method
    return handler


def store_router() -> APIRouter:
    router = APIRouter()
    for endpoint in ENDPOINTS:
        returns_nothing = endpoint.return_type is type(None) or endpoint.return_type is None
        router.add_api_route(
            endpoint.path, _handler(endpoint), methods=[endpoint.verb], name=endpoint.method,
            operation_id=endpoint.method, summary=endpoint.method.replace("_", " ").capitalize(),
            description=inspect.getdoc(getattr(_abstract(), endpoint.method)) or "",
            response_model=None if returns_nothing else (page_type(endpoint) if endpoint.is_listing
                                                         else endpoint.return_type),
            status_code=204 if returns_nothing else 200,
            responses=ERROR_RESPONSES, tags=[_tag(endpoint)],
        )
    return router


def _abstract() -> type:
    from airflow_aml.store.base import AbstractStore

    return AbstractStore


def _tag(endpoint: Endpoint) -> str:
    parts = [part for part in endpoint.path.split("/") if part and not part.startswith("{")]
    return parts[-1].split(":")[0] if len(parts) == 1 else parts[1].split(":")[0] if len(parts) > 1 else "workspaces"
