from __future__ import annotations

from datetime import UTC, datetime

import pytest

from airflow_aml.compute import _KINDS as KINDS
from airflow_aml.compute import (
    AbstractComputeTarget,
    LocalComputeTarget,
    RunLaunch,
    build_compute_target,
    compute_kinds,
    known_compute_kinds,
    register_compute_kind,
)
from airflow_aml.entities import RunRecord, RunStatus
from airflow_aml.exceptions import ComputeTargetNotFoundError, ValidationError
from tests.unit.compute.fakes import FakeStore, FakeWorkspace, target_record


class RecordingTarget(AbstractComputeTarget):
    kind = "recording"

    def submit(self, launch: RunLaunch) -> None:
        self.launched = launch

    def cancel(self, run_id: str) -> None:
        self.canceled = run_id


@pytest.fixture
def restore_kinds():
    saved = dict(KINDS)
    yield
    KINDS.clear()
    KINDS.update(saved)


def test_local_name_resolves_without_registration() -> None:
    target = build_compute_target(FakeWorkspace(FakeStore()), "local")
    assert isinstance(target, LocalComputeTarget)
    assert target.record is None
    assert target.name == "local"


def test_none_and_run_record_without_target_mean_local() -> None:
    ws = FakeWorkspace(FakeStore())
    assert isinstance(build_compute_target(ws, None), LocalComputeTarget)
    run = RunRecord(run_id="r1", workspace="ws", experiment="e", parent_run_id=None, status=RunStatus.QUEUED,
                    created_at=datetime.now(UTC), start_time=None, end_time=None, submitted_by="alice",
                    compute_target=None, run_config={})
    assert isinstance(build_compute_target(ws, run), LocalComputeTarget)


def test_registered_name_builds_its_kind_with_config() -> None:
    store = FakeStore(targets={"box": target_record("box", "local", {"cores": 2})})
    target = build_compute_target(FakeWorkspace(store), "box")
    assert isinstance(target, LocalComputeTarget)
    assert target.name == "box"
    assert target.config == {"cores": 2}


def test_registered_local_name_wins_over_implicit_one() -> None:
    store = FakeStore(targets={"local": target_record("local", "local", {"x": 1})})
    assert build_compute_target(FakeWorkspace(store), "local").config == {"x": 1}


def test_unknown_name_names_target_workspace_and_registered_ones() -> None:
    store = FakeStore(targets={"box": target_record("box", "local"), "gpu": target_record("gpu", "local")})
    with pytest.raises(ComputeTargetNotFoundError) as info:
        build_compute_target(FakeWorkspace(store, name="team"), "cluster-1")
    message = str(info.value)
    assert "'cluster-1'" in message and "'team'" in message
    assert "local, box, gpu" in message


def test_unknown_kind_lists_known_kinds() -> None:
    with pytest.raises(ValidationError, match=r"unknown kind 'quantum'.*known kinds: docker, kubernetes, local, spark"):
        build_compute_target(FakeWorkspace(FakeStore()), target_record("q", "quantum"))


def test_register_compute_kind(restore_kinds: None) -> None:
    register_compute_kind("recording", RecordingTarget)
    assert "recording" in compute_kinds() and known_compute_kinds() == compute_kinds()
    store = FakeStore(targets={"rec": target_record("rec", "recording")})
    target = build_compute_target(FakeWorkspace(store), "rec")
    assert isinstance(target, RecordingTarget)
    assert repr(target) == "RecordingTarget(workspace='ws', name='rec')"


def test_register_compute_kind_refuses_non_targets(restore_kinds: None) -> None:
    with pytest.raises(ValidationError, match="AbstractComputeTarget subclass"):
        register_compute_kind("bad", dict)  # type: ignore[arg-type]


def test_run_launch_is_plain_data() -> None:
    launch = RunLaunch(workspace="ws", store_uri="sqlite:///x.db", run_id="r", principal="alice",
                       run_config={"script": "a.py"}, snapshot_path="runs/r/snapshot.zip", datastore="d")
    assert launch.to_dict()["snapshot_path"] == "runs/r/snapshot.zip"
