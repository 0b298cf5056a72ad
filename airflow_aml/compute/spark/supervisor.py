"""The supervisor of a spark run: the local supervisor, with the script started by ``spark-submit``.

Started detached by ``SparkComputeTarget.submit`` as ``python -m airflow_aml.compute.spark`` (the
package's ``__main__``). Snapshot, environment, outputs and the final status are the local
supervisor's (:class:`~airflow_aml.compute.run_supervisor.Supervisor`); only the command differs::

    spark-submit --master <master> --deploy-mode client [options] --py-files snapshot.zip script.py args

Client mode: the driver (the run's script) runs on this machine, in the run's work folder, so its
output is spark-submit's output, streamed into the run log, and its ``outputs/`` is the work
folder's. Executors get the snapshot through ``--py-files`` (the script's own modules import
there too). The whole spark-submit process group (the launcher JVM, which is the driver JVM in
client mode, and the Python driver it starts) is stopped on cancel and at the time limit by the
local :class:`~airflow_aml.compute.script.ScriptRunner`; on a standalone cluster the master
removes the application's executors when its driver goes away.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from airflow_aml.compute.logstream import LogBatcher
from airflow_aml.compute.phases import control
from airflow_aml.compute.run_supervisor import Supervisor, read_target_settings
from airflow_aml.compute.run_supervisor import main as supervisor_main
from airflow_aml.compute.script import ScriptOutcome, ScriptRunner, build_script_env
from airflow_aml.compute.spark.config import SparkComputeConfig
from airflow_aml.entities import RunStatus
from airflow_aml.exceptions import RunConfigurationError
from airflow_aml.runconfig import RunConfiguration

log = logging.getLogger(__name__)

SPARK_SUPERVISOR_MODULE = "airflow_aml.compute.spark"  # its __main__


def spark_home() -> Path:
    """The Spark distribution the pyspark package ships (bin/spark-submit, jars/)."""
    try:
        import pyspark
    except ImportError as exc:
        raise RunConfigurationError("The spark compute target needs pyspark: pip install 'airflow-aml[spark]'") from exc
    return Path(pyspark.__file__).resolve().parent


def spark_submit() -> Path:
    return spark_home() / "bin" / "spark-submit"


class SparkSupervisor(Supervisor):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = read_target_settings(self.run_id)
        self.target_config = SparkComputeConfig.parse(settings["config"])
        # Resolved by the submitter (a spark_conn_id's connection is read there, not here).
        self.submit_options: list[str] = list(settings["submit_options"])
        self._snapshot_zip: Path | None = None

    def execute(self, run_id: str, config: RunConfiguration, interpreter: str, zip_path: Path,
                batcher: LogBatcher, **kwargs: Any) -> RunStatus:
        # The snapshot zip is what --py-files ships to the executors (a sweep's children share it).
        self._snapshot_zip = zip_path
        return super().execute(run_id, config, interpreter, zip_path, batcher, **kwargs)

    def spark_command(self, config: RunConfiguration) -> list[str]:
        command = [str(spark_submit()), *self.submit_options]
        if self._snapshot_zip is not None:
            command += ["--py-files", str(self._snapshot_zip)]
        return [*command, config.script, *config.arguments]

    def run_script(
        self,
        run_id: str,
        config: RunConfiguration,
        interpreter: str,
        work: Path,
        batcher: LogBatcher,
        *,
        parent_run_id: str | None = None,
    ) -> ScriptOutcome:
        env = build_script_env(
            os.environ,
            config.environment_variables,
            self.identity(run_id, parent_run_id),
            venv=Path(interpreter).parent.parent if config.environment.kind == "virtualenv" else None,
        )
        # The driver and the Python workers run the run's interpreter (its virtualenv's packages);
        # SPARK_HOME pins the distribution to the supervisor's pyspark, not one found on PATH.
        env["PYSPARK_PYTHON"] = env["PYSPARK_DRIVER_PYTHON"] = interpreter
        env["SPARK_HOME"] = str(spark_home())
        command = self.spark_command(config)
        self.mark_running(run_id)
        control(batcher, "Starting spark-submit: " + " ".join(command[1:]))
        return ScriptRunner(
            self.store, run_id, command=command, cwd=work, env=env, batcher=batcher,
            stop_event=self.stop, max_duration=config.max_run_duration_seconds,
            poll_interval=self.poll_interval, kill_grace=float(self.target_config.stop_timeout),
        ).run()


def main(argv: list[str] | None = None) -> int:
    return supervisor_main(argv, supervisor_class=SparkSupervisor)
