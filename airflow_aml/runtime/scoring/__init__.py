"""The scoring web service of an image: Azure ML's ``init()``/``run()`` contract over HTTP.

    python -m airflow_aml.runtime.scoring --bundle DIR --port 5001 [--config config.json]

Runs inside images and containers that have no Airflow: it imports only the standard library,
FastAPI/Starlette/uvicorn and pydantic (numpy and scikit-learn only when a built-in scorer is
used). See ``app`` for the endpoints and ``service`` for the request path.
"""

from airflow_aml.runtime.scoring.app import create_app
from airflow_aml.runtime.scoring.auth import generate_key, hash_key
from airflow_aml.runtime.scoring.config import ConfigWatcher, ScoringConfig, load_config
from airflow_aml.runtime.scoring.errors import ScoringInputError
from airflow_aml.runtime.scoring.telemetry import JsonlTelemetrySink, TelemetrySink

__all__ = [
    "ConfigWatcher",
    "JsonlTelemetrySink",
    "ScoringConfig",
    "ScoringInputError",
    "TelemetrySink",
    "create_app",
    "generate_key",
    "hash_key",
    "load_config",
]
