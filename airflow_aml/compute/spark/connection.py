"""A ``spark_conn_id`` target's spark-submit options, from the apache-spark provider's ``SparkSubmitHook``.

The hook is the one that knows how an Airflow ``spark`` connection becomes spark-submit options
(its host and port are the master; its extras the queue, deploy mode, keytab, principal ...), so it
builds them, and our supervisor runs the resulting command as it runs any spark run: its output
streamed into the run, cancel and the time limit on its process group. ``SparkSubmitHook.submit``
itself is not used: it blocks in the calling process and logs to Airflow's task log, where the run's
own log, cancel and the time limit would be lost.

This runs where the run is submitted (an Airflow task, or any process that sees the connection,
e.g. as ``AIRFLOW_CONN_<ID>``), never in the detached supervisor, which may not reach Airflow's
connections. The binary is always the pyspark package's ``spark-submit`` (``SPARK_HOME`` is pinned
to it); a connection's ``spark-binary`` extra is ignored with a warning.
"""

from __future__ import annotations

import importlib
import logging

from airflow_aml.compute.spark.config import SparkComputeConfig, check_master
from airflow_aml.exceptions import RunConfigurationError

log = logging.getLogger(__name__)

HOOK_MODULE = "airflow.providers.apache.spark.hooks.spark_submit"
_APPLICATION = "__aml_application__"  # stands for the script while the hook builds the command


def connection_submit_options(settings: SparkComputeConfig, *, target: str) -> list[str]:
    """The spark-submit options (master first) for ``settings.spark_conn_id``; RunConfigurationError
    when the provider is missing, the connection is unknown, or it asks for what this target cannot
    run (cluster deploy mode, a YARN or Kubernetes master)."""
    conn_id = settings.spark_conn_id
    if conn_id is None:
        raise RunConfigurationError(f"Compute target {target!r} has no spark_conn_id")
    try:
        hook_class = importlib.import_module(HOOK_MODULE).SparkSubmitHook
    except ImportError as exc:
        raise RunConfigurationError(
            f"Compute target {target!r}: spark_conn_id needs apache-airflow-providers-apache-spark "
            "(pip install 'airflow-aml[spark]')"
        ) from exc
    try:
        # Looked up first: the hook itself falls back to a "yarn" master for an unknown connection.
        hook_class.get_connection(conn_id)
        hook = hook_class(conn_id=conn_id, conf=dict(settings.conf), driver_memory=settings.driver_memory,
                          executor_memory=settings.executor_memory, name=f"aml-{target}")
    except Exception as exc:  # AirflowNotFoundException and the like: not importable without Airflow
        raise RunConfigurationError(
            f"Compute target {target!r}: cannot read Airflow connection {conn_id!r}: {exc}"
        ) from exc
    resolved = hook._connection  # the provider's parse of the connection (master, deploy_mode ...)
    master = str(resolved.get("master") or "")
    try:
        check_master(master)
    except ValueError as exc:
        raise RunConfigurationError(f"Compute target {target!r}, connection {conn_id!r}: {exc}") from None
    if resolved.get("deploy_mode") not in (None, "client"):
        raise RunConfigurationError(
            f"Compute target {target!r}, connection {conn_id!r}: deploy mode {resolved['deploy_mode']!r}; "
            "the driver (the run's script) runs where the run is supervised, so only client mode works"
        )
    if resolved.get("spark_binary") not in (None, "spark-submit"):
        log.warning("Connection %r names %s; the pyspark package's spark-submit is used", conn_id,
                    resolved["spark_binary"])
    # The provider's command builder is private API, but it is the single place the connection's
    # meaning lives; tests/unit/compute/test_spark_connection.py fails if its shape changes.
    command: list[str] = hook._build_spark_submit_command(_APPLICATION)
    if command[-1] != _APPLICATION:
        raise RunConfigurationError(f"SparkSubmitHook built an unexpected command: {command[:1]} ...")
    options = command[1:-1]
    if "--deploy-mode" not in options:
        options += ["--deploy-mode", "client"]
    return options
