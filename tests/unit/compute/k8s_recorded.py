"""A recorded Kubernetes API on 127.0.0.1 for the kubernetes target's tests.

No API server can be had on the test machines. This threaded ``http.server`` answers the core/v1
calls a run makes with responses recorded in the real API's shapes (``recordings/kubernetes``: a
Pod going Pending -> Running -> Succeeded/Failed, a log stream, ``Status`` objects for 404/409, a
``PodList`` for a label selector), and keeps every request it got (method, path, query, body) so
that a test asserts the exact sequence. The real kubernetes client reaches it through a
``kubernetes`` Airflow connection whose ``kube_config`` points at it (:func:`connection_env`).
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
POD = "aml-run-run-k8s-0001"
SECRET = "aml-run-run-k8s-0001-token"
BASE = "/api/v1/namespaces/ml"


def recording(name: str, *, pod: str = POD) -> Any:
    """A recorded response; ``pod`` renames the recorded run's objects (a run id made by a test)."""
    text = (RECORDINGS / name).read_text()
    if pod != POD:
        text = text.replace(POD, pod).replace("run-k8s-0001", pod.removeprefix("aml-run-"))
    return json.loads(text)


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
    """What the recorded API answers: ``pod_states`` one per status read (the last repeats)."""

    pod_states: list[str] = field(
        default_factory=lambda: ["pod_pending.json", "pod_running.json", "pod_succeeded.json"]
    )
    existing_pod: bool = False  # the label selector finds the run's pod (a retry)
    secret_exists: bool = False  # create Secret answers 409
    pod: str = POD  # the run's pod name (the secret is ``<pod>-token``)
    adopt_names: bool = False  # take ``pod`` from the first created pod (a run id made by the SDK)
    requests: list[Request] = field(default_factory=list)
    deleted: bool = False
    reads: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def calls(self) -> list[str]:
        return [r.call for r in self.requests]


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

        def do_GET(self) -> None:
            request = self._record()
            pod = scenario.pod
            if request.path == f"{BASE}/pods":
                listing = "pod_list_running.json" if scenario.existing_pod else "pod_list_empty.json"
                self._send(200, recording(listing, pod=pod))
            elif request.path == f"{BASE}/pods/{pod}/log":
                self._send(200, (RECORDINGS / "pod_log.txt").read_bytes(), "text/plain")
            elif request.path == f"{BASE}/pods/{pod}":
                if scenario.deleted:
                    self._send(404, recording("status_404.json", pod=pod))
                    return
                with scenario.lock:
                    state = scenario.pod_states[min(scenario.reads, len(scenario.pod_states) - 1)]
                    scenario.reads += 1
                self._send(200, recording(state, pod=pod))
            else:
                self._send(404, recording("status_404.json"))

        def do_POST(self) -> None:
            request = self._record()
            if request.path == f"{BASE}/secrets":
                if scenario.secret_exists:
                    self._send(409, recording("status_409.json", pod=scenario.pod))
                else:
                    self._send(201, recording("secret_created.json", pod=scenario.pod))
            elif request.path == f"{BASE}/pods":
                if scenario.adopt_names:  # the pod name of a run the test did not name
                    scenario.pod = request.body["metadata"]["name"]
                self._send(201, recording("pod_pending.json", pod=scenario.pod))
            else:
                self._send(404, recording("status_404.json"))

        def do_PUT(self) -> None:
            request = self._record()
            self._send(200 if request.path == f"{BASE}/secrets/{SECRET}" else 404, recording("secret_created.json"))

        def do_DELETE(self) -> None:
            request = self._record()
            if request.path == f"{BASE}/pods/{scenario.pod}":
                scenario.deleted = True
                self._send(200, recording("pod_succeeded.json", pod=scenario.pod))
            elif request.path == f"{BASE}/secrets/{scenario.pod}-token":
                self._send(200, recording("status_success.json", pod=scenario.pod))
            else:
                self._send(404, recording("status_404.json"))

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


def connection_env(conn_id: str, url: str) -> dict[str, str]:
    """``AIRFLOW_CONN_<ID>``: a ``kubernetes`` connection whose kubeconfig points at ``url``."""
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "recorded",
        "clusters": [{"name": "recorded", "cluster": {"server": url}}],
        "users": [{"name": "tester", "user": {"token": "recorded-api-token"}}],
        "contexts": [{"name": "recorded", "context": {"cluster": "recorded", "user": "tester", "namespace": "ml"}}],
    }
    conn = {"conn_type": "kubernetes", "extra": {"kube_config": kubeconfig, "namespace": "ml"}}
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn)}
