"""Activities of the SQL store."""

from __future__ import annotations

import re

import pytest

from airflow_aml.entities import ActivityStatus
from airflow_aml.exceptions import ActivityNotFoundError, AlreadyExistsError, WorkspaceNotFoundError
from airflow_aml.store.sql import SqlStore
from tests.unit.store.helpers import WS, assert_utc, dump_tables, new_workspace


def test_create_and_get(store: SqlStore) -> None:
    new_workspace(store)
    activity = store.create_activity(WS, kind="run", target_id="run-1", message="queued")
    assert re.fullmatch(r"[0-9a-f]{32}", activity.activity_id)
    assert (activity.workspace, activity.kind, activity.target_id) == (WS, "run", "run-1")
    assert activity.status is ActivityStatus.NOT_STARTED and activity.progress == 0.0
    assert activity.message == "queued" and activity.ended_at is None and activity.error is None
    assert_utc(activity)
    assert store.get_activity(activity.activity_id) == activity
    named = store.create_activity(WS, kind="image_build", target_id="img", activity_id="build-1")
    assert named.activity_id == "build-1"
    with pytest.raises(AlreadyExistsError, match="Activity 'build-1' already exists"):
        store.create_activity(WS, kind="image_build", target_id="img", activity_id="build-1")


def test_progress_is_clamped_and_only_moves_forward(store: SqlStore) -> None:
    new_workspace(store)
    activity_id = store.create_activity(WS, kind="run", target_id="r").activity_id
    assert store.update_activity(activity_id, status=ActivityStatus.RUNNING, progress=0.4).progress == 0.4
    assert store.update_activity(activity_id, progress=0.2).progress == 0.4  # backwards: ignored
    assert store.update_activity(activity_id, progress=float("nan")).progress == 0.4
    assert store.update_activity(activity_id, progress=-3).progress == 0.4
    assert store.update_activity(activity_id, progress=7).progress == 1.0  # clamped
    other = store.create_activity(WS, kind="run", target_id="r").activity_id
    assert store.update_activity(other, progress=-1).progress == 0.0


def test_update_fields_and_terminal_is_final(store: SqlStore) -> None:
    new_workspace(store)
    activity = store.create_activity(WS, kind="run", target_id="r")
    running = store.update_activity(activity.activity_id, status=ActivityStatus.RUNNING, message="working")
    assert running.status is ActivityStatus.RUNNING and running.message == "working"
    assert running.updated_at >= activity.updated_at and running.ended_at is None
    failed = store.update_activity(activity.activity_id, status=ActivityStatus.FAILED, error="boom")
    assert failed.status is ActivityStatus.FAILED and failed.error == "boom" and failed.ended_at is not None
    assert_utc(failed)
    before = dump_tables(store)
    late = store.update_activity(
        activity.activity_id, status=ActivityStatus.SUCCEEDED, progress=1.0, message="late", error="x"
    )
    assert late == failed
    assert dump_tables(store) == before


def test_succeeded_completes_progress(store: SqlStore) -> None:
    new_workspace(store)
    activity_id = store.create_activity(WS, kind="run", target_id="r").activity_id
    done = store.update_activity(activity_id, status=ActivityStatus.SUCCEEDED)
    assert done.progress == 1.0 and done.ended_at is not None


def test_list_activities(store: SqlStore) -> None:
    new_workspace(store)
    new_workspace(store, "other")
    a = store.create_activity(WS, kind="run", target_id="r1", activity_id="a")
    b = store.create_activity(WS, kind="image_build", target_id="r1", activity_id="b")
    c = store.create_activity(WS, kind="run", target_id="r2", activity_id="c")
    store.create_activity("other", kind="run", target_id="r1", activity_id="d")
    assert store.list_activities(WS) == [a, b, c]
    assert store.list_activities(WS, target_id="r1") == [a, b]
    assert store.list_activities(WS, kind="run") == [a, c]
    assert store.list_activities(WS, target_id="r1", kind="run") == [a]


def test_errors(store: SqlStore) -> None:
    new_workspace(store)
    before = dump_tables(store)
    with pytest.raises(ActivityNotFoundError, match="Activity 'ghost' not found"):
        store.get_activity("ghost")
    with pytest.raises(ActivityNotFoundError, match="Activity 'ghost' not found"):
        store.update_activity("ghost", progress=0.5)
    with pytest.raises(WorkspaceNotFoundError):
        store.create_activity("nope", kind="run", target_id="r")
    with pytest.raises(WorkspaceNotFoundError):
        store.list_activities("nope")
    assert dump_tables(store) == before
