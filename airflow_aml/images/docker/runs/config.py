"""The settings of a ``docker`` compute target: :class:`DockerComputeConfig` and its checks.

A target is registered with ``ws.register_compute_target("docker-local", kind="docker",
config={...})``; the config is checked then (unknown keys, a bad ``memory`` or ``cpus``) and
again when a run is submitted to the target, before anything is created.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticValidationError

from airflow_aml.exceptions import ValidationError
from airflow_aml.images.docker.options import DEFAULT_BASE_IMAGE, DockerBuildOptions

# Docker refuses a memory limit below 6 MiB; a Python interpreter needs far more anyway.
MIN_MEMORY_BYTES = 6 * 1024 * 1024
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmg]?)i?b?$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_memory(value: str | int) -> int:
    """Bytes of a Docker-style memory size: ``512m``, ``2g``, ``1.5GiB`` or a number of bytes."""
    if isinstance(value, bool):
        raise ValueError(f"memory {value!r} is not a size")
    if isinstance(value, int):
        amount = value
    else:
        match = _MEMORY.match(str(value).strip())
        if not match:
            raise ValueError(f"memory {value!r} is not a size like '512m' or '2g'")
        amount = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if amount < MIN_MEMORY_BYTES:
        raise ValueError(f"memory {value!r} is below Docker's minimum of 6m")
    return amount


class DockerComputeConfig(BaseModel):
    """What a ``docker`` target's record may hold; every key is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_image: str = DEFAULT_BASE_IMAGE
    # Limits of the run's container: CPUs (fractions allowed) and memory ('512m', '2g').
    cpus: float | None = Field(None, gt=0, le=1024)
    memory: str | int | None = None
    # 'host' by default: the script reaches a service on the host's 127.0.0.1, and engines run
    # with --bridge=none (as on the test machines) have no other network.
    network_mode: str = "host"
    # Who the script runs as in the container; None keeps the base image's user (root).
    user: str | None = None
    docker_url: str | None = None
    # An Airflow Docker connection: the provider's DockerHook reaches the engine (registry login).
    docker_conn_id: str | None = None
    # Seconds between SIGTERM and SIGKILL when a run is canceled or runs out of time.
    stop_timeout: int = Field(10, ge=0, le=3600)

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            parse_memory(value)
        return value

    @field_validator("base_image", "network_mode", "user", "docker_url")
    @classmethod
    def _one_word(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c.isspace() for c in value)):
            raise ValueError(f"{value!r} must be one word without spaces")
        return value

    @classmethod
    def parse(cls, config: Mapping[str, Any], *, target: str = "docker") -> DockerComputeConfig:
        """The checked config; ValidationError naming the target and every bad key otherwise."""
        try:
            return cls.model_validate(dict(config))
        except PydanticValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {_reason(err)}" for err in exc.errors()
            )
            known = ", ".join(cls.model_fields)
            raise ValidationError(
                f"Invalid config for docker compute target {target!r}: {problems} (known keys: {known})"
            ) from None

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory is None else parse_memory(self.memory)

    @property
    def nano_cpus(self) -> int | None:
        return None if self.cpus is None else int(self.cpus * 1e9)

    def build_options(self) -> DockerBuildOptions:
        """The image builder's options for this target (pip and CA settings from the environment)."""
        return DockerBuildOptions.from_env(
            base_image=self.base_image, docker_url=self.docker_url, docker_conn_id=self.docker_conn_id,
            network_mode=self.network_mode, user=self.user,
        )


def _reason(err: Mapping[str, Any]) -> str:
    if err.get("type") == "extra_forbidden":
        return "unknown key"
    return str(err.get("msg", "invalid")).removeprefix("Value error, ")
