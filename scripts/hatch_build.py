"""Hatch build hook: a wheel ships the built workspace UI (``airflow_aml/service/ui_static``).

The bundle is not committed (it is built from ``ui/``), so ``pip install .`` builds it here when it
is missing or stale. Editable installs (``uv sync``) skip it: ``scripts/setup.sh`` builds it for the
working tree, and an editable install reads the tree's files directly.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class UiBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        subprocess.run(["bash", str(Path(self.root) / "scripts" / "build_ui.sh")], check=True, cwd=self.root)
