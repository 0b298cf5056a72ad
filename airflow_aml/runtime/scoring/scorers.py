"""What answers ``/score``: the image's scoring script, or a built-in no-code scorer.

A script follows the Azure ML contract: ``init()`` once at startup, then ``run(raw_data)`` per
request with the request body as text, returning something JSON can encode. The built-in scorers
take the parsed body instead, so that it is parsed once.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from airflow_aml.runtime.scoring.bundle import APP_DIR, ImageManifest
from airflow_aml.runtime.scoring.errors import ScorerSetupError


class Scorer(Protocol):
    def init(self) -> None:
        """Load the model; called once, from a worker thread, before the service is ready."""

    def run(self, raw_data: str, payload: Any) -> Any:
        """Score one request: ``raw_data`` is the body as text, ``payload`` the same parsed."""


class BatchScorer(Scorer, Protocol):
    """A scorer that can also score several requests in one call (adaptive batching)."""

    @property
    def supports_batches(self) -> bool:
        """Known after ``init()``: a script batches only when it defines ``run_batch``."""

    def run_batch(self, items: list[tuple[str, Any]]) -> list[Any]:
        """One result per ``(raw_data, payload)``, in order; raise if any input is refused (each
        is then scored alone with ``run``, so that only the bad one fails)."""


def load_scorer(bundle_dir: Path, manifest: ImageManifest) -> Scorer:
    """The scorer ``image.json`` asks for. Built-ins are imported only when used (numpy, sklearn)."""
    if manifest.entry_script is not None:
        return ScriptScorer(bundle_dir / APP_DIR, manifest.entry_script)
    from airflow_aml.runtime.scoring import builtin

    model_dir = bundle_dir / manifest.models[0].path
    if manifest.builtin_scorer == "sklearn":
        return builtin.SklearnScorer(model_dir)
    return builtin.OnnxScorer(model_dir)


class ScriptScorer:
    """A ``score.py`` loaded by path, with ``app/`` as working directory and on ``sys.path``."""

    def __init__(self, app_dir: Path, entry_script: str) -> None:
        self.app_dir = app_dir.resolve()
        self.path = self.app_dir / entry_script
        self._run: Callable[[str], Any] | None = None
        self._run_batch: Callable[[list[str]], Any] | None = None

    def init(self) -> None:
        if not self.path.is_file():
            raise ScorerSetupError(f"Entry script {str(self.path)!r} does not exist in the bundle")
        # The script imports its helper modules from app/ and opens files relative to it, as in
        # an Azure ML container.
        if str(self.app_dir) not in sys.path:
            sys.path.insert(0, str(self.app_dir))
        # A name of its own per script: two bundles served by one process (tests) do not clash.
        name = "aml_entry_script_" + hashlib.sha256(str(self.path).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(name, self.path)
        if spec is None or spec.loader is None:
            raise ScorerSetupError(f"Cannot load {str(self.path)!r} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # pickle and dataclasses look the module up by name
        with _working_directory(self.app_dir):
            spec.loader.exec_module(module)
            run = getattr(module, "run", None)
            if not callable(run):
                raise ScorerSetupError(f"{self.path.name} must define run(raw_data)")
            init = getattr(module, "init", None)
            if callable(init):
                init()
            run_batch = getattr(module, "run_batch", None)
        self._run = run
        # Opting in to adaptive batching: run_batch(list_of_raw_data) -> one result per input.
        self._run_batch = run_batch if callable(run_batch) else None

    @property
    def supports_batches(self) -> bool:
        return self._run_batch is not None

    def run(self, raw_data: str, payload: Any) -> Any:
        if self._run is None:
            raise ScorerSetupError("The scoring script was not initialised")
        return self._run(raw_data)

    def run_batch(self, items: list[tuple[str, Any]]) -> list[Any]:
        if self._run_batch is None:
            raise ScorerSetupError("The scoring script defines no run_batch")
        results = self._run_batch([raw for raw, _ in items])
        return list(results)


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    # The server process itself runs in app/ (see __main__); in-process use (tests, notebooks)
    # gets app/ as working directory only while the script is imported and initialised.
    previous = os.getcwd()
    if Path(previous) == path:
        yield
        return
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)
