"""``SparkComputeTarget``, the ``spark`` compute kind: a run's script under ``spark-submit``.

::

    ws.register_compute_target("spark-local", kind="spark", config={"master": "local[2]"})
    ws.experiment("iris").submit("src/", RunConfiguration(script="train.py", target="spark-local"))

It is the local target with another supervisor (:mod:`.supervisor`): ``submit`` starts that
supervisor detached on this machine, and the supervisor runs ``spark-submit`` in client mode, so
the driver (the run's script) runs here and logs to the workspace as a local run's script does:
over HTTP with a run token when the workspace is served, else with the store URI. Cancel, the
time limit and ``worker_alive`` are the local target's (the supervisor owns the spark-submit
process group).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow_aml.compute import register_compute_kind
from airflow_aml.compute.local import LocalComputeTarget
from airflow_aml.compute.spark.config import SparkComputeConfig
from airflow_aml.compute.spark.connection import connection_submit_options
from airflow_aml.compute.spark.supervisor import SPARK_SUPERVISOR_MODULE, spark_submit
from airflow_aml.context import WorkspaceContext
from airflow_aml.entities import ComputeTargetRecord
from airflow_aml.exceptions import RunConfigurationError
from airflow_aml.runconfig import RunConfiguration

KIND = "spark"


class SparkComputeTarget(LocalComputeTarget):
    kind = KIND
    supervisor_module = SPARK_SUPERVISOR_MODULE

    def __init__(self, workspace: WorkspaceContext, record: ComputeTargetRecord | None) -> None:
        super().__init__(workspace, record)
        self.settings = SparkComputeConfig.parse(self.config, target=self.name)
        self._options: list[str] | None = None

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> None:
        SparkComputeConfig.parse(config)

    def validate(self, run_config: RunConfiguration, source_directory: Path) -> None:
        super().validate(run_config, source_directory)  # script, conda file, uv for a virtualenv
        if not run_config.script.endswith(".py"):
            raise RunConfigurationError(
                f"Compute target {self.name!r} (spark) runs Python scripts: {run_config.script!r} is not a .py file"
            )
        submit = spark_submit()  # RunConfigurationError without pyspark
        if not submit.is_file():
            raise RunConfigurationError(f"Compute target {self.name!r}: pyspark has no {submit}")
        # Spark fails only after a while without a JVM, with a message buried in the driver log.
        java_home = os.environ.get("JAVA_HOME")
        if not (java_home and (Path(java_home) / "bin" / "java").is_file()) and shutil.which("java") is None:
            raise RunConfigurationError(
                f"Compute target {self.name!r} (spark) needs Java (17 or later): none on PATH and no $JAVA_HOME"
            )
        self.submit_options()  # a spark_conn_id that cannot be resolved fails before the run exists

    def submit_options(self) -> list[str]:
        """The spark-submit options of this target: its own fields, or its Airflow connection's,
        resolved here (the submitting process) once per target object."""
        if self._options is None:
            if self.settings.spark_conn_id:
                self._options = connection_submit_options(self.settings, target=self.name)
            else:
                self._options = self.settings.submit_options()
        return self._options

    def target_settings(self) -> dict[str, Any]:
        return {"config": self.settings.model_dump(mode="json"), "submit_options": self.submit_options()}


def register() -> None:
    """Register ``SparkComputeTarget`` as the ``spark`` compute kind (done on import)."""
    register_compute_kind(KIND, SparkComputeTarget)


register()
