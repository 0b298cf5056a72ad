"""End to end on the local target: real supervisors, replicas and front, scored over HTTP."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_aml.deployments import Deployment
from airflow_aml.entities import ActivityStatus, DeploymentState, Role
from airflow_aml.exceptions import (
    AuthorizationError,
    ConflictError,
    DeploymentError,
    ImageNotFoundError,
    ValidationError,
)
from airflow_aml.workspace import Workspace
from tests.unit.deployments.conftest import body, score, under_load, wait_for


def _pid_alive(pid: int) -> bool:
    """Alive and not exiting: an exiting process has already released its memory (empty cmdline)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and bool(cmdline)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text() + " " + Path(f"/proc/{pid}/cmdline").read_text()
    except OSError as exc:
        return str(exc)


def _replica_pids(deployment: Deployment) -> list[int]:
    return [r["pid"] for r in deployment.refresh().replicas]


def test_deploy_score_keys_logs_and_telemetry(deploy_ws: Workspace, images: dict, cleanup: list[str]) -> None:
    cleanup.append("svc")
    service = Deployment.create(deploy_ws, "svc", images["v1"], config={"replicas": 2}, tags={"team": "ml"})
    assert service.state is DeploymentState.HEALTHY and service.serving_image_id == "echo:1"
    assert service.scoring_uri and service.scoring_uri.startswith("http://127.0.0.1:")
    assert service.activity.kind == "deployment_create" and service.activity.status is ActivityStatus.SUCCEEDED
    primary, secondary = service.get_keys()
    assert service.keys == (primary, secondary) and primary != secondary
    # The record keeps hashes only.
    assert primary not in str(service.record) and secondary not in str(service.record)

    replicas = service.replicas
    assert len(replicas) == 2 and all(r["ready"] for r in replicas)
    assert all(_pid_alive(r["pid"]) for r in replicas)

    answers = [score(service, {"echo": i}, key=primary) for i in range(20)]
    assert all(a.status_code == 200 for a in answers)
    assert {body(a)["echo"] for a in answers} == set(range(20))
    assert len({body(a)["pid"] for a in answers}) == 2  # both replicas took requests
    # The scoring code does not see the store URI, the principal, the secrets key or Airflow's settings.
    assert body(answers[0])["private_env"] == []
    assert score(service, key=secondary).status_code == 200
    assert score(service).status_code == 401
    assert score(service, key="wrong").status_code == 401
    assert service.run({"echo": "sdk"})["echo"] == "sdk"
    assert httpx.get(service.swagger_uri or "", timeout=5).status_code == 200

    assert [d.name for d in deploy_ws.list_deployments(tags={"team": "ml"})] == ["svc"]
    assert [d.name for d in Deployment.list(deploy_ws, image="echo:1")] == ["svc"]
    logs = service.get_logs()
    assert "==> supervisor <==" in logs and "Started replica svc/g1-r0" in logs

    # Telemetry: summed by the supervisor into the workspace record every 10 s.
    assert wait_for(lambda: service.get_telemetry()["requests"] >= 24, timeout=25)
    telemetry = service.get_telemetry()
    assert telemetry["client_errors"] == 2 and telemetry["errors"] == 0
    assert telemetry["status_counts"]["200"] == 22 and telemetry["latency_ms"]["p99"] > 0


def test_rolling_update_loses_no_request(deploy_ws: Workspace, images: dict, cleanup: list[str]) -> None:
    cleanup.append("rolling")
    service = Deployment.create(deploy_ws, "rolling", images["v1"])
    key = service.get_keys()[0]
    old_pids = _replica_pids(service)
    outcomes, versions = under_load(service, key, lambda: service.update(image=images["v2"]))
    assert set(outcomes) == {"200"}, outcomes  # not one failed request
    assert outcomes["200"] > 50
    assert versions[0] == "1" and versions[-1] == "2"
    assert service.state is DeploymentState.HEALTHY and service.serving_image_id == "echo:2"
    assert service.record.generation == 2
    assert all(not _pid_alive(pid) for pid in old_pids)
    # The same update again changes nothing (a re-run DAG): no new replicas.
    pids = _replica_pids(service)
    service.update(image="echo:2")
    assert service.activity.message.endswith("no change") and _replica_pids(service) == pids


def test_an_update_replaced_before_it_ran_ends_instead_of_hanging(
    deploy_ws: Workspace, images: dict, cleanup: list[str]
) -> None:
    cleanup.append("hurry")
    service = Deployment.create(deploy_ws, "hurry", images["v1"])
    first = Deployment.get(deploy_ws, "hurry").update(image=images["v2"], wait=False)
    second = Deployment.get(deploy_ws, "hurry").update(image=images["v1"], config={"replicas": 2}, wait=False)
    # Started by the supervisor or not (a rollout takes seconds), the first ends now; the second wins.
    first_end = deploy_ws.get_activity(first.record.activity_id or "")
    assert first_end.status is ActivityStatus.CANCELED, first_end
    with pytest.raises(DeploymentError, match="Superseded by generation 3"):
        first.wait_for_deployment(timeout=60)
    second.wait_for_deployment(timeout=120)
    assert second.state is DeploymentState.HEALTHY and second.serving_image_id == "echo:1"
    assert len(second.replicas) == 2 and service.refresh().record.generation == 3


def test_an_update_says_what_it_changes_of_a_hand_scaled_deployment(
    deploy_ws: Workspace, images: dict, cleanup: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A re-run DAG (config={"replicas": 1}) silently scaled a deployment a user had scaled by hand
    back to 1: the update now says so (a warning through the SDK's logger, which reaches the task
    log, and ``changes``)."""
    cleanup.append("scaled")
    service = Deployment.deploy(deploy_ws, "scaled", images["v1"], config={"replicas": 1})
    assert service.changes == []
    by_hand = Deployment.deploy(deploy_ws, "scaled", images["v1"], config={"replicas": 2})  # the CLI's --replicas 2
    assert by_hand.changes == ["replicas 1 -> 2"] and len(by_hand.replicas) == 2
    with caplog.at_level(logging.WARNING, logger="airflow_aml.deployments"):
        rerun = Deployment.deploy(deploy_ws, "scaled", images["v1"], config={"replicas": 1}, idempotency_key="run-2")
    assert rerun.changes == ["replicas 2 -> 1"]
    assert ("Deployment 'scaled': replicas 2 -> 1 (the update's configuration replaces the current one)"
            in caplog.messages)
    assert len([r for r in rerun.replicas if not r["draining"]]) == 1  # the other one may still drain
    unchanged = Deployment.deploy(deploy_ws, "scaled", images["v1"], config={"replicas": 1})
    assert unchanged.changes == [] and unchanged.activity.message.endswith("no change")


def test_key_regeneration_revokes_the_old_key_at_once(
    deploy_ws: Workspace, images: dict, cleanup: list[str]
) -> None:
    cleanup.append("keys")
    service = Deployment.create(deploy_ws, "keys", images["v1"], config={"replicas": 2})
    old_primary, secondary = service.get_keys()
    new_primary = service.regenerate_key("primary")
    # regenerate_key returns once the service refuses the old key: no sleep here.
    assert all(score(service, key=old_primary).status_code == 401 for _ in range(4))
    assert all(score(service, key=new_primary).status_code == 200 for _ in range(4))
    assert score(service, key=secondary).status_code == 200
    assert service.get_keys() == (new_primary, secondary)
    with pytest.raises(ValidationError, match="which must be one of"):
        service.regenerate_key("tertiary")


def test_failed_update_keeps_the_old_replicas_serving(
    deploy_ws: Workspace, images: dict, cleanup: list[str]
) -> None:
    cleanup.append("keeps")
    service = Deployment.create(deploy_ws, "keeps", images["v1"], config={"startup_timeout_seconds": 60})
    key = service.get_keys()[0]
    with pytest.raises(DeploymentError, match="broken on purpose"):
        service.update(image=images["broken"], config={"auth_enabled": False}, idempotency_key="try")
    # The old replicas go on with the settings they serve with: still key-protected.
    assert score(service).status_code == 401 and service.refresh().config.auth_enabled
    # A retried task (same key) tries a failed update again rather than replaying its failure.
    with pytest.raises(DeploymentError, match="broken on purpose"):
        service.update(image=images["broken"], config={"auth_enabled": False}, idempotency_key="try")
    failed = [a for a in deploy_ws.list_activities(target_id="keeps", kind="deployment_update")]
    assert len(failed) == 2 and all(a.status is ActivityStatus.FAILED for a in failed)
    service.refresh()
    assert service.state is DeploymentState.HEALTHY
    assert service.image_id == service.serving_image_id == "echo:1"
    assert "failed; still serving echo:1" in (service.error or "")
    assert body(score(service, key=key))["version"] == "1"
    # A succeeded keyed update is followed, not repeated, by its retry.
    service.update(image=images["v2"], idempotency_key="next")
    service.update(image=images["v2"], idempotency_key="next")
    updates = deploy_ws.list_activities(target_id="keeps", kind="deployment_update")
    assert [a.status for a in updates].count(ActivityStatus.SUCCEEDED) == 1
    assert service.refresh().serving_image_id == "echo:2"


def test_failed_create_is_recorded_and_can_be_deleted(
    deploy_ws: Workspace, images: dict, cleanup: list[str]
) -> None:
    cleanup.append("never")
    with pytest.raises(DeploymentError, match="broken on purpose") as caught:
        Deployment.create(deploy_ws, "never", images["broken"], config={"startup_timeout_seconds": 60})
    assert caught.value.deployment == "never"
    service = Deployment.get(deploy_ws, "never")
    assert service.state is DeploymentState.FAILED and service.serving_image_id is None
    assert wait_for(lambda: not service.supervisor_alive(), timeout=15)
    # Its supervisor judged it failed: restore does not retry it (deploy or delete it instead).
    assert "never" not in Deployment.restore(deploy_ws)
    # deploy() on a deployment that never served starts over.
    service = Deployment.deploy(deploy_ws, "never", images["v1"])
    assert service.state is DeploymentState.HEALTHY and service.serving_image_id == "echo:1"


def test_a_dead_replica_is_replaced(deploy_ws: Workspace, images: dict, cleanup: list[str]) -> None:
    cleanup.append("phoenix")
    service = Deployment.create(deploy_ws, "phoenix", images["v1"])
    key = service.get_keys()[0]
    (pid,) = _replica_pids(service)
    os.killpg(pid, signal.SIGKILL)
    assert wait_for(lambda: (p := _replica_pids(service)) and p != [pid] and service.replicas[0]["ready"]
                    and service.state is DeploymentState.HEALTHY, timeout=60)
    assert score(service, key=key).status_code == 200
    assert "died" in service.get_logs()


def test_replica_logs_and_a_request_that_kills_its_replica(
    deploy_ws: Workspace, images: dict, cleanup: list[str]
) -> None:
    """The replicas' log files used to stay empty (a healthy replica logged nothing at level
    warning); a run() calling os._exit got 503 "No replica could take the request" where README
    promises 502."""
    cleanup.append("mortal")
    service = Deployment.create(deploy_ws, "mortal", images["v1"])
    key = service.get_keys()[0]
    assert score(service, {"say": "printed-by-run"}, key=key).status_code == 200
    (replica,) = service.replicas
    assert wait_for(lambda: "printed-by-run" in Path(replica["log"]).read_text(), timeout=10)
    section = service.get_logs().split("==> replica g1-r0", 1)[1]
    assert "Application startup complete" in section and "echo:1 is ready" in section, section
    assert "printed-by-run" in section

    dying = score(service, {"exit": True}, key=key)
    assert dying.status_code == 502, dying.text
    assert "closed the connection without an answer" in body(dying)["message"]
    assert wait_for(lambda: (p := _replica_pids(service)) and p != [replica["pid"]] and service.replicas[0]["ready"],
                    timeout=60), service.get_logs()
    assert score(service, key=key).status_code == 200


def test_a_crash_looping_replica_is_slowed_down_not_given_up(
    deploy_ws: Workspace, images: dict, cleanup: list[str]
) -> None:
    cleanup.append("looping")
    service = Deployment.create(deploy_ws, "looping", images["v1"])
    key = service.get_keys()[0]
    seen: list[int] = []
    for _ in range(6):  # the 6th death within a minute hits the crash-loop delay
        assert wait_for(lambda: (p := _replica_pids(service)) and p[0] not in seen, timeout=60)
        (pid,) = _replica_pids(service)
        seen.append(pid)
        os.killpg(pid, signal.SIGKILL)
    assert wait_for(lambda: service.refresh().state is DeploymentState.UNHEALTHY, timeout=30)
    # Back within the delay (15 s) plus a start, and Healthy again.
    assert wait_for(lambda: (p := _replica_pids(service)) and p[0] not in seen
                    and service.refresh().state is DeploymentState.HEALTHY, timeout=90), service.get_logs()
    assert score(service, key=key).status_code == 200


def test_autoscaling_follows_the_load(deploy_ws: Workspace, images: dict, cleanup: list[str]) -> None:
    cleanup.append("elastic")
    service = Deployment.create(deploy_ws, "elastic", images["v1"], config={
        "max_concurrent_requests": 1, "max_queued_requests": 8,
        "autoscale": {"min_replicas": 1, "max_replicas": 2, "target_utilization": 0.5, "window_seconds": 2,
                      "scale_down_delay_seconds": 2},
    })
    key = service.get_keys()[0]
    assert len(service.replicas) == 1
    stop = threading.Event()
    statuses: Counter[int] = Counter()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            for _ in range(200):  # bounded
                if stop.is_set():
                    return
                response = client.post(service.scoring_uri or "", json={"sleep": 0.3},
                                       headers={"Authorization": f"Bearer {key}"})
                statuses[response.status_code] += 1

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        scaled_up = wait_for(lambda: sum(r["ready"] for r in service.refresh().replicas) == 2, timeout=60)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert scaled_up, service.get_logs()
    assert set(statuses) == {200}, statuses
    assert wait_for(lambda: len(service.refresh().replicas) == 1, timeout=60)
    assert "Autoscaling from 1 to 2" in service.get_logs() and "Autoscaling from 2 to 1" in service.get_logs()


def test_restore_brings_a_killed_deployment_back(
    deploy_ws: Workspace, images: dict, cleanup: list[str]
) -> None:
    cleanup.append("lazarus")
    service = Deployment.create(deploy_ws, "lazarus", images["v1"])
    uri, key = service.scoring_uri, service.get_keys()[0]
    supervisor = int((service.folder / "supervisor.pid").read_text())
    (replica,) = _replica_pids(service)
    os.kill(supervisor, signal.SIGKILL)  # as a reboot would: no chance to record anything
    assert wait_for(lambda: not _pid_alive(supervisor) and not _pid_alive(replica), timeout=15)
    assert not service.supervisor_alive()
    with pytest.raises(httpx.HTTPError):
        score(service, key=key, timeout=2)

    assert Deployment.restore(deploy_ws) == ["lazarus"]
    service.refresh()
    assert service.state is DeploymentState.HEALTHY and service.scoring_uri == uri
    assert service.activity.kind == "deployment_restore"
    assert body(score(service, key=key))["version"] == "1"
    assert Deployment.restore(deploy_ws) == []  # everything runs: nothing to do


def test_restore_brings_back_a_deployment_killed_while_it_deployed(
    deploy_ws: Workspace, images: dict, cleanup: list[str]
) -> None:
    """SIGKILL to the supervisor during its create; the waiter then records the deployment Failed
    (nothing served yet). That Failed is a loss, not the supervisor's verdict: restore must bring
    it to its desired state (it used to say there was nothing to restore)."""
    cleanup.append("interrupted")
    service = Deployment.create(deploy_ws, "interrupted", images["v1"], wait=False)
    assert wait_for(lambda: (service.folder / "supervisor.pid").exists() and service.supervisor_alive(), timeout=15)
    supervisor = int((service.folder / "supervisor.pid").read_text())
    assert service.refresh().state is DeploymentState.TRANSITIONING  # still deploying
    os.kill(supervisor, signal.SIGKILL)
    with pytest.raises(DeploymentError, match="is not running"):
        service.wait_for_deployment(timeout=60)
    service.refresh()
    assert service.state is DeploymentState.FAILED and service.serving_image_id is None
    assert not any(_pid_alive(r["pid"]) for r in service.replicas if "pid" in r)

    assert "interrupted" in Deployment.restore(deploy_ws, timeout=120)
    service.refresh()
    assert service.state is DeploymentState.HEALTHY and service.serving_image_id == "echo:1", service.error
    assert body(score(service, key=service.get_keys()[0]))["version"] == "1"
    assert "interrupted" not in Deployment.restore(deploy_ws)


def test_sigterm_stops_replicas_and_records_it(deploy_ws: Workspace, images: dict, cleanup: list[str]) -> None:
    cleanup.append("stopped")
    service = Deployment.create(deploy_ws, "stopped", images["v1"])
    supervisor = int((service.folder / "supervisor.pid").read_text())
    (replica,) = _replica_pids(service)
    os.kill(supervisor, signal.SIGTERM)
    assert wait_for(lambda: not _pid_alive(supervisor), timeout=30)
    assert not _pid_alive(replica)
    service.refresh()
    assert service.state is DeploymentState.UNHEALTHY and "deployments restore" in (service.error or "")
    # An update starts a supervisor again.
    service.update(image=images["v2"])
    assert service.state is DeploymentState.HEALTHY and service.serving_image_id == "echo:2"


def test_delete_is_idempotent_and_frees_the_image(deploy_ws: Workspace, images: dict, tmp_path: Path) -> None:
    from tests.unit.deployments.conftest import make_image

    image = make_image(deploy_ws, "temp", tmp_path, name="short-lived")
    service = Deployment.create(deploy_ws, "gone", image)
    supervisor = int((service.folder / "supervisor.pid").read_text())
    (replica,) = _replica_pids(service)
    with pytest.raises(ConflictError, match="used by deployment 'gone'"):
        image.delete()
    service.delete()
    assert not _pid_alive(supervisor), _proc_state(supervisor)
    assert not _pid_alive(replica), _proc_state(replica)
    assert not service.folder.exists()
    assert Deployment.list(deploy_ws, image="short-lived") == []
    assert [s for s in deploy_ws.list_secrets() if s.startswith("deployment-gone-")] == []
    service.delete()  # again: nothing to do
    assert Deployment.delete_if_exists(deploy_ws, "gone") is False
    image.delete()  # free now
    with pytest.raises(ImageNotFoundError):
        deploy_ws.get_image("short-lived", 1)


def test_bad_requests_are_refused_before_anything_exists(deploy_ws: Workspace, images: dict) -> None:
    def refused(exc: type[Exception], match: str, **kwargs: Any) -> None:
        args: dict[str, Any] = {"image": images["v1"], **kwargs}
        with pytest.raises(exc, match=match):
            Deployment.create(deploy_ws, args.pop("name", "refused"), args.pop("image"), **args)

    refused(ValidationError, "Unknown deployment target 'moon'", target="moon")
    refused(ValidationError, "Invalid deployment config: replicas", config={"replicas": 0})
    refused(ValidationError, "give either replicas or autoscale", config={"replicas": 2, "autoscale": {}})
    refused(ValidationError, "min_replicas .* is above max_replicas",
            config={"autoscale": {"min_replicas": 3, "max_replicas": 2}})
    refused(ValidationError, "Extra inputs are not permitted", config={"replica": 2})
    refused(ImageNotFoundError, "Image 'echo' version 99", image="echo:99")
    refused(ValidationError, "Invalid deployment name", name="bad name")
    refused(ValidationError, "served by the local deployment target|'local' builder", target="docker")
    assert Deployment.list(deploy_ws, state="Failed") == [] or all(
        d.name != "refused" for d in Deployment.list(deploy_ws))
    assert "refused" not in [d.name for d in Deployment.list(deploy_ws)]


def test_readers_cannot_deploy_or_read_keys(deploy_ws: Workspace, images: dict, cleanup: list[str]) -> None:
    cleanup.append("guarded")
    service = Deployment.create(deploy_ws, "guarded", images["v1"])
    deploy_ws.assign_role("rita", Role.READER)
    reader = Workspace.get("ws", store_uri=deploy_ws.store_uri, principal="rita")
    with pytest.raises(AuthorizationError):
        Deployment.create(reader, "nope", images["v1"])
    seen = Deployment.get(reader, "guarded")
    assert seen.state is DeploymentState.HEALTHY
    with pytest.raises(AuthorizationError):
        seen.get_keys()
    with pytest.raises(AuthorizationError):
        seen.delete()
    assert service.refresh().state is DeploymentState.HEALTHY
