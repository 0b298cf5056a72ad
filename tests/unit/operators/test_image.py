"""``AmlBuildImageOperator`` on a fast fake builder (the real ``local`` builder, and the deployment
that serves its image, are exercised once in ``test_deployment.py``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

from airflow_aml.entities import ImageRecord, ImageStatus
from airflow_aml.exceptions import ImageBuildError
from airflow_aml.images import builders
from airflow_aml.images import image as image_module
from airflow_aml.images.build import execute_build
from airflow_aml.images.builders import BuildResult, LogFn, ProgressFn
from airflow_aml.operators.image import AmlBuildImageOperator, model_references
from airflow_aml.triggers.activity import AmlActivityTrigger
from airflow_aml.triggers.settle import settle_seconds
from airflow_aml.workspace import Workspace
from tests.unit.conftest import make_context
from tests.unit.images.conftest import SCORE_PY, FakeBuilder


class SlowFakeBuilder(FakeBuilder):
    """The fake builder, taking long enough for the operator to report progress."""

    kind = "slowfake"

    def build(self, bundle: Path, record: ImageRecord, progress: ProgressFn, log: LogFn) -> BuildResult:
        progress(0.5, "Half way there")
        time.sleep(0.8)
        return super().build(bundle, record, progress, log)


@pytest.fixture
def fake() -> Iterator[type[FakeBuilder]]:
    FakeBuilder.calls = []
    FakeBuilder.fail_with = None
    builders.register_image_builder("fake", FakeBuilder)
    builders.register_image_builder("slowfake", SlowFakeBuilder)
    yield FakeBuilder
    FakeBuilder.fail_with = None
    builders._KINDS.pop("fake", None)
    builders._KINDS.pop("slowfake", None)


@pytest.fixture
def ws(workspace: Workspace, tmp_path: Path) -> Workspace:
    model = tmp_path / "model" / "model.txt"
    model.parent.mkdir()
    model.write_text("weights\n")
    workspace.register_model("m", path=model)
    return workspace


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "score"
    folder.mkdir()
    (folder / "score.py").write_text(SCORE_PY)
    return folder


def _op(aml_conn: str, source: Path, **kwargs: Any) -> AmlBuildImageOperator:
    defaults: dict[str, Any] = {
        "task_id": "build", "image_name": "scorer", "models": ["m"], "source_directory": str(source),
        "entry_script": "score.py", "builder": "fake", "aml_conn_id": aml_conn, "poll_interval": 0.1,
    }
    return AmlBuildImageOperator(**{**defaults, **kwargs})


def test_model_references() -> None:
    assert model_references("m") == ["m"]
    assert model_references(["m:2", {"name": "n", "version": 3, "id": "n:3"}]) == ["m:2", "n:3"]
    assert model_references([{"name": "n"}, {"name": "o", "version": 1}]) == ["n", "o:1"]


def test_build_returns_the_version_and_is_idempotent_per_task_instance(
    aml_conn: str, ws: Workspace, source: Path, fake: type[FakeBuilder]
) -> None:
    context = make_context(task_id="build")
    op = _op(aml_conn, source, tags={"stage": "dev"}, pip=["numpy"])
    result = op.execute(context)
    assert result == {"name": "scorer", "version": 1, "id": "scorer:1", "location": result["location"],
                      "builder": "fake"}
    assert result["location"] and Path(result["location"]).is_dir()
    image = ws.get_image("scorer", 1)
    assert image.status is ImageStatus.SUCCEEDED and image.model_ids == ["m:1"]
    ti = context["ti"]  # the task instance is recorded, for the views on Airflow's task pages
    assert image.tags == {"stage": "dev", "airflow.dag_id": ti.dag_id, "airflow.task_id": "build",
                          "airflow.run_id": ti.run_id, "airflow.map_index": str(ti.map_index)}
    assert context["ti"].xcom["_link_AmlImageLink"].endswith("/workspaces/ws/images/scorer/versions/1")
    # A retry of the same task instance finds its version; another DAG run builds the next one.
    assert op.execute(make_context(task_id="build"))["version"] == 1
    assert op.execute(make_context(task_id="build", run_id="manual__2"))["version"] == 2
    assert len(fake.calls) == 2


def test_models_from_the_register_operators_xcom(aml_conn: str, ws: Workspace, source: Path, fake) -> None:
    xcom = {"name": "m", "version": 1, "id": "m:1", "run_id": None}
    result = _op(aml_conn, source, models=[xcom]).execute(make_context())
    assert ws.get_image("scorer", result["version"]).model_ids == ["m:1"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"entry_script": None}, "exactly one of entry_script"),
        ({"builtin_scorer": "sklearn"}, "exactly one of entry_script"),
        ({"models": ["nope"]}, "nope"),
        ({"models": ["m:7"]}, "m"),
        ({"models": []}, "models"),
        ({"builder": "nosuch"}, "nosuch"),
        ({"pip": ["numpy --index-url http://evil"]}, "not a package requirement"),
        ({"entry_script": "missing.py"}, "missing.py"),
        ({"image_name": "bad name"}, "bad name"),
        ({"base_image": "Not A Reference!"}, "base_image"),
    ],
)
def test_bad_spec_fails_without_retry_and_creates_nothing(
    aml_conn: str, ws: Workspace, source: Path, fake, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(AirflowFailException, match=match):
        _op(aml_conn, source, **kwargs).execute(make_context())
    assert ws.list_images() == []


def test_build_failure_raises_with_the_error_and_the_log_tail(
    aml_conn: str, ws: Workspace, source: Path, fake: type[FakeBuilder]
) -> None:
    fake.fail_with = ImageBuildError("pip could not resolve numpy==0.0.1")
    with pytest.raises(AirflowException) as raised:
        _op(aml_conn, source).execute(make_context())
    assert not isinstance(raised.value, AirflowFailException)  # a build can fail transiently: retry
    message = str(raised.value)
    assert "pip could not resolve numpy==0.0.1" in message
    assert "Build log (end):" in message and "fake builder line 2" in message
    assert ws.get_image("scorer", 1).status is ImageStatus.FAILED
    # The retry builds again (a Failed version is not reused).
    fake.fail_with = None
    assert _op(aml_conn, source).execute(make_context())["version"] == 2


def test_progress_is_logged_while_building(aml_conn: str, ws: Workspace, source: Path, fake, capsys) -> None:
    _op(aml_conn, source, builder="slowfake").execute(make_context())
    output = capsys.readouterr()
    assert "Image scorer:1:" in output.out + output.err
    assert "Half way there" in output.out + output.err


@pytest.fixture
def detached_builds(monkeypatch: pytest.MonkeyPatch) -> list:
    """``wait=False`` builds recorded instead of started in a process (which would not know the fake builder)."""
    plans: list = []
    monkeypatch.setattr(image_module, "start_build_process", lambda workspace, plan: plans.append(plan))
    return plans


def test_deferrable_defers_to_the_build_activity(
    aml_conn: str, ws: Workspace, source: Path, fake, detached_builds: list
) -> None:
    context = make_context()
    op = _op(aml_conn, source, deferrable=True, defer_after=0.3, timeout=600, poll_interval=3)
    started = time.monotonic()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    assert time.monotonic() - started >= 0.3  # waited in the task first
    trigger = deferred.value.trigger
    assert isinstance(trigger, AmlActivityTrigger) and deferred.value.method_name == "execute_complete"
    assert trigger.settle == settle_seconds()
    image = ws.get_image("scorer", 1)
    assert image.status is ImageStatus.BUILDING
    assert (trigger.activity_id, trigger.poll_interval) == (image.record.activity_id, 3)
    assert trigger.end_time is not None and trigger.end_time > time.time() + 500

    [plan] = detached_builds
    execute_build(ws, plan)  # what the detached build process does
    event = {"status": "success", "message": "ok", "activity_id": trigger.activity_id, "target_id": "scorer:1"}
    assert op.execute_complete(context, event)["id"] == "scorer:1"

    with pytest.raises(AirflowException, match="timed out"):
        op.execute_complete(context, {"status": "timeout", "message": "timed out", "target_id": "scorer:1"})


def test_deferred_build_failure_carries_the_log_tail(
    aml_conn: str, ws: Workspace, source: Path, fake: type[FakeBuilder], detached_builds: list
) -> None:
    context = make_context()
    op = _op(aml_conn, source, deferrable=True, defer_after=0)
    with pytest.raises(TaskDeferred):
        op.execute(context)
    fake.fail_with = ImageBuildError("no space left")
    execute_build(ws, detached_builds[0])
    event = {"status": "error", "message": "Activity a ended Failed: no space left", "target_id": "scorer:1"}
    with pytest.raises(AirflowException, match="no space left") as raised:
        op.execute_complete(context, event)
    assert "fake builder line 2" in str(raised.value)


def test_deferrable_build_that_ends_within_defer_after_never_defers(
    aml_conn: str, ws: Workspace, source: Path, fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    def build_soon(workspace: Workspace, plan) -> None:  # the detached build process, finishing in 0.3 s
        threading.Timer(0.3, execute_build, args=(workspace, plan)).start()

    monkeypatch.setattr(image_module, "start_build_process", build_soon)
    result = _op(aml_conn, source, deferrable=True, defer_after=60, timeout=600).execute(make_context())
    assert result["id"] == "scorer:1"  # returned, not deferred
    assert ws.get_image("scorer", 1).status is ImageStatus.SUCCEEDED


def test_no_wait_returns_the_building_version(aml_conn: str, ws: Workspace, source: Path, fake,
                                              detached_builds: list) -> None:
    result = _op(aml_conn, source, wait_for_completion=False).execute(make_context())
    assert result["id"] == "scorer:1" and result["location"] is None
    assert ws.get_image("scorer", 1).status is ImageStatus.BUILDING
    assert len(detached_builds) == 1
