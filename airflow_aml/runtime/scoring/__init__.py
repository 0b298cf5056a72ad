"""The scoring web service of an image: Azure ML's ``init()``/``run()`` contract over HTTP.

    python -m airflow_aml.runtime.scoring --bundle DIR --port 5001 [--config config.json]

Runs inside images and containers that have no Airflow: it imports only the standard library,
FastAPI/Starlette/uvicorn and pydantic (numpy and scikit-learn only when a built-in scorer is
used). See ``app`` for the endpoints and ``service`` for the request path.

The names below are imported on first use (PEP 562): the SDK reads the scoring config and key
hashes from here, and must not pay for importing FastAPI to do so.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ConfigWatcher": "airflow_aml.runtime.scoring.config",
    "JsonlTelemetrySink": "airflow_aml.runtime.scoring.telemetry",
    "ScoringConfig": "airflow_aml.runtime.scoring.config",
    "ScoringInputError": "airflow_aml.runtime.scoring.errors",
    "TelemetrySink": "airflow_aml.runtime.scoring.telemetry",
    "create_app": "airflow_aml.runtime.scoring.app",
    "generate_key": "airflow_aml.runtime.scoring.auth",
    "hash_key": "airflow_aml.runtime.scoring.auth",
    "load_config": "airflow_aml.runtime.scoring.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
