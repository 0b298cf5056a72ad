"""The settings of a ``spark`` compute target: :class:`SparkComputeConfig` and its checks.

::

    ws.register_compute_target("spark-local", kind="spark", config={"master": "local[2]"})
    ws.register_compute_target("spark-cluster", kind="spark", config={
        "master": "spark://10.0.0.5:7077", "executor_memory": "2g", "conf": {"spark.executor.cores": "1"}})
    ws.register_compute_target("spark-prod", kind="spark", config={"spark_conn_id": "spark_prod"})

The config is checked when the target is registered and again when a run is submitted to it,
before anything is created: unknown keys, a master that is neither ``local[N]`` nor
``spark://host:port``, JVM sizes Spark would refuse only after its JVM started (seconds later).
With ``spark_conn_id`` the master (and queue, deploy mode, keytab ...) come from that Airflow
connection, resolved by the apache-spark provider's ``SparkSubmitHook`` (:mod:`.connection`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from airflow_aml.exceptions import ValidationError

# local, local[4], local[*], local[4,2] (4 threads, 2 task retries), as spark-submit takes them.
_LOCAL = re.compile(r"^local(\[(\*|[1-9]\d*)(,[1-9]\d*)?\])?$")
# The standalone cluster manager; a comma list is the HA form (several masters, one active).
_STANDALONE = re.compile(r"^spark://[A-Za-z0-9.\-]+:\d{1,5}(,[A-Za-z0-9.\-]+:\d{1,5})*$")
# JVM sizes as spark.driver.memory takes them: a number and an optional unit (k, m, g, t).
_JVM_SIZE = re.compile(r"^[1-9]\d*[kKmMgGtT]?$")
# Keys the target's own fields set: one place each, so a run never wonders which one won.
_RESERVED_CONF = {"spark.master", "spark.driver.memory", "spark.executor.memory", "spark.submit.deployMode"}


class SparkComputeConfig(BaseModel):
    """What a ``spark`` target's record may hold: ``master`` or ``spark_conn_id``, not both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    master: str | None = None
    # An Airflow Spark connection (apache-airflow-providers-apache-spark's SparkSubmitHook): its
    # host is the master; it is resolved where the run is submitted (an Airflow task can read it).
    spark_conn_id: str | None = None
    # Extra --conf key=value pairs (strings, as spark-submit passes them).
    conf: dict[str, str] = Field(default_factory=dict)
    driver_memory: str | None = None
    executor_memory: str | None = None
    # Seconds between SIGTERM and SIGKILL of the spark-submit process group on cancel/time limit.
    stop_timeout: int = Field(10, ge=0, le=3600)

    @field_validator("master")
    @classmethod
    def _master(cls, value: str | None) -> str | None:
        if value is not None:
            check_master(value)
        return value

    @model_validator(mode="after")
    def _one_master(self) -> SparkComputeConfig:
        if (self.master is None) == (self.spark_conn_id is None):
            raise ValueError("give master (local[N] or spark://host:port) or spark_conn_id (an Airflow "
                             "Spark connection), one of them")
        return self

    @field_validator("driver_memory", "executor_memory")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None and not _JVM_SIZE.match(value):
            raise ValueError(f"{value!r} is not a JVM size like '512m' or '2g'")
        return value

    @field_validator("conf")
    @classmethod
    def _conf(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not key.startswith("spark.") or any(c.isspace() or c == "=" for c in key):
                raise ValueError(f"conf key {key!r} must be a Spark property (spark.xxx, no spaces or '=')")
            if key in _RESERVED_CONF:
                raise ValueError(f"conf key {key!r} is set by the target's own fields (master, *_memory)")
        return value

    @classmethod
    def parse(cls, config: Mapping[str, Any], *, target: str = "spark") -> SparkComputeConfig:
        """The checked config; ValidationError naming the target and every bad key otherwise."""
        try:
            return cls.model_validate(dict(config))
        except PydanticValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {_reason(err)}" for err in exc.errors()
            )
            known = ", ".join(cls.model_fields)
            raise ValidationError(
                f"Invalid config for spark compute target {target!r}: {problems} (known keys: {known})"
            ) from None

    def submit_options(self) -> list[str]:
        """The spark-submit options before the application (client mode: the driver runs here).
        For a ``spark_conn_id`` target they come from the connection (:mod:`.connection`)."""
        if self.master is None:
            raise ValueError("a spark_conn_id target's options come from its connection")
        options = ["--master", self.master, "--deploy-mode", "client"]
        if self.driver_memory:
            options += ["--driver-memory", self.driver_memory]
        if self.executor_memory:
            options += ["--executor-memory", self.executor_memory]
        for key, value in sorted(self.conf.items()):
            options += ["--conf", f"{key}={value}"]
        return options


def check_master(value: str) -> None:
    """ValueError unless ``value`` is a master this target runs on (client mode, here)."""
    if not (_LOCAL.match(value) or _STANDALONE.match(value)):
        raise ValueError(f"master {value!r} must be local, local[N], local[*] or spark://host:port")


def _reason(err: Mapping[str, Any]) -> str:
    if err.get("type") == "extra_forbidden":
        return "unknown key"
    if err.get("type") == "missing":
        return "required"
    return str(err.get("msg", "invalid")).removeprefix("Value error, ")
