"""``OfflineRun``: what ``Run.get_context()`` returns outside a run (a script started by hand).

It logs to the console and keeps values in memory, so that one script runs the same under a
compute target and on a laptop. It is a ``RunLogger`` like the live ``Run``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow_aml.names import validate_metric_name
from airflow_aml.runtime.values import metric_value


class OfflineRun:
    id = "OfflineRun"
    experiment = "offline"

    def __init__(self) -> None:
        self.metrics: dict[str, list[Any]] = {}
        self.tags: dict[str, str] = {}
        self.properties: dict[str, str] = {}
        self.params: dict[str, str] = {}

    def _print(self, text: str) -> None:
        print(f"[offline run] {text}", file=sys.stderr)

    def log(self, name: str, value: float, *, step: int | None = None, description: str = "") -> None:
        validate_metric_name(name)
        self.metrics.setdefault(name, []).append(metric_value(name, value))
        self._print(f"{name} = {value}")

    def log_list(self, name: str, values: Iterable[float], *, description: str = "") -> None:
        for value in list(values):
            self.log(name, value)

    def log_row(self, name: str, *, description: str = "", **columns: Any) -> None:
        self.metrics.setdefault(name, []).append(dict(columns))
        self._print(f"{name} row {columns}")

    def log_table(self, name: str, value: Mapping[str, Sequence[float]], *, description: str = "") -> None:
        self.metrics.setdefault(name, []).append(dict(value))
        self._print(f"{name} table with columns {list(value)}")

    def log_image(self, name: str, path: str | Path | None = None, *, plot: Any = None, description: str = "") -> None:
        self._print(f"{name} image {path or 'figure'} (not stored offline)")

    def log_param(self, key: str, value: Any) -> None:
        self.params[key] = str(value)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update({k: str(v) for k, v in params.items()})

    def tag(self, key: str, value: str = "") -> None:
        self.tags[key] = str(value)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.tags.update({k: str(v) for k, v in tags.items()})

    def add_properties(self, properties: Mapping[str, Any]) -> None:
        self.properties.update({k: str(v) for k, v in properties.items()})

    def flush(self) -> None:
        pass

    def get_metrics(self, name: str | None = None, *, recursive: bool = False) -> dict[str, Any]:
        items = {k: (v[0] if len(v) == 1 else v) for k, v in self.metrics.items()}
        return {name: items[name]} if name and name in items else ({} if name else items)

    def upload_file(self, name: str, path_or_stream: Any) -> None:
        self._print(f"upload_file({name!r}) skipped offline")

    def upload_folder(self, name: str, path: str | Path) -> None:
        self._print(f"upload_folder({name!r}) skipped offline")

    def child_run(self, name: str | None = None, *, tags: Mapping[str, str] | None = None) -> OfflineRun:
        return OfflineRun()

    def complete(self) -> None:
        pass

    def fail(self, error: Any = None) -> None:
        pass

    def __enter__(self) -> OfflineRun:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass
