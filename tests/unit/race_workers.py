"""Process entry points for tests/unit/test_idempotency_race.py (importable, as ``spawn`` needs)."""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any

KEY = "dag=d,task=t,run=r,map=-1"  # what operators.base.idempotency_key builds, for one task instance


def race(kind: str, store_uri: str, home: str, folder: str, barrier: Any, results: Any) -> None:
    """Do what one copy of a task does, at the same moment as the other copies."""
    try:
        os.environ.update({"AML_HOME": home, "AML_PRINCIPAL": "alice", "AML_PROGRESS": "0"})
        from airflow_aml.images import builders
        from airflow_aml.runconfig import RunConfiguration
        from airflow_aml.workspace import Workspace
        from tests.unit.images.conftest import FakeBuilder

        builders.register_image_builder("fake", FakeBuilder)
        ws = Workspace.get("ws", store_uri=store_uri)
        barrier.wait()
        if kind == "run":
            made = ws.experiment("e").submit(folder, RunConfiguration(script="train.py"), idempotency_key=KEY).id
        elif kind == "model":
            made = ws.register_model("m", path=Path(folder) / "train.py", idempotency_key=KEY).id
        else:
            spec = {"models": ["m:1"], "source_directory": folder, "entry_script": "score.py"}
            made = ws.create_image("img", spec, builder="fake", idempotency_key=KEY).id
        results.put(("ok", made))
    except BaseException:
        results.put(("error", traceback.format_exc()))
