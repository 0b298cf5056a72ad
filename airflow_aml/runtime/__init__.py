"""What runs inside a compute target or an image. Imports no Airflow and no SQL layer.

    from airflow_aml.runtime import Run
    run = Run.get_context()
    run.log("accuracy", 0.93)

The names below are imported on first use (PEP 562): a scoring replica imports
``airflow_aml.runtime.scoring`` through this package, and must not pay for ``Run`` (workspace
context, datastores, snapshots: ~0.4 s of imports) before it can serve.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_aml.runtime.logger import RunLogger
    from airflow_aml.runtime.offline import OfflineRun
    from airflow_aml.runtime.run import Run

_EXPORTS = {
    "OfflineRun": "airflow_aml.runtime.offline",
    "Run": "airflow_aml.runtime.run",
    "RunLogger": "airflow_aml.runtime.logger",
}

__all__ = ["OfflineRun", "Run", "RunLogger"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
