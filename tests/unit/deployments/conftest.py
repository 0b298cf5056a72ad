"""Fixtures of the deployment tests: one workspace and AML_HOME per module (image environments are
built once), images of a tiny scoring script, and a finalizer that deletes every deployment a test
left (their supervisors outlive the test otherwise)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_aml.deployments import Deployment
from airflow_aml.images import ImageSpec
from airflow_aml.workspace import Workspace

SCORE_PY = '''\
import json
import os
import time

VERSION = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "version.txt")).read().strip()


def init():
    if VERSION == "broken":
        raise RuntimeError("init() refuses to start: broken on purpose")


def run(raw):
    data = json.loads(raw)
    if data.get("sleep"):
        time.sleep(float(data["sleep"]))
    if data.get("say"):
        print(data["say"])
    if data.get("exit"):
        os._exit(3)  # a request that kills its replica
    private = sorted(k for k in os.environ if k.startswith(("AML_STORE", "AML_SECRET", "AML_PRINCIPAL", "AIRFLOW")))
    return {"version": VERSION, "pid": os.getpid(), "echo": data.get("echo"), "private_env": private}
'''


@pytest.fixture(scope="module")
def deploy_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("deploy")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AML_HOME", str(root / "aml-home"))
        mp.delenv("AML_STORE_URI", raising=False)
        mp.delenv("AML_SECRET_KEY", raising=False)
        mp.setenv("AML_PRINCIPAL", "alice")
        mp.setenv("AML_PROGRESS", "0")
        ws = Workspace.create("ws", store_uri=f"sqlite:///{root / 'aml.db'}", datastore_root=root / "datastore")
        model = root / "model" / "weights.txt"
        model.parent.mkdir()
        model.write_text("1 2 3\n")
        ws.register_model("m", path=model)
        yield ws
        for deployment in Deployment.list(ws):
            deployment.delete(timeout=60)


def make_image(ws: Workspace, version: str, tmp: Path, name: str = "echo") -> Any:
    source = tmp / f"src-{name}-{version}"
    source.mkdir(parents=True, exist_ok=True)
    (source / "score.py").write_text(SCORE_PY)
    (source / "version.txt").write_text(version + "\n")
    return ws.create_image(name, ImageSpec(models=["m"], source_directory=str(source), entry_script="score.py"))


@pytest.fixture(scope="module")
def images(deploy_ws: Workspace, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """echo:1 answers version "1", echo:2 version "2", broken:1 fails in init()."""
    tmp = tmp_path_factory.mktemp("sources")
    return {
        "v1": make_image(deploy_ws, "1", tmp),
        "v2": make_image(deploy_ws, "2", tmp),
        "broken": make_image(deploy_ws, "broken", tmp, name="broken"),
    }


@pytest.fixture
def cleanup(deploy_ws: Workspace) -> Iterator[list[str]]:
    """Names of deployments to delete after the test, whatever happens."""
    names: list[str] = []
    yield names
    for name in names:
        Deployment.delete_if_exists(deploy_ws, name, timeout=60)


def score(deployment: Deployment, payload: dict[str, Any] | None = None, *, key: str | None = None,
          timeout: float = 10) -> httpx.Response:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    return httpx.post(deployment.scoring_uri or "", json=payload or {"echo": 1}, headers=headers, timeout=timeout)


def wait_for(predicate: Any, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def body(response: httpx.Response) -> dict[str, Any]:
    return json.loads(response.text)


def under_load(
    deployment: Deployment, key: str, action: Callable[[], Any], *, clients: int = 4, settle: float = 1.0,
    max_requests: int = 5000,
) -> tuple[Counter[str], list[str]]:
    """Run ``action`` (an update) while ``clients`` threads score in a loop, each with its own
    keep-alive client; returns (outcome -> count, the versions answered, in order). Every
    client stops after ``max_requests`` at most, or ``settle`` seconds after the action."""
    outcomes: Counter[str] = Counter()
    versions: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=15) as client:
            for _ in range(max_requests):
                if stop.is_set():
                    return
                try:
                    response = client.post(deployment.scoring_uri or "", json={"echo": 1},
                                           headers={"Authorization": f"Bearer {key}"})
                except httpx.HTTPError as exc:
                    outcomes[type(exc).__name__] += 1
                    continue
                outcomes[str(response.status_code)] += 1
                if response.status_code == 200:
                    versions.append(response.json()["version"])

    threads = [threading.Thread(target=load) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(settle)
        action()
        time.sleep(settle)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    return outcomes, versions
