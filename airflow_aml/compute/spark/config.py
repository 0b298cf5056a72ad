"""The settings of a ``spark`` compute target: :class:`SparkComputeConfig` and its checks.

::

    ws.register_compute_target("spark-local", kind="spark", config={"master": "local[2]"})
    ws.register_compute_target("spark-cluster", kind="spark", config={
        "master": "spark://10.0.0.5:7077", "executor_memory": "2g", "conf": {"spark.executor.cores": "1"}})

The config is checked when the target is registered and again when a run is submitted to it,
before anything is created: unknown keys, a master that is neither ``local[N]`` nor
``spark://host:port``, JVM sizes Spark would refuse only after its JVM started (seconds later).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
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
    """What a ``spark`` target's record may hold; only ``master`` is required."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    master: str
    # An Airflow Spark connection (apache-airflow-providers-apache-spark's SparkSubmitHook): the key
    # is reserved, and refused until that path exists (the provider is not in the lock yet).
    spark_conn_id: str | None = None
    # Extra --conf key=value pairs (strings, as spark-submit passes them).
    conf: dict[str, str] = Field(default_factory=dict)
    driver_memory: str | None = None
    executor_memory: str | None = None
    # Seconds between SIGTERM and SIGKILL of the spark-submit process group on cancel/time limit.
    stop_timeout: int = Field(10, ge=0, le=3600)

    @field_validator("master")
    @classmethod
    def _master(cls, value: str) -> str:
        if not (_LOCAL.match(value) or _STANDALONE.match(value)):
            raise ValueError(f"master {value!r} must be local, local[N], local[*] or spark://host:port")
        return value

    @field_validator("spark_conn_id")
    @classmethod
    def _conn(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("not supported yet (SparkSubmitHook); give master, conf and the memory sizes directly")
        return value

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

    @property
    def is_local(self) -> bool:
        return self.master.startswith("local")

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
        """The spark-submit options before the application (client mode: the driver runs here)."""
        options = ["--master", self.master, "--deploy-mode", "client"]
        if self.driver_memory:
            options += ["--driver-memory", self.driver_memory]
        if self.executor_memory:
            options += ["--executor-memory", self.executor_memory]
        for key, value in sorted(self.conf.items()):
            options += ["--conf", f"{key}={value}"]
        return options


def _reason(err: Mapping[str, Any]) -> str:
    if err.get("type") == "extra_forbidden":
        return "unknown key"
    if err.get("type") == "missing":
        return "required"
    return str(err.get("msg", "invalid")).removeprefix("Value error, ")
