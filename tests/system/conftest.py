from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow's metadata database (SQLite) in the session's throw-away $AIRFLOW_HOME."""
    home = Path(os.environ["AIRFLOW_HOME"])
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, env=os.environ.copy(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300,
    )
    return home
