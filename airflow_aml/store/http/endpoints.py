"""The workspace service's REST routes for the metadata store: one row per ``AbstractStore`` call.

This table is the single source of the store half of the API. The service builds its FastAPI
routes from it (``airflow_aml.service.store_routes``) and ``HttpStore`` builds its calls from it,
so a route and its client cannot drift apart. A test fails on a store method missing here.

Parameters travel by name: those in the path template go in the path, the rest in the query string
for GET/DELETE (scalars and lists of scalars only) or in a JSON body otherwise. Values are
(de)serialized with pydantic from the store method's own type hints, so records come back as the
very dataclasses of ``airflow_aml.entities``. A listing is paginated (``?limit=&cursor=``) and
answers ``{"items": [...], "next_cursor": ...}``.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import inspect
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model
from pydantic_core import PydanticSerializationError, to_json

from airflow_aml.exceptions import ValidationError
from airflow_aml.store.base import AbstractStore

API_PREFIX = "/api/v1"
T = TypeVar("T")
_PATH_PARAM = re.compile(r"{(\w+)(?::path)?}")


@dataclass(frozen=True)
class Endpoint:
    method: str  # the AbstractStore method
    verb: str
    path: str  # under API_PREFIX; {name} path parameters, named as the method's parameters
    # How the service finds the workspace the call acts on: a path parameter holding a workspace
    # name ("workspace"), or a run / activity id whose workspace it looks up ("run", "activity").
    scope: str = "workspace"
    # Parameters the service fills with the caller's principal, whatever the client sent: a
    # record says who created it, and nobody creates in another's name.
    principal_params: tuple[str, ...] = ()

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(_PATH_PARAM.findall(self.path))

    @property
    def has_body(self) -> bool:
        return self.verb not in ("GET", "DELETE")

    @functools.cached_property
    def parameters(self) -> dict[str, inspect.Parameter]:
        """The store method's parameters (without self), with resolved annotations."""
        function = getattr(AbstractStore, self.method)
        hints = typing.get_type_hints(function)
        signature = inspect.signature(function)
        return {
            name: parameter.replace(annotation=hints.get(name, Any))
            for name, parameter in list(signature.parameters.items())[1:]
        }

    @functools.cached_property
    def return_type(self) -> Any:
        return typing.get_type_hints(getattr(AbstractStore, self.method)).get("return")

    @property
    def is_listing(self) -> bool:
        return typing.get_origin(self.return_type) is list

    @property
    def item_type(self) -> Any:
        return typing.get_args(self.return_type)[0] if self.is_listing else self.return_type

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The call ``method(*args, **kwargs)`` as {parameter: value}, defaults applied."""
        function = getattr(AbstractStore, self.method)
        bound = inspect.signature(function).bind(None, *args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        values.pop("self")
        return values


@functools.cache
def adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


def _refuse_non_string_keys(value: Any, where: str = "value") -> None:
    """JSON objects have string keys: ``{1: "a"}`` would arrive as ``{"1": "a"}``. Refused here,
    as the SQL store refuses it, rather than changed on the way."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(
                    f"Value cannot be sent to the workspace service as JSON: key {key!r} in {where} is not a string"
                )
            _refuse_non_string_keys(item, where)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_non_string_keys(item, where)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = getattr(value, "name", None)
        label = f"{type(value).__name__} {name!r}" if isinstance(name, str) else type(value).__name__
        for field in dataclasses.fields(value):
            _refuse_non_string_keys(getattr(value, field.name), label)


def to_wire(value: Any) -> bytes:
    """``value`` (records, enums, datetimes, containers) as JSON. NaN and +-Infinity are written
    as Python's json module writes them (``NaN``, ``Infinity``): metric values and run
    configurations may hold them, and both ends parse them back exactly (standard JSON would turn
    them into null)."""
    _refuse_non_string_keys(value)
    try:
        return to_json(value, inf_nan_mode="constants")
    except PydanticSerializationError as exc:
        raise ValidationError(f"Value cannot be sent to the workspace service as JSON: {exc}") from None


def load(annotation: Any, data: Any) -> Any:
    """JSON data back into a value of the declared type (records are the entity dataclasses)."""
    return adapter(annotation).validate_python(data)


_WS = "/workspaces/{workspace}"
_RUN = "/runs/{run_id}"
_ACT = "/activities/{activity_id}"
_MODEL = _WS + "/models/{name}/versions/{version}"
_IMAGE = _WS + "/images/{name}/versions/{version}"

ENDPOINTS: tuple[Endpoint, ...] = (
    # workspaces
    Endpoint("create_workspace", "POST", "/workspaces", scope="system", principal_params=("created_by", "owner")),
    Endpoint("list_workspaces", "GET", "/workspaces", scope="system"),
    Endpoint("get_workspace", "GET", "/workspaces/{name}", scope="name"),
    Endpoint("set_default_datastore", "PUT", _WS + "/default-datastore"),
    # experiments
    Endpoint("get_or_create_experiment", "PUT", _WS + "/experiments/{name}"),
    Endpoint("get_experiment", "GET", _WS + "/experiments/{name}"),
    Endpoint("list_experiments", "GET", _WS + "/experiments"),
    # runs
    Endpoint("create_run", "POST", _WS + "/runs", principal_params=("submitted_by",)),
    Endpoint("search_runs", "POST", _WS + "/runs:search"),
    Endpoint("count_child_runs", "POST", _WS + "/runs:child-counts"),
    Endpoint("find_run_by_idempotency_key", "GET", _WS + "/runs-by-idempotency-key"),
    Endpoint("find_runs_without_heartbeat", "GET", _WS + "/runs-without-heartbeat"),
    Endpoint("get_run", "GET", _RUN, scope="run"),
    Endpoint("beat_run_heartbeat", "POST", _RUN + "/heartbeat", scope="run"),
    Endpoint("update_run_status", "PUT", _RUN + "/status", scope="run"),
    Endpoint("request_cancel", "POST", _RUN + "/cancel", scope="run"),
    Endpoint("set_snapshot", "PUT", _RUN + "/snapshot-sha256", scope="run"),
    Endpoint("set_run_tags", "PATCH", _RUN + "/tags", scope="run"),
    # POST: a DELETE has no body, and an empty list of keys cannot travel in a query string.
    Endpoint("delete_run_tags", "POST", _RUN + "/tags:delete", scope="run"),
    Endpoint("add_run_properties", "PATCH", _RUN + "/properties", scope="run"),
    Endpoint("log_params", "PATCH", _RUN + "/params", scope="run"),
    # metrics and logs
    Endpoint("log_batch", "POST", _RUN + "/metrics", scope="run"),
    Endpoint("log_metric", "POST", _RUN + "/metric", scope="run"),
    Endpoint("get_metrics", "GET", _RUN + "/metrics", scope="run"),
    Endpoint("get_latest_scalar_metrics", "POST", "/runs:latest-scalar-metrics", scope="runs"),
    Endpoint("get_latest_metrics", "POST", "/runs:latest-metrics", scope="runs"),
    Endpoint("append_log", "POST", _RUN + "/logs", scope="run"),
    Endpoint("read_log", "GET", _RUN + "/logs", scope="run"),
    # datastores and compute targets
    Endpoint("register_datastore", "PUT", _WS + "/datastores/{name}"),
    Endpoint("get_datastore", "GET", _WS + "/datastores/{name}"),
    Endpoint("list_datastores", "GET", _WS + "/datastores"),
    Endpoint("delete_datastore", "DELETE", _WS + "/datastores/{name}"),
    Endpoint("register_compute_target", "PUT", _WS + "/compute-targets/{name}"),
    Endpoint("get_compute_target", "GET", _WS + "/compute-targets/{name}"),
    Endpoint("list_compute_targets", "GET", _WS + "/compute-targets"),
    Endpoint("delete_compute_target", "DELETE", _WS + "/compute-targets/{name}"),
    # roles
    Endpoint("assign_role", "PUT", _WS + "/roles/{principal}"),
    Endpoint("remove_role", "DELETE", _WS + "/roles/{principal}"),
    Endpoint("get_role", "GET", _WS + "/roles/{principal}"),
    Endpoint("list_role_assignments", "GET", _WS + "/roles"),
    # secrets: only their names. Values are encrypted and decrypted by the service and travel
    # through the vault routes (airflow_aml.service.secret_routes), never as store calls.
    Endpoint("list_secret_names", "GET", _WS + "/secrets"),
    # activities
    Endpoint("create_activity", "POST", _WS + "/activities"),
    Endpoint("list_activities", "GET", _WS + "/activities"),
    Endpoint("get_activity", "GET", _ACT, scope="activity"),
    Endpoint("update_activity", "PATCH", _ACT, scope="activity"),
    # model registry
    Endpoint("create_model_version", "POST", _WS + "/models/{name}/versions", principal_params=("created_by",)),
    Endpoint("get_model_version", "GET", _WS + "/models/{name}"),
    Endpoint("search_models", "POST", _WS + "/models:search"),
    Endpoint("set_model_tags", "PATCH", _MODEL + "/tags"),
    Endpoint("delete_model_version", "DELETE", _MODEL),
    # image registry
    Endpoint("create_image_version", "POST", _WS + "/images/{name}/versions", principal_params=("created_by",)),
    Endpoint("update_image", "PATCH", _IMAGE),
    Endpoint("get_image", "GET", _WS + "/images/{name}"),
    Endpoint("search_images", "POST", _WS + "/images:search"),
    Endpoint("set_image_tags", "PATCH", _IMAGE + "/tags"),
    Endpoint("delete_image_version", "DELETE", _IMAGE),
    # deployments
    Endpoint("create_deployment", "POST", _WS + "/deployments/{name}", principal_params=("created_by",)),
    Endpoint("update_deployment", "PATCH", _WS + "/deployments/{name}"),
    Endpoint("get_deployment", "GET", _WS + "/deployments/{name}"),
    Endpoint("search_deployments", "POST", _WS + "/deployments:search"),
    Endpoint("delete_deployment", "DELETE", _WS + "/deployments/{name}"),
)

BY_METHOD: dict[str, Endpoint] = {endpoint.method: endpoint for endpoint in ENDPOINTS}

# Store calls that are not routes, and why.
NOT_SERVED: dict[str, str] = {
    "put_secret": "secret values are encrypted by the service: PUT .../secrets/{name} with the value",
    "get_secret": "secret values are decrypted by the service: GET .../secrets/{name}",
    "delete_secret": "DELETE .../secrets/{name}",
    "close": "a client's own connection pool",
}


# ---------------------------------------------------------------------------- wire models
class Page(BaseModel, Generic[T]):
    """One page of a listing; ``next_cursor`` is null on the last page."""

    items: list[T]
    next_cursor: str | None = None


def query_annotation(annotation: Any) -> Any:
    """A query-string parameter's type: sequences become lists (repeated ``?name=a&name=b``)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (collections.abc.Sequence, list, tuple):
        return list[args[0]]  # type: ignore[valid-type]
    if args and type(None) in args:
        inner = [arg for arg in args if arg is not type(None)]
        if len(inner) == 1 and typing.get_origin(inner[0]) in (collections.abc.Sequence, list, tuple):
            return list[typing.get_args(inner[0])[0]] | None  # type: ignore[valid-type]
    return annotation


@functools.cache
def body_model(method: str) -> type[BaseModel] | None:
    """The JSON body of a store call's route: its parameters but the path's and the principal's."""
    endpoint = BY_METHOD[method]
    if not endpoint.has_body:
        return None
    fields: dict[str, Any] = {}
    for name, parameter in endpoint.parameters.items():
        if name in endpoint.path_params or name in endpoint.principal_params:
            continue
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[name] = (parameter.annotation, default)
    if not fields:
        return None
    title = "".join(part.capitalize() for part in method.split("_")) + "Body"
    return create_model(title, __config__=ConfigDict(extra="forbid"), **fields)


def query_parameters(endpoint: Endpoint) -> dict[str, inspect.Parameter]:
    """The parameters a GET/DELETE route takes from the query string."""
    if endpoint.has_body:
        return {}
    return {name: parameter for name, parameter in endpoint.parameters.items()
            if name not in endpoint.path_params and name not in endpoint.principal_params}


def page_type(endpoint: Endpoint) -> Any:
    return Page[endpoint.item_type]  # type: ignore[name-defined]
