"""The ``spark`` compute target: a run's script started by ``spark-submit`` (shipped by pyspark).

``airflow_aml.compute`` imports this package by name the first time a ``spark`` target is used,
which registers the kind. One module a job::

    config.py       SparkComputeConfig: master or spark_conn_id, conf, memory sizes, and their checks
    connection.py   a spark_conn_id's spark-submit options, built by the provider's SparkSubmitHook
    supervisor.py   SparkSupervisor: the local supervisor with the script under spark-submit
    target.py       SparkComputeTarget and its registration as the ``spark`` kind

Importing this package needs pydantic only; pyspark is looked for when a run is validated.
"""

from airflow_aml.compute.spark.config import SparkComputeConfig
from airflow_aml.compute.spark.target import SparkComputeTarget

__all__ = ["SparkComputeConfig", "SparkComputeTarget"]
