"""Recorded Azure Resource Manager responses for the aci deployment target's tests.

No Azure account can be had on the test machines, and azure-core refuses a Bearer token over plain
http, so the recording sits at the transport: the SDK's own ``RequestsTransport`` is given a
``requests`` session whose ``request`` answers with recorded ARM responses (``recordings/aci``, in
the real API's shapes: a container group Pending -> Creating -> Running, a Failed provisioning, the
404 ``ResourceNotFound`` error, the logs) and keeps every request (method, path, api-version,
body). Everything above it is real: the provider's ``AzureContainerInstanceHook`` methods, the
SDK's operations, serialization, pipeline and bearer-token policy (a recorded token).
"""

from __future__ import annotations

import io
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import RequestsTransport
from azure.mgmt.containerinstance import ContainerInstanceManagementClient
from requests.structures import CaseInsensitiveDict
from urllib3 import HTTPResponse

RECORDINGS = Path(__file__).parent / "recordings" / "aci"
SUBSCRIPTION = "00000000-1111-4222-8333-444444444444"
RESOURCE_GROUP = "ml-rg"
GROUP = "aml-ws-iris"
GROUP_PATH = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
              f"Microsoft.ContainerInstance/containerGroups/{GROUP}")
OPERATION = (f"https://management.azure.com/subscriptions/{SUBSCRIPTION}/providers/Microsoft.ContainerInstance/"
             "locations/westeurope/operations/4f8d2a1e-7c3b-4e9a-b5d6-1a2b3c4d5e6f?api-version=2023-05-01")


def recording(name: str) -> Any:
    return json.loads((RECORDINGS / name).read_text())


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    authorization: str
    thread: str  # the caller's thread: the LRO poller that begin_create_or_update starts has its own

    @property
    def call(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class ArmScenario:
    group_states: list[str] = field(default_factory=lambda: ["group_get_pending.json", "group_get_running.json"])
    exists: bool = False
    requests: list[Request] = field(default_factory=list)
    reads: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def calls(self) -> list[str]:
        """The hook's own calls (the caller's thread), in order."""
        return [r.call for r in self.requests if r.thread == threading.main_thread().name]

    def poller_calls(self) -> list[str]:
        """What the SDK's LRO poller threads asked, in the background (the hook does not wait on them)."""
        return [r.call for r in self.requests if r.thread != threading.main_thread().name]

    def answer(self, method: str, path: str) -> tuple[int, Any, dict[str, str]]:
        if path == GROUP_PATH and method == "PUT":
            created = not self.exists
            self.exists = True
            # ARM answers a long-running PUT with the group as accepted and where to follow it.
            return (201 if created else 200), recording("group_put_created.json"), {"Azure-AsyncOperation": OPERATION}
        if path == GROUP_PATH and method == "GET":
            if not self.exists:
                return 404, recording("error_not_found.json"), {}
            with self.lock:  # only the hook's reads move the scenario on; a poller sees the current state
                state = self.group_states[min(self.reads, len(self.group_states) - 1)]
                if threading.current_thread() is threading.main_thread():
                    self.reads += 1
            return 200, recording(state), {}
        if path == GROUP_PATH and method == "DELETE":
            if not self.exists:
                return 204, None, {}  # ARM: deleting what is not there is No Content
            self.exists = False
            return 200, recording("group_delete.json"), {}
        if path == f"{GROUP_PATH}/containers/{GROUP}/logs" and self.exists:
            return 200, recording("logs.json"), {}
        if "/operations/" in path:
            return 200, recording("operation_succeeded.json"), {}
        return 404, recording("error_not_found.json"), {}


class RecordedSession(requests.Session):
    """A ``requests`` session that answers from an ArmScenario instead of the network."""

    def __init__(self, scenario: ArmScenario) -> None:
        super().__init__()
        self.scenario = scenario

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        parts = urlsplit(url)
        data = kwargs.get("data")
        body = json.loads(data) if data else None
        headers = kwargs.get("headers") or {}
        with self.scenario.lock:
            self.scenario.requests.append(Request(method, parts.path, parse_qs(parts.query), body,
                                                  str(headers.get("Authorization", "")),
                                                  threading.current_thread().name))
        status, answer, extra = self.scenario.answer(method, parts.path)
        content = b"" if answer is None else json.dumps(answer).encode()
        response = requests.Response()
        response.status_code = status
        response.headers = CaseInsensitiveDict({"Content-Type": "application/json; charset=utf-8",
                                                "Content-Length": str(len(content)), **extra})
        response.raw = HTTPResponse(body=io.BytesIO(content), headers=dict(response.headers), status=status,
                                    preload_content=False)
        response.url = url
        response.reason = {200: "OK", 201: "Created", 204: "No Content", 404: "Not Found"}.get(status, "")
        return response


class RecordedCredential:
    """A token credential with a recorded token (the bearer policy asks it for one)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("recorded-arm-token", int(time.time()) + 3600)


def recorded_client(scenario: ArmScenario) -> ContainerInstanceManagementClient:
    """The SDK's client, as the hook makes it, on the recorded transport (polling at once: the
    LRO poller that ``begin_create_or_update`` starts runs in its thread, the hook does not wait)."""
    transport = RequestsTransport(session=RecordedSession(scenario), session_owner=False)
    return ContainerInstanceManagementClient(credential=RecordedCredential(), subscription_id=SUBSCRIPTION,
                                             transport=transport, polling_interval=0)
