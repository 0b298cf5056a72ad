"""``DeploymentConfig``: how a web service runs (scale, limits, auth, telemetry), as data.

    DeploymentConfig(replicas=2)
    DeploymentConfig(autoscale=AutoscaleConfig(min_replicas=1, max_replicas=4, target_utilization=0.7))
    DeploymentConfig(auth_enabled=False, sample_rate=0.1, cpu_cores=1, memory_gb=1)

Checked when made (pydantic, unknown fields refused) and stored as JSON on the deployment.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from airflow_aml.deployments.target_settings import AciSettings
from airflow_aml.exceptions import ValidationError
from airflow_aml.runtime.scoring.config import ScoringConfig


class AutoscaleConfig(BaseModel):
    """Scale between ``min_replicas`` and ``max_replicas`` to keep the utilisation near the target.

    Utilisation = requests in progress / (replicas x ``max_concurrent_requests``), averaged over
    ``window_seconds``. Scaling up is immediate; scaling down waits ``scale_down_delay_seconds``
    of low load, so that a short lull does not drop replicas that are needed a moment later.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_replicas: int = Field(1, ge=1, le=64)
    max_replicas: int = Field(4, ge=1, le=64)
    target_utilization: float = Field(0.7, gt=0.0, le=1.0)
    window_seconds: float = Field(10.0, gt=0.0, le=3600.0)
    scale_down_delay_seconds: float = Field(60.0, ge=0.0, le=86400.0)

    @model_validator(mode="after")
    def _bounds(self) -> AutoscaleConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})")
        return self


class DeploymentConfig(BaseModel):
    """A deployment's configuration. ``autoscale`` and ``replicas`` are exclusive ways to size it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    replicas: int = Field(1, ge=1, le=64)
    autoscale: AutoscaleConfig | None = None
    # Limits per replica. Docker: enforced by the engine. Local processes: memory through
    # RLIMIT_DATA and CPU as the math libraries' thread count (a process cannot be capped here
    # without cgroups, which need privileges).
    cpu_cores: float | None = Field(None, gt=0, le=256)
    memory_gb: float | None = Field(None, gt=0, le=4096)
    auth_enabled: bool = True
    # The front's port on 127.0.0.1 (the scoring URI); None = a free port chosen at creation and
    # kept for the deployment's life (updates and restores reuse it).
    port: int | None = Field(None, ge=1024, le=65535)
    # Request telemetry (counts, latency, status) to the deployment's telemetry file, and the share
    # of requests whose input and output are kept too (model data collection).
    telemetry: bool = True
    sample_rate: float = Field(0.0, ge=0.0, le=1.0)
    # Per replica, as the scoring server reads them.
    max_concurrent_requests: int = Field(4, ge=1, le=1024)
    max_queued_requests: int = Field(16, ge=0, le=100_000)
    # Adaptive batching in each replica (built-in scorers; scripts that define run_batch): the
    # requests waiting for a worker are scored in one call of up to max_batch_size (1 = off); a
    # worker waits at most max_latency_ms for more to join (0: never waits, batches form under load).
    max_batch_size: int = Field(32, ge=1, le=4096)
    max_latency_ms: float = Field(0.0, ge=0.0, le=1000.0)
    request_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    max_request_bytes: int = Field(1 << 20, gt=0, le=1 << 30)
    # The front's defences against slow clients (slowloris), per deployment: a request's headers
    # must arrive within header_timeout_seconds (from the connection's opening, or from the first
    # byte of a keep-alive connection's next request) and its body within body_timeout_seconds
    # after them, else 408; at most max_idle_connections connections may wait without a request
    # (idle keep-alive or headers still arriving): beyond, the longest-waiting one is closed.
    header_timeout_seconds: float = Field(10.0, gt=0, le=3600)
    body_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    max_idle_connections: int = Field(100, ge=1, le=100_000)
    # How long a new replica may take to answer /ready (init() loads the model) before the create
    # or update fails.
    startup_timeout_seconds: float = Field(120.0, gt=0, le=3600)
    # The aci target's resource group, location, registry and DNS label (target_settings.py).
    aci: AciSettings | None = None

    @model_validator(mode="before")
    @classmethod
    def _exclusive(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("autoscale") is not None and data.get("replicas") not in (None, 1):
            raise ValueError("give either replicas or autoscale, not both")
        return data

    @property
    def initial_replicas(self) -> int:
        return self.autoscale.min_replicas if self.autoscale else self.replicas

    @classmethod
    def coerce(cls, value: DeploymentConfig | Mapping[str, Any] | str | Path | None) -> DeploymentConfig:
        """A config from itself, a mapping, a YAML file or None (the defaults); ValidationError
        naming the offending field otherwise."""
        if value is None:
            return cls()
        if isinstance(value, DeploymentConfig):
            return value
        source = "deployment config"
        if isinstance(value, str | Path):
            source = f"deployment config {str(value)!r}"
            try:
                value = yaml.safe_load(Path(value).read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise ValidationError(f"Cannot read the {source}: {exc}") from exc
        if not isinstance(value, Mapping):
            raise ValidationError(f"The {source} must be a mapping, not {type(value).__name__}")
        try:
            return cls.model_validate(dict(value))
        except PydanticValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}" for err in exc.errors()
            )
            raise ValidationError(f"Invalid {source}: {problems}") from None

    def scoring_config(self, primary_key_hash: str | None, secondary_key_hash: str | None) -> ScoringConfig:
        """What each replica's scoring server reads (telemetry is recorded by the front)."""
        return ScoringConfig(
            auth_enabled=self.auth_enabled,
            primary_key_hash=primary_key_hash if self.auth_enabled else None,
            secondary_key_hash=secondary_key_hash if self.auth_enabled else None,
            max_request_bytes=self.max_request_bytes,
            request_timeout_seconds=self.request_timeout_seconds,
            max_concurrent_requests=self.max_concurrent_requests,
            max_queued_requests=self.max_queued_requests,
            max_batch_size=self.max_batch_size,
            max_latency_ms=self.max_latency_ms,
        )
