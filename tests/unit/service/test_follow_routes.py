"""Following an activity over the service: the long-poll, the event stream, and the SDK's waiter
using the long-poll on a served workspace (one request per change instead of one per poll)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from airflow_aml.activities import ActivityWaiter
from airflow_aml.entities import ActivityStatus, Role, RunStatus
from airflow_aml.store.http.client import ServiceClient
from airflow_aml.store.sql.store import SqlStore
from airflow_aml.workspace import Workspace
from tests.unit.service.served import Served, serve

API = "/api/v1"


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.setenv("AML_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AML_STORE_URI", raising=False)
    with serve(f"sqlite:///{tmp_path / 'aml.db'}") as service:
        yield service


@pytest.fixture
def store(served: Served) -> SqlStore:
    return SqlStore(served.store_uri)


@pytest.fixture
def activity_id(served: Served, store: SqlStore) -> str:
    Workspace.create("ws", store_uri=served.uri_for("olivia"))
    store.assign_role("ws", "rita", Role.READER)
    return store.create_activity("ws", kind="image_build", target_id="img:1").activity_id


def _headers(served: Served, principal: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {served.token(principal)}"}


def _later(seconds: float, action) -> threading.Thread:  # type: ignore[no-untyped-def]
    def run() -> None:
        time.sleep(seconds)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_long_poll_answers_on_the_change(served: Served, store: SqlStore, activity_id: str) -> None:
    seen = httpx.get(f"{served.url}{API}/activities/{activity_id}", headers=_headers(served, "rita")).json()
    writer = _later(0.5, lambda: store.update_activity(activity_id, progress=0.4, message="layer 2 of 5"))
    started = time.monotonic()
    answer = httpx.get(f"{served.url}{API}/activities/{activity_id}/wait", headers=_headers(served, "rita"),
                       params={"after": seen["updated_at"], "timeout": 30}, timeout=40)
    elapsed = time.monotonic() - started
    writer.join()
    assert answer.status_code == 200, answer.text
    assert answer.json()["progress"] == 0.4 and answer.json()["message"] == "layer 2 of 5"
    assert elapsed < 20, "the long-poll waited for its timeout instead of answering on the change"


def test_long_poll_times_out_with_the_unchanged_record(served: Served, activity_id: str) -> None:
    headers = _headers(served, "rita")
    seen = httpx.get(f"{served.url}{API}/activities/{activity_id}", headers=headers).json()
    started = time.monotonic()
    answer = httpx.get(f"{served.url}{API}/activities/{activity_id}/wait", headers=headers,
                       params={"after": seen["updated_at"], "timeout": 0.6}, timeout=10)
    assert answer.status_code == 200 and answer.json() == seen
    assert time.monotonic() - started >= 0.5  # it did wait
    # Without "after" (nothing seen yet) it answers at once; bounds are the route's.
    assert httpx.get(f"{served.url}{API}/activities/{activity_id}/wait", headers=headers).json() == seen
    too_long = httpx.get(f"{served.url}{API}/activities/{activity_id}/wait", headers=headers,
                         params={"timeout": 3600})
    assert too_long.status_code == 422


def test_long_poll_is_authorized_like_a_read(served: Served, activity_id: str) -> None:
    url = f"{served.url}{API}/activities/{activity_id}/wait"
    assert httpx.get(url).status_code == 401
    stranger = httpx.get(url, headers=_headers(served, "mallory"))  # no role in ws
    assert stranger.status_code == 403 and stranger.json()["error"]["code"] == "AuthorizationError"
    missing = httpx.get(f"{served.url}{API}/activities/nope/wait", headers=_headers(served, "rita"))
    assert missing.status_code == 404


def _events(response: httpx.Response) -> list[tuple[str, str]]:
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: ") and name is not None:
            events.append((name, line.removeprefix("data: ")))
            name = None
    return events


def test_event_stream_follows_the_activity_to_its_end(served: Served, store: SqlStore, activity_id: str) -> None:
    def progress() -> None:
        store.update_activity(activity_id, status=ActivityStatus.RUNNING, progress=0.5, message="half")
        time.sleep(0.6)
        store.update_activity(activity_id, status=ActivityStatus.SUCCEEDED, progress=1.0, message="done")

    writer = _later(0.5, progress)
    with httpx.stream("GET", f"{served.url}{API}/activities/{activity_id}/events", headers=_headers(served, "rita"),
                      params={"timeout": 60}, timeout=70) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _events(response)  # the stream ends by itself after the end event
    writer.join()
    names = [name for name, _ in events]
    records = [json.loads(data) for _, data in events]
    assert names == ["activity"] * len(events)
    assert records[0]["status"] == "NotStarted" and records[-1]["status"] == "Succeeded"
    assert [r["message"] for r in records] == ["", "half", "done"]


def test_event_stream_times_out_and_refuses_before_streaming(served: Served, activity_id: str) -> None:
    url = f"{served.url}{API}/activities/{activity_id}/events"
    with httpx.stream("GET", url, headers=_headers(served, "rita"), params={"timeout": 0.5}, timeout=10) as response:
        events = _events(response)
    assert [name for name, _ in events] == ["activity", "timeout"]
    refused = httpx.get(url, headers=_headers(served, "mallory"))
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/json"


def test_sdk_waiter_long_polls_on_a_served_workspace(
    served: Served, store: SqlStore, activity_id: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws = Workspace.get("ws", store_uri=served.uri_for("rita"))
    calls: list[str] = []
    real = ServiceClient.request

    def counting(self: ServiceClient, verb: str, path: str, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(path)
        return real(self, verb, path, **kwargs)

    monkeypatch.setattr(ServiceClient, "request", counting)
    writer = _later(2.0, lambda: store.update_activity(activity_id, status=ActivityStatus.SUCCEEDED, progress=1.0))
    started = time.monotonic()
    final = ActivityWaiter(ws, activity_id).wait(timeout=60, poll_interval=0.05)
    elapsed = time.monotonic() - started
    writer.join()
    assert final.status is ActivityStatus.SUCCEEDED
    # Polling every 0.05 s for 2 s would be ~40 reads; the long-poll makes a handful of requests.
    assert len(calls) <= 6, calls
    assert any(path.endswith("/wait") for path in calls)
    assert elapsed < 15


def test_log_stream_follows_a_run_to_its_end(served: Served, store: SqlStore, activity_id: str) -> None:
    run = store.create_run(workspace="ws", experiment="exp", submitted_by="olivia", status=RunStatus.RUNNING)
    store.append_log(run.run_id, "stdout", "epoch 1\n")

    def train() -> None:
        for epoch in (2, 3):
            time.sleep(0.3)
            store.append_log(run.run_id, "stdout", f"epoch {epoch}\n")
        store.append_log(run.run_id, "stderr", "done\n")
        store.update_run_status(run.run_id, RunStatus.COMPLETED)

    writer = _later(0.3, train)
    url = f"{served.url}{API}/runs/{run.run_id}/logs/events"
    with httpx.stream("GET", url, headers=_headers(served, "rita"), params={"timeout": 60}, timeout=70) as response:
        assert response.status_code == 200
        events = _events(response)
    writer.join()
    logs = [json.loads(data) for name, data in events if name == "log"]
    assert [(c["stream"], c["text"]) for c in logs] == [
        ("stdout", "epoch 1\n"), ("stdout", "epoch 2\n"), ("stdout", "epoch 3\n"), ("stderr", "done\n")]
    assert events[-1] == ("end", json.dumps({"run_id": run.run_id, "status": "Completed"}))

    # Resuming: after_seq, or the Last-Event-ID an EventSource sends when it reconnects.
    second = logs[1]["seq"]
    for extra in ({"params": {"after_seq": second}}, {"headers": {"Last-Event-ID": str(second)}}):
        headers = {**_headers(served, "rita"), **extra.get("headers", {})}
        with httpx.stream("GET", url, headers=headers, params=extra.get("params"), timeout=10) as response:
            rest = [json.loads(data)["text"] for name, data in _events(response) if name == "log"]
        assert rest == ["epoch 3\n", "done\n"]


def test_log_stream_is_authorized_like_reading_the_log(served: Served, store: SqlStore, activity_id: str) -> None:
    run = store.create_run(workspace="ws", experiment="exp", submitted_by="olivia", status=RunStatus.RUNNING)
    url = f"{served.url}{API}/runs/{run.run_id}/logs/events"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers=_headers(served, "mallory")).status_code == 403
    assert httpx.get(f"{served.url}{API}/runs/nope/logs/events", headers=_headers(served, "rita")).status_code == 404
