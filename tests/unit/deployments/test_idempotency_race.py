"""A deployment created or updated by two copies of one task at once: the second follows the first.

The interleaving is forced (the copy's lookup is stale: it ran just before the other copy's
insert); the records are made through the store, so no replica is started.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from airflow_aml.deployments import Deployment
from airflow_aml.deployments import deployment as deployment_module
from airflow_aml.entities import DeploymentState, ImageStatus
from airflow_aml.exceptions import AlreadyExistsError
from airflow_aml.workspace import Workspace


@pytest.fixture
def served(workspace: Workspace, tmp_path: Path) -> Workspace:
    """A local-builder image that passes the local target's checks, as records only."""
    (tmp_path / "bundle").mkdir()
    model = tmp_path / "model.txt"
    model.write_text("m")
    workspace.register_model("m", path=model)
    store = workspace.store
    for version in (1, 2):
        store.create_image_version(
            "ws", "img", builder="local", created_by="alice", model_ids=["m:1"], spec={},
            properties={"local.python": sys.executable},
        )
        store.update_image("ws", "img", version, status=ImageStatus.SUCCEEDED, location=str(tmp_path / "bundle"))
    return workspace


def test_a_racing_create_follows_the_deployment_the_other_copy_made(
    served: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = served.store
    store.create_deployment("ws", "svc", target="local", image_id="img:1", created_by="alice", config={},
                            idempotency_key="k")
    monkeypatch.setattr(store, "search_deployments", lambda *a, **k: [])  # looked before the insert
    followed = Deployment.create(served, "svc", "img:1", idempotency_key="k", wait=False)
    assert followed.name == "svc" and followed.record.idempotency_key == "k"
    monkeypatch.undo()
    assert [d.name for d in Deployment.list(served)] == ["svc"]
    with pytest.raises(AlreadyExistsError, match="Deployment 'svc' already exists"):
        Deployment.create(served, "svc", "img:1", idempotency_key="another task", wait=False)
    with pytest.raises(AlreadyExistsError):
        Deployment.create(served, "svc", "img:1", wait=False)


def test_a_racing_update_follows_the_update_the_other_copy_started(
    served: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = served.store
    store.create_deployment("ws", "svc", target="local", image_id="img:1", created_by="alice", config={},
                            runtime={"port": 1}, scoring_uri="http://127.0.0.1:1/score")
    store.update_deployment("ws", "svc", state=DeploymentState.HEALTHY)
    real = deployment_module.keyed_activity
    _, activity_id = real(served, "k", "deployment_update", "svc")
    # The other copy got there first: its update's activity exists under the keyed id.
    store.create_activity("ws", kind="deployment_update", target_id="svc", message="Queued", activity_id=activity_id)
    calls: list[str] = []

    def stale_once(*args, **kwargs):
        calls.append("lookup")
        return (None, activity_id) if len(calls) == 1 else real(*args, **kwargs)

    monkeypatch.setattr(deployment_module, "keyed_activity", stale_once)
    deployment = Deployment.get(served, "svc")
    generation = deployment.record.generation
    followed = deployment.update(image="img:2", idempotency_key="k", wait=False)
    assert calls == ["lookup", "lookup"]
    after = store.get_deployment("ws", "svc")
    assert after.image_id == "img:1" and after.generation == generation  # not updated a second time
    assert followed.name == "svc"
