"""A recorded Kubernetes API on 127.0.0.1 for the kubernetes deployment target's tests.

No API server can be had on the test machines. This threaded ``http.server`` keeps the objects it
was sent (a POST of an existing one answers the recorded 409 ``Status``, a DELETE of a missing one
the recorded 404), answers reads of a Deployment's status with recorded ``Deployment`` objects in
the order a scenario lists them (the last repeats), a Service read with a recorded LoadBalancer
Service, pod listings with recorded ``PodList``s; and keeps every request (method, path, query,
body) so that a test asserts the exact call sequence. The real kubernetes client reaches it through
the provider's ``KubernetesHook`` and an Airflow connection whose kubeconfig points at it
(``tests.unit.compute.k8s_recorded.connection_env``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

RECORDINGS = Path(__file__).parent / "recordings" / "kubernetes"
NAME = "aml-ws-iris"
CORE = "/api/v1/namespaces/ml"
APPS = "/apis/apps/v1/namespaces/ml"
HPA = "/apis/autoscaling/v2/namespaces/ml"
COLLECTIONS = {f"{CORE}/secrets", f"{CORE}/services", f"{APPS}/deployments", f"{HPA}/horizontalpodautoscalers"}


def recording(name: str) -> Any:
    return json.loads((RECORDINGS / name).read_text())


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any

    @property
    def call(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class Scenario:
    deployment_states: list[str] = field(default_factory=lambda: ["deployment_progressing.json",
                                                                  "deployment_available.json"])
    pods: str = "pod_list_running.json"
    objects: dict[str, Any] = field(default_factory=dict)  # path of an object -> what was sent
    requests: list[Request] = field(default_factory=list)
    status_reads: int = 0
    version: int = 50000
    lock: threading.Lock = field(default_factory=threading.Lock)

    def calls(self) -> list[str]:
        return [r.call for r in self.requests]

    def sent(self, method: str, path: str) -> list[Any]:
        return [r.body for r in self.requests if r.method == method and r.path == path]

    def preload(self, *paths: str) -> None:
        """Objects there before the test (an earlier create): their POST answers 409."""
        for path in paths:
            self.objects[path] = {"metadata": {"name": path.rsplit("/", 1)[1], "resourceVersion": "41000"}}


def _handler(scenario: Scenario) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return None

        def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self) -> Request:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            url = urlsplit(self.path)
            request = Request(self.command, url.path, parse_qs(url.query), json.loads(raw) if raw else None)
            with scenario.lock:
                scenario.requests.append(request)
            return request

        def _stored(self, body: dict[str, Any]) -> dict[str, Any]:
            # What the API server answers a write with: the object, with its server-set metadata.
            with scenario.lock:
                scenario.version += 1
                version = scenario.version
            meta = {**body["metadata"], "resourceVersion": str(version),
                    "uid": f"00000000-0000-4000-8000-{version:012d}", "creationTimestamp": "2026-12-06T07:30:02Z"}
            return {**body, "metadata": meta}

        def do_GET(self) -> None:
            request = self._record()
            path = request.path
            if path == f"{CORE}/pods":
                self._send(200, recording(scenario.pods))
            elif path.startswith(f"{CORE}/pods/") and path.endswith("/log"):
                self._send(200, (RECORDINGS / "pod_log.txt").read_bytes(), "text/plain")
            elif path.endswith("/status") and path.removesuffix("/status") in scenario.objects:
                with scenario.lock:
                    state = scenario.deployment_states[min(scenario.status_reads, len(scenario.deployment_states) - 1)]
                    scenario.status_reads += 1
                self._send(200, recording(state))
            elif path in scenario.objects:
                stored = recording("service_loadbalancer.json") if "/services/" in path else scenario.objects[path]
                self._send(200, stored)
            else:
                self._send(404, recording("status_404.json"))

        def do_POST(self) -> None:
            request = self._record()
            if request.path not in COLLECTIONS:
                self._send(404, recording("status_404.json"))
                return
            path = f"{request.path}/{request.body['metadata']['name']}"
            if path in scenario.objects:
                self._send(409, recording("status_409.json"))
                return
            scenario.objects[path] = self._stored(request.body)
            self._send(201, scenario.objects[path])

        def do_PUT(self) -> None:
            request = self._record()
            if request.path not in scenario.objects:
                self._send(404, recording("status_404.json"))
                return
            scenario.objects[request.path] = self._stored(request.body)
            self._send(200, scenario.objects[request.path])

        def do_DELETE(self) -> None:
            request = self._record()
            if scenario.objects.pop(request.path, None) is None:
                self._send(404, recording("status_404.json"))
            else:
                self._send(200, recording("status_success.json"))

    return Handler


@contextmanager
def recorded_kubernetes(scenario: Scenario) -> Iterator[str]:
    """The recorded API's URL while the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(scenario))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
