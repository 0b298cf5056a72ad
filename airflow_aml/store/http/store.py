"""``HttpStore``: the metadata store over the workspace service (``http://`` / ``https://`` URIs).

Every ``AbstractStore`` call is one request of the route table (``endpoints.py``), so the SDK,
the CLI and the operators work unchanged against a served workspace. The service authorizes each
call for the token's principal; this client only carries it. Secret values never travel as
ciphertext: ``get_secret_value`` / ``set_secret_value`` let the service decrypt and encrypt.

    get_store("http://:aml_pat_...@127.0.0.1:8765")      # or $AML_TOKEN / $AML_RUN_TOKEN
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from airflow_aml.exceptions import AmlError
from airflow_aml.store.base import AbstractStore
from airflow_aml.store.http.client import ServiceClient, split_uri
from airflow_aml.store.http.endpoints import (
    ENDPOINTS,
    Endpoint,
    adapter,
    body_model,
    page_type,
    query_annotation,
    query_parameters,
    to_wire,
)

PAGE_SIZE = 1000


def _segment(value: Any) -> str:
    return quote(str(value), safe="")


class HttpStore(AbstractStore):
    """The metadata store of a workspace served by ``airflow-aml service``."""

    served = True

    def __init__(self, uri: str, *, token: str | None = None, **client_options: Any) -> None:
        self.uri = split_uri(uri)[0]  # without the token
        self.client = ServiceClient(uri, token=token, **client_options)
        self._identity: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"HttpStore({self.uri!r})"

    @property
    def identity(self) -> dict[str, Any]:
        """Who the token is: ``{"principal", "kind", "run_id", "workspace"}`` (asked once)."""
        if self._identity is None:
            self._identity = self.client.request("GET", "/whoami").json()
        return self._identity

    @property
    def principal(self) -> str:
        return str(self.identity["principal"])

    # ------------------------------------------------------------------ secrets (values, not ciphertext)
    def set_secret_value(self, workspace: str, name: str, value: str) -> None:
        import json

        self.client.request("PUT", f"/workspaces/{_segment(workspace)}/secrets/{_segment(name)}",
                            content=json.dumps({"value": value}).encode(), json_body=True)

    def get_secret_value(self, workspace: str, name: str) -> str:
        answer = self.client.request("GET", f"/workspaces/{_segment(workspace)}/secrets/{_segment(name)}")
        return str(answer.json()["value"])

    def put_secret(self, workspace: str, name: str, ciphertext: bytes) -> None:
        raise AmlError("Secrets of a served workspace are encrypted by the service: use set_secret_value")

    def get_secret(self, workspace: str, name: str) -> bytes:
        raise AmlError("Secrets of a served workspace are decrypted by the service: use get_secret_value")

    def delete_secret(self, workspace: str, name: str) -> None:
        self.client.request("DELETE", f"/workspaces/{_segment(workspace)}/secrets/{_segment(name)}")

    def close(self) -> None:
        self.client.close()


def _is_empty_list(value: Any) -> bool:
    return isinstance(value, list | tuple) and not value


def _store_call(endpoint: Endpoint) -> Callable[..., Any]:
    model = body_model(endpoint.method)
    queries = query_parameters(endpoint)
    answer = adapter(page_type(endpoint) if endpoint.is_listing else endpoint.return_type)
    returns_nothing = endpoint.return_type is type(None) or endpoint.return_type is None
    query_adapters = {name: adapter(query_annotation(parameter.annotation)) for name, parameter in queries.items()}
    list_queries = [name for name, parameter in queries.items()
                    if "list" in str(query_annotation(parameter.annotation))]

    def call(self: HttpStore, *args: Any, **kwargs: Any) -> Any:
        values = endpoint.bind(args, kwargs)
        if any(_is_empty_list(values[name]) for name in list_queries) and endpoint.is_listing:
            # An empty filter list matches nothing; a query string cannot say "empty list"
            # (it would read as no filter at all).
            return []
        path = endpoint.path.format(**{name: _segment(values[name]) for name in endpoint.path_params})
        params: dict[str, Any] = {
            name: query_adapters[name].dump_python(values[name], mode="json")
            for name in queries if values[name] is not None
        }
        content = None
        if model is not None:
            # Validated by the service (one schema, one set of messages), not twice.
            content = to_wire({name: values[name] for name in model.model_fields})
        retry_post = bool(values.get("idempotency_key"))
        if not endpoint.is_listing:
            response = self.client.request(endpoint.verb, path, params=params, content=content,
                                           json_body=content is not None, retry_post=retry_post)
            return None if returns_nothing else answer.validate_json(response.content)
        items: list[Any] = []
        cursor: str | None = None
        while True:
            page_params = {**params, "limit": PAGE_SIZE, **({"cursor": cursor} if cursor else {})}
            response = self.client.request(endpoint.verb, path, params=page_params, content=content,
                                           json_body=content is not None, retry_post=retry_post)
            page = answer.validate_json(response.content)
            items.extend(page.items)
            cursor = page.next_cursor
            if not cursor:
                return items

    call.__name__ = endpoint.method
    call.__qualname__ = f"HttpStore.{endpoint.method}"
    call.__doc__ = getattr(AbstractStore, endpoint.method).__doc__
    return call


for _endpoint in ENDPOINTS:
    setattr(HttpStore, _endpoint.method, _store_call(_endpoint))
abc.update_abstractmethods(HttpStore)
