"""The ``local`` builder end to end: real virtualenvs built with uv (from its local cache)."""

from __future__ import annotations

import json
import pickle
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_aml.entities import ActivityStatus, ImageStatus
from airflow_aml.exceptions import ImageBuildError
from airflow_aml.images.local import PROP_ENV, PROP_PYTHON
from airflow_aml.images.worker import WORKER_LOG, build_dir
from airflow_aml.workspace import Workspace

pytestmark = pytest.mark.slow

NO_SUCH_PACKAGE = "airflow-aml-no-such-package-xyz==1.0"


def _spec(source: Path, **fields: Any) -> dict[str, Any]:
    return {"models": ["m"], "source_directory": str(source), "entry_script": "score.py", **fields}


def _python(python: str, code: str) -> subprocess.CompletedProcess[str]:
    # cwd=/: the repository's own airflow_aml must not be what gets imported.
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=False, cwd="/")


def test_build_then_rebuild_with_a_new_model_reuses_the_environment(
    ws: Workspace, source: Path, model_file: Path, aml_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    image = ws.create_image("scorer", _spec(source))  # no pip lines: the runtime's deps only
    first_s = time.monotonic() - started

    assert image.status is ImageStatus.SUCCEEDED and image.location == str(image.bundle_path())
    python = image.properties[PROP_PYTHON]
    assert python.startswith(str(aml_home / "images" / "envs")) and Path(python).exists()
    probe = _python(python, "import airflow_aml.runtime, fastapi, uvicorn, sys; print(airflow_aml.runtime.__file__)")
    assert probe.returncode == 0, probe.stderr
    hidden = _python(python, "import airflow")  # the main environment's packages are not visible
    assert hidden.returncode != 0
    activity = image.activity
    assert (activity.status, activity.progress) == (ActivityStatus.SUCCEEDED, 1.0)
    log = image.get_build_log()
    assert "Building environment" in log and "$ " in log  # uv's commands and output

    ws.register_model("m", path=model_file)  # m:2: a new model, the same dependencies
    started = time.monotonic()
    second = ws.create_image("scorer", _spec(source))
    second_s = time.monotonic() - started
    assert second.version == 2 and second.model_ids == ["m:2"] and second.digest != image.digest
    assert second.properties[PROP_ENV] == image.properties[PROP_ENV]
    assert "Using cached environment" in second.get_build_log()
    assert second_s < 5.0, f"a rebuild with unchanged dependencies took {second_s:.1f} s"
    with capsys.disabled():
        print(f"\n[image build timings] first build {first_s:.2f} s, rebuild with a new model {second_s:.2f} s")


def test_a_failing_build_records_uv_error(ws: Workspace, source: Path, aml_home: Path) -> None:
    with pytest.raises(ImageBuildError, match="Image 'scorer' version 1 in workspace 'ws' failed to build: "
                                              "Building the environment failed") as caught:
        ws.create_image("scorer", _spec(source, pip=[NO_SUCH_PACKAGE]))
    assert "airflow-aml-no-such-package-xyz" in str(caught.value)
    image = ws.get_image("scorer")
    assert image.status is ImageStatus.FAILED and "airflow-aml-no-such-package-xyz" in (image.error or "")
    log = image.get_build_log()
    assert "uv pip install" in log and "airflow-aml-no-such-package-xyz" in log
    assert "ERROR: Building the environment failed" in log
    assert "airflow-aml-no-such-package-xyz" in image.record.build_log_tail
    activity = image.activity
    assert activity.status is ActivityStatus.FAILED and "airflow-aml-no-such-package-xyz" in (activity.error or "")
    envs = aml_home / "images" / "envs"
    assert not [p for p in envs.iterdir() if p.is_dir()]  # the half-built environment was removed


def test_wait_false_builds_in_a_detached_process(ws: Workspace, source: Path) -> None:
    started = time.monotonic()
    image = ws.create_image("scorer", _spec(source), wait=False)
    assert time.monotonic() - started < 5.0
    assert image.status is ImageStatus.BUILDING and image.properties["aml.build_process"] == "worker"
    (source / "score.py").write_text("changed after create returned\n")  # the staged copy is built

    image.wait_for_completion(timeout=300)
    assert image.status is ImageStatus.SUCCEEDED and image.activity.status is ActivityStatus.SUCCEEDED
    assert "changed" not in (image.bundle_path() / "app" / "score.py").read_text()
    folder = build_dir("ws", "scorer", 1)
    assert "Image 'scorer' version 1 built" in (folder / WORKER_LOG).read_text()
    assert not (folder / "app").exists()  # the staged copies are removed once bundled
    assert _python(image.properties[PROP_PYTHON], "import airflow_aml.runtime").returncode == 0


def test_builtin_sklearn_scorer(ws: Workspace, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    path = tmp_path / "clf" / "model.pkl"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps(model))
    ws.register_model("clf", path=path)
    image = ws.create_image("clf-scorer", {"models": ["clf"], "builtin_scorer": "sklearn"})
    assert image.status is ImageStatus.SUCCEEDED
    manifest = json.loads((image.bundle_path() / "image.json").read_text())
    assert manifest["builtin_scorer"] == "sklearn" and manifest["entry_script"] is None
    code = (
        "import pickle, sklearn; "
        f"m = pickle.load(open({str(image.bundle_path() / 'models' / 'clf' / '1' / 'model.pkl')!r}, 'rb')); "
        "print(sklearn.__version__, [int(x) for x in m.predict([[0.0], [3.0]])])"
    )
    probe = _python(image.properties[PROP_PYTHON], code)
    assert probe.returncode == 0, probe.stderr
    import sklearn

    # Pinned to the scikit-learn that pickled the model.
    assert probe.stdout.strip() == f"{sklearn.__version__} [0, 1]"


def test_builtin_onnx_scorer_of_a_converted_model_needs_no_scikit_learn(ws: Workspace, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    path = tmp_path / "clf" / "model.pkl"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps(model))
    ws.register_model("clf", path=path)
    image = ws.create_image("clf-onnx", {"models": ["clf"], "builtin_scorer": "onnx", "convert_to_onnx": True})
    assert image.status is ImageStatus.SUCCEEDED
    folder = image.bundle_path() / "models" / "clf" / "1"
    code = (
        "import importlib.util, pathlib; from airflow_aml.runtime.scoring.builtin import OnnxScorer; "
        f"s = OnnxScorer(pathlib.Path({str(folder)!r})); s.init(); "
        "print(s.run('', {'data': [[0.0], [3.0]]})['predictions'], importlib.util.find_spec('sklearn') is None)"
    )
    probe = _python(image.properties[PROP_PYTHON], code)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[0, 1] True"  # the converted model, served by onnxruntime alone
