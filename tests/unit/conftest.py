from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_aml.workspace import Workspace


@pytest.fixture
def aml_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "aml-home"
    monkeypatch.setenv("AML_HOME", str(home))
    monkeypatch.delenv("AML_STORE_URI", raising=False)
    monkeypatch.delenv("AML_SECRET_KEY", raising=False)
    monkeypatch.setenv("AML_PRINCIPAL", "alice")
    monkeypatch.setenv("AML_PROGRESS", "0")
    return home


@pytest.fixture
def store_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'aml.db'}"


@pytest.fixture
def workspace(aml_home: Path, store_uri: str, tmp_path: Path) -> Workspace:
    return Workspace.create("ws", store_uri=store_uri, datastore_root=tmp_path / "datastore")


CONN_ID = "aml_test"


@pytest.fixture
def aml_conn(workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An ``aml_workspace`` connection (from the environment) naming the test workspace."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps({
            "conn_type": "aml_workspace", "schema": workspace.name,
            "extra": {"store_uri": workspace.store_uri, "datastore_root": str(tmp_path / "datastore")},
        }),
    )
    return CONN_ID


class FakeTaskInstance:
    """The part of a task instance that our operators touch."""

    def __init__(self, dag_id: str = "dag", task_id: str = "task", run_id: str = "manual__1", map_index: int = -1):
        self.dag_id, self.task_id, self.run_id, self.map_index = dag_id, task_id, run_id, map_index
        self.try_number = 1
        self.xcom: dict[str, Any] = {}
        self.stats_tags: dict[str, str] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value

    def get_first_reschedule_date(self, context: Any) -> None:
        return None


class FakeTaskStateStore:
    """Airflow's ``context["task_state_store"]`` (get/set of JSON values per task instance, kept
    across its tries): pass the same one to two contexts to make a retry of one task instance."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        if value is None:
            raise ValueError("Cannot set value as None")
        self.values[key] = value


def make_context(*, task_state: FakeTaskStateStore | None = None, **ti_fields: Any) -> dict[str, Any]:
    return {
        "ti": FakeTaskInstance(**ti_fields), "outlet_events": defaultdict(SimpleNamespace),
        "task_state_store": task_state if task_state is not None else FakeTaskStateStore(),
    }


@pytest.fixture
def context() -> dict[str, Any]:
    return make_context()


@pytest.fixture
def script_dir(tmp_path: Path) -> Path:
    """A source directory with a tiny training script that logs a metric and writes an output."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(
        "import argparse, pathlib, time\n"
        "from airflow_aml.runtime import Run\n"
        "p = argparse.ArgumentParser(); p.add_argument('--C', type=float, default=1.0)\n"
        "p.add_argument('--sleep', type=float, default=0.0); a = p.parse_args()\n"
        "run = Run.get_context()\n"
        "time.sleep(a.sleep)\n"
        "run.log('accuracy', min(0.99, 0.5 + a.C / 10))\n"
        "print('trained with C', a.C)\n"
        "pathlib.Path('outputs').mkdir(exist_ok=True)\n"
        "pathlib.Path('outputs/model.txt').write_text(f'C={a.C}')\n"
    )
    return source
