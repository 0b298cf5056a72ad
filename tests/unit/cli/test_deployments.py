"""``airflow-aml deployments ...`` and ``airflow-aml images ...`` through typer's CliRunner.

The end-to-end test serves a real scikit-learn model: a local image with the built-in sklearn
scorer, deployed by the CLI, scored over HTTP with the key the CLI printed, its supervisor and
replicas killed and brought back by ``deployments restore`` on the same scoring URI. Everything a
test deploys is deleted in a finalizer.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from airflow_aml.workspace import Workspace
from tests.unit.cli.helpers import Invoke, assert_one_line_error, ok

ROW = [5.1, 3.5, 1.4, 0.2]


# ------------------------------------------------------------------------------------------ fast
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("deployments", "show", "nope"), "nope"),
        (("deployments", "keys", "nope"), "nope"),
        (("deployments", "regenerate-key", "nope"), "nope"),
        (("deployments", "logs", "nope"), "nope"),
        (("deployments", "telemetry", "nope"), "nope"),
        (("deployments", "regenerate-key", "nope", "--key", "tertiary"), "tertiary"),
        (("deployments", "deploy", "svc", "--image", "no-such-image"), "no-such-image"),
        (("deployments", "deploy", "svc", "--image", "img:latest"), "img:latest"),
        (("deployments", "deploy", "bad name", "--image", "img"), "bad name"),
        (("images", "show", "no-such-image"), "no-such-image"),
        (("images", "show", "img:x"), "img:x"),
    ],
)
def test_errors_are_one_line(invoke: Invoke, ws: Workspace, args: tuple[str, ...], needle: str) -> None:
    assert_one_line_error(invoke(*args), needle)


def test_deploy_refuses_a_bad_config(invoke: Invoke, ws: Workspace, tmp_path: Path) -> None:
    typo = tmp_path / "typo.yml"
    typo.write_text("replicaz: 2\n")
    assert_one_line_error(invoke("deployments", "deploy", "svc", "--image", "img", "--config", str(typo)), "replicaz")
    scaled = tmp_path / "scaled.yml"
    scaled.write_text("autoscale: {min_replicas: 1, max_replicas: 3}\n")
    assert_one_line_error(
        invoke("deployments", "deploy", "svc", "--image", "img", "--config", str(scaled), "--replicas", "2"),
        "autoscale",
    )
    assert_one_line_error(
        invoke("deployments", "deploy", "svc", "--image", "img", "--config", str(tmp_path / "none.yml")), "none.yml"
    )
    assert json.loads(ok(invoke("deployments", "list", "--json")).stdout) == []


def test_empty_workspace(invoke: Invoke, ws: Workspace) -> None:
    assert json.loads(ok(invoke("deployments", "list", "--json")).stdout) == []
    assert "Deployments" in ok(invoke("deployments", "list")).stdout
    deleted = ok(invoke("deployments", "delete", "nope"))
    assert "does not exist" in deleted.stderr and deleted.stdout == ""
    restored = ok(invoke("deployments", "restore"))
    assert "Nothing to restore" in restored.stderr and restored.stdout == ""
    assert json.loads(ok(invoke("--json", "deployments", "restore")).stdout) == []
    assert json.loads(ok(invoke("images", "list", "--json")).stdout) == []


def test_reader_cannot_read_keys_or_deploy(invoke: Invoke, ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    ok(invoke("role", "assign", "bob", "Reader"))
    monkeypatch.setenv("AML_PRINCIPAL", "bob")
    ok(invoke("deployments", "list"))
    assert_one_line_error(invoke("deployments", "deploy", "svc", "--image", "img"), "bob")
    assert_one_line_error(invoke("deployments", "restore"), "bob")


def test_usage_errors(invoke: Invoke, ws: Workspace) -> None:
    assert invoke("deployments", "deploy", "svc").exit_code == 2  # --image is required
    assert invoke("deployments", "deploy", "svc", "--image", "img", "--replicas", "0").exit_code == 2
    assert invoke("deployments", "logs", "svc", "--tail", "-1").exit_code == 2


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture
def iris_image(ws: Workspace, tmp_path: Path) -> str:
    """A local image of a registered iris LogisticRegression with the built-in sklearn scorer."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from airflow_aml.images import ImageSpec

    features, target = load_iris(return_X_y=True)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(pickle.dumps(LogisticRegression(max_iter=500).fit(features, target)))
    ws.register_model("iris", path=folder)
    return ws.create_image("iris-img", ImageSpec(models=["iris"], builtin_scorer="sklearn")).id


@pytest.fixture
def cleanup(ws: Workspace) -> Iterator[list[str]]:
    """Names of deployments to delete at the end, whatever happened."""
    from airflow_aml.deployments import Deployment

    names: list[str] = []
    yield names
    for name in names:
        Deployment.delete_if_exists(ws, name, timeout=120)


def _score(uri: str, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(uri, json={"data": [ROW]}, headers=headers, timeout=30)


def _keys(invoke: Invoke, name: str) -> tuple[str, str]:
    lines = dict(line.split(": ", 1) for line in ok(invoke("deployments", "keys", name)).stdout.splitlines())
    return lines["primary"], lines["secondary"]


def _gone(pid: int) -> bool:
    try:
        fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True
    return fields[0] in ("Z", "X")


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.2)


@pytest.mark.slow
def test_deploy_operate_restore_delete(invoke: Invoke, ws: Workspace, iris_image: str, cleanup: list[str]) -> None:
    name = "iris-svc"
    cleanup.append(name)

    # images
    images = json.loads(ok(invoke("images", "list", "--json")).stdout)
    assert [(i["id"], i["status"]) for i in images] == [(iris_image, "Succeeded")]
    assert "iris:1" in ok(invoke("images", "show", "iris-img")).stdout

    # deploy (create)
    deployed = ok(invoke("deployments", "deploy", name, "--image", "iris-img", "--replicas", "2", "--timeout", "300"))
    assert "created: Healthy" in deployed.stdout, deployed.output
    listed = json.loads(ok(invoke("deployments", "list", "--json")).stdout)
    assert len(listed) == 1
    summary = listed[0]
    assert summary["name"] == name and summary["state"] == "Healthy" and summary["target"] == "local"
    assert summary["imageId"] == summary["servingImageId"] == iris_image
    assert (summary["replicasReady"], summary["replicasTotal"]) == (2, 2)
    assert summary["supervisorRunning"] is True
    uri = summary["scoringUri"]
    table = ok(invoke("deployments", "list")).stdout
    assert name in table and uri in table and "2/2" in table

    # keys: printed by `keys` only
    primary, secondary = _keys(invoke, name)
    assert primary != secondary
    shown = ok(invoke("deployments", "show", name))
    shown_json = ok(invoke("deployments", "show", name, "--json"))
    for output in (shown.stdout, shown_json.stdout, ok(invoke("deployments", "list")).stdout):
        assert primary not in output and secondary not in output
    detail = json.loads(shown_json.stdout)
    assert len(detail["replicas"]) == 2 and all(r["ready"] for r in detail["replicas"])
    assert "Replicas" in shown.stdout and uri in shown.stdout

    # scoring with the printed keys
    assert _score(uri, None).status_code == 401
    for key in (primary, secondary):
        response = _score(uri, key)
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == [0]

    # regenerate: the old primary is refused at once, the new one works
    regenerated = ok(invoke("deployments", "regenerate-key", name, "--key", "primary"))
    new_primary = regenerated.stdout.strip()
    assert new_primary and new_primary != primary and len(regenerated.stdout.splitlines()) == 1
    assert _score(uri, primary).status_code == 401
    assert _score(uri, new_primary).status_code == 200
    assert _score(uri, secondary).status_code == 200
    assert _keys(invoke, name) == (new_primary, secondary)

    # logs and telemetry
    logs = ok(invoke("deployments", "logs", name, "--tail", "50")).stdout
    assert "==> supervisor <==" in logs and "replica g" in logs

    def counted() -> bool:
        return json.loads(ok(invoke("deployments", "telemetry", name, "--json")).stdout)["requests"] >= 4

    _wait(counted, 30, "telemetry to count the requests")  # the supervisor sums it every 10 s
    telemetry = json.loads(ok(invoke("deployments", "telemetry", name, "--json")).stdout)
    assert telemetry["status_counts"].get("401", 0) >= 2 and telemetry["client_errors"] >= 2
    assert "Requests" in ok(invoke("deployments", "telemetry", name)).stdout

    # the machine "restarts": supervisor and replicas killed
    folder = Path(detail["folder"])
    supervisor_pid = int((folder / "supervisor.pid").read_text())
    replica_pids = [
        int(r["pid"]) for r in json.loads(ok(invoke("deployments", "show", name, "--json")).stdout)["replicas"]
    ]
    os.kill(supervisor_pid, signal.SIGKILL)
    for pid in replica_pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    _wait(lambda: all(_gone(p) for p in (supervisor_pid, *replica_pids)), 20, "the processes to end")
    with pytest.raises(httpx.TransportError):
        _score(uri, new_primary)
    down = json.loads(ok(invoke("deployments", "list", "--json")).stdout)[0]
    assert down["supervisorRunning"] is False and down["replicasReady"] == 0
    assert "supervisor down" in ok(invoke("deployments", "list")).stdout

    restored = ok(invoke("deployments", "restore", "--timeout", "300"))
    assert restored.stdout.strip() == f"{name}: Healthy at {uri}", restored.output
    back = json.loads(ok(invoke("deployments", "show", name, "--json")).stdout)
    assert back["state"] == "Healthy" and back["scoringUri"] == uri and back["supervisorRunning"] is True
    assert (back["replicasReady"], back["replicasTotal"]) == (2, 2)
    assert not {int(r["pid"]) for r in back["replicas"]} & set(replica_pids)
    response = _score(uri, new_primary)
    assert response.status_code == 200, response.text
    assert _score(uri, primary).status_code == 401
    assert "Nothing to restore" in ok(invoke("deployments", "restore")).stderr

    # update in place: same URI, still serving
    updated = ok(invoke("deployments", "deploy", name, "--image", iris_image, "--replicas", "1", "--timeout", "300"))
    assert "updated: Healthy" in updated.stdout, updated.output
    assert _score(uri, new_primary).status_code == 200

    # delete, then delete again: idempotent
    deleted = ok(invoke("deployments", "delete", name))
    assert f"Deployment {name!r} deleted" in deleted.stdout
    assert json.loads(ok(invoke("deployments", "list", "--json")).stdout) == []
    again = ok(invoke("deployments", "delete", name))
    assert "does not exist" in again.stderr
    assert not folder.exists()
    with pytest.raises(httpx.TransportError):
        _score(uri, new_primary)
