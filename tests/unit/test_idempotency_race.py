"""Two (or four) copies of one Airflow task instance at once create exactly one run, one model
version, one image and one deployment update.

A zombie task and its retry, or a DAG run triggered twice, can run the same task instance at the
same moment: both look the key up, find nothing, and both insert. The per-attempt unique index
(migration 0004) makes the database refuse the second insert and the SDK follow the first.
The multi-process tests race real processes on SQLite and PostgreSQL; the stale-lookup tests
force the interleaving that the processes hit only sometimes.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from airflow_aml.entities import RunStatus
from airflow_aml.exceptions import DuplicateAttemptError
from airflow_aml.runconfig import RunConfiguration
from airflow_aml.workspace import Workspace
from tests.unit import race_workers
from tests.unit.images.conftest import SCORE_PY, FakeBuilder

COPIES = 4


@pytest.fixture
def race_ws(aml_home: Path, sql_store_uri: str, tmp_path: Path) -> Workspace:
    return Workspace.create("ws", store_uri=sql_store_uri, datastore_root=tmp_path / "datastore")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("print('trained')\n")
    (src / "score.py").write_text(SCORE_PY)
    return src


def _race(kind: str, ws: Workspace, home: Path, folder: Path) -> list[str]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(COPIES)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=race_workers.race, args=(kind, ws.store_uri, str(home), str(folder), barrier, results))
        for _ in range(COPIES)
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=180) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    errors = [detail for status, detail in outcomes if status != "ok"]
    assert errors == [], "\n".join(errors)
    return [detail for _, detail in outcomes]


def test_racing_copies_submit_one_run(race_ws: Workspace, aml_home: Path, folder: Path) -> None:
    made = _race("run", race_ws, aml_home, folder)
    runs = race_ws.experiment("e").get_runs()
    assert len(runs) == 1 and set(made) == {runs[0].id}
    assert runs[0].wait_for_completion(timeout=120)["status"] == "Completed"


def test_racing_copies_register_one_model_version(race_ws: Workspace, aml_home: Path, folder: Path) -> None:
    made = _race("model", race_ws, aml_home, folder)
    assert set(made) == {"m:1"} and [m.id for m in race_ws.list_models()] == ["m:1"]
    # The losers' copies of the files were removed: only the winner's folder is in the datastore.
    assert {p.path.split("/")[2] for p in race_ws.get_default_datastore().list("models/m/")} == {
        race_ws.get_model("m").record.path.split("/")[2]
    }


def test_racing_copies_build_one_image(race_ws: Workspace, aml_home: Path, folder: Path) -> None:
    race_ws.register_model("m", path=folder / "train.py")
    made = _race("image", race_ws, aml_home, folder)
    assert set(made) == {"img:1"} and [i.id for i in race_ws.list_images()] == ["img:1"]


# ------------------------------------------------------------------ the interleaving, forced
def test_a_stale_lookup_follows_the_run_created_meanwhile(
    workspace: Workspace, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = workspace.experiment("e").submit(folder, RunConfiguration(script="train.py"), idempotency_key="k")
    real_find = workspace.store.find_run_by_idempotency_key
    calls: list[int] = []

    def stale_then_real(ws_name: str, key: str):  # the lookup ran before the other copy's insert
        calls.append(1)
        return [] if len(calls) == 1 else real_find(ws_name, key)

    monkeypatch.setattr(workspace.store, "find_run_by_idempotency_key", stale_then_real)
    lines: list[str] = []
    second = workspace.experiment("e").submit(
        folder, RunConfiguration(script="train.py"), idempotency_key="k", log=lines.append
    )
    assert second.id == first.id and len(calls) == 2
    assert len(workspace.experiment("e").get_runs()) == 1
    first.wait_for_completion(timeout=120)
    assert first.status is RunStatus.COMPLETED


def test_the_store_refuses_a_second_row_for_one_attempt(workspace: Workspace) -> None:
    store = workspace.store
    store.create_run(workspace="ws", experiment="e", submitted_by="a", idempotency_key="k", idempotency_attempt=1)
    with pytest.raises(DuplicateAttemptError, match="attempt 1 of idempotency key 'k'"):
        store.create_run(workspace="ws", experiment="e", submitted_by="a", idempotency_key="k", idempotency_attempt=1)
    store.create_run(workspace="ws", experiment="e", submitted_by="a", idempotency_key="k", idempotency_attempt=2)
    store.create_run(workspace="ws", experiment="e", submitted_by="a")  # no key: never refused
    store.create_run(workspace="ws", experiment="e", submitted_by="a")


def test_a_stale_lookup_follows_the_model_and_image_created_meanwhile(
    workspace: Workspace, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_aml.images import builders

    builders.register_image_builder("fake", FakeBuilder)
    monkeypatch.setattr(FakeBuilder, "calls", [])
    try:
        first = workspace.register_model("m", path=folder / "train.py", idempotency_key="k")
        spec = {"models": ["m:1"], "source_directory": str(folder), "entry_script": "score.py"}
        image = workspace.create_image("img", spec, builder="fake", idempotency_key="k")
        real_models, real_images = workspace.store.search_models, workspace.store.search_images
        stale = {"models": True, "images": True}

        def models(*args, **kwargs):
            if kwargs.get("idempotency_key") and stale.pop("models", False):
                return []
            return real_models(*args, **kwargs)

        def images(*args, **kwargs):
            if kwargs.get("idempotency_key") and stale.pop("images", False):
                return []
            return real_images(*args, **kwargs)

        monkeypatch.setattr(workspace.store, "search_models", models)
        monkeypatch.setattr(workspace.store, "search_images", images)
        assert workspace.register_model("m", path=folder / "train.py", idempotency_key="k").id == first.id
        assert workspace.create_image("img", spec, builder="fake", idempotency_key="k").id == image.id
        assert not stale  # both lookups were stale, both inserts refused and followed
        assert [m.id for m in workspace.list_models()] == ["m:1"]
        assert [i.id for i in workspace.list_images()] == ["img:1"] and len(FakeBuilder.calls) == 1
    finally:
        builders._KINDS.pop("fake", None)
