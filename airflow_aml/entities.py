"""Plain records that stores return. They carry data only: no sessions, no I/O.

The SDK objects (``Workspace``, ``Run`` ...) wrap these and add behaviour; stores never return
ORM rows, so a second store implementation (HTTP) can return the very same records.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class RunStatus(enum.StrEnum):
    QUEUED = "Queued"
    PREPARING = "Preparing"
    RUNNING = "Running"
    FINALIZING = "Finalizing"
    CANCEL_REQUESTED = "CancelRequested"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_RUN_STATUSES


TERMINAL_RUN_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED})


class ActivityStatus(enum.StrEnum):
    NOT_STARTED = "NotStarted"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELED = "Canceled"

    @property
    def is_terminal(self) -> bool:
        return self in (ActivityStatus.SUCCEEDED, ActivityStatus.FAILED, ActivityStatus.CANCELED)


class ImageStatus(enum.StrEnum):
    BUILDING = "Building"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def is_terminal(self) -> bool:
        return self is not ImageStatus.BUILDING


class DeploymentState(enum.StrEnum):
    """A web service's state, as Azure ML names them."""

    TRANSITIONING = "Transitioning"  # being created or updated
    HEALTHY = "Healthy"  # every replica answers /ready
    UNHEALTHY = "Unhealthy"  # running, but some or all replicas do not answer (or the supervisor is gone)
    FAILED = "Failed"  # the last create could not bring up a single healthy replica
    DELETING = "Deleting"


class Role(enum.StrEnum):
    OWNER = "Owner"
    CONTRIBUTOR = "Contributor"
    READER = "Reader"


class MetricKind(enum.StrEnum):
    SCALAR = "scalar"  # run.log / log_list: one number per (name, step)
    ROW = "row"  # run.log_row / log_table: one table row per step, payload = {column: value}
    IMAGE = "image"  # run.log_image: payload = {"path": <artifact path of the PNG>}


@dataclass(frozen=True)
class WorkspaceRecord:
    name: str
    description: str
    created_by: str
    created_at: datetime
    default_datastore: str
    properties: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExperimentRecord:
    workspace: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    workspace: str
    experiment: str
    parent_run_id: str | None
    status: RunStatus
    created_at: datetime
    start_time: datetime | None
    end_time: datetime | None
    submitted_by: str
    compute_target: str | None
    run_config: dict[str, Any]
    display_name: str | None = None
    error: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    snapshot_sha256: str | None = None
    idempotency_key: str | None = None
    cancel_requested: bool = False
    heartbeat_at: datetime | None = None  # the supervisor's last beat (None: nothing beats for it)

    @property
    def duration_seconds(self) -> float | None:
        if self.start_time is None:
            return None
        end = self.end_time or datetime.now(self.start_time.tzinfo)
        return (end - self.start_time).total_seconds()


@dataclass(frozen=True)
class Metric:
    """One logged value. ``value`` is the number for SCALAR metrics, None for the others."""

    name: str
    value: float | None
    step: int
    timestamp: float  # seconds since the epoch, as time.time()
    kind: MetricKind = MetricKind.SCALAR
    payload: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # NaN cannot round-trip through SQLite (it reads back as NULL): normalise here so both
        # stores agree.
        if self.kind is MetricKind.SCALAR and self.value is None:
            object.__setattr__(self, "value", math.nan)


@dataclass(frozen=True)
class MetricCondition:
    """A filter on a run's latest value of a scalar metric: ``accuracy >= 0.9``."""

    metric: str
    op: str  # one of "<", "<=", ">", ">=", "==", "!="
    value: float

    OPS = ("<", "<=", ">", ">=", "==", "!=")


@dataclass(frozen=True)
class RunQuery:
    """What ``search_runs`` filters and orders by. Empty fields do not filter."""

    experiment: str | None = None
    statuses: tuple[RunStatus, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    # Exact property values, e.g. the Airflow task instance that submitted the run (airflow.*).
    properties: dict[str, str] = field(default_factory=dict)
    parent_run_id: str | None = None
    top_level_only: bool = False
    metric_conditions: tuple[MetricCondition, ...] = ()
    order_by_metric: str | None = None
    descending: bool = True
    max_results: int | None = None
    # Runs skipped before the first returned one, in the search's order: a page of a long table
    # is read by the database (LIMIT/OFFSET), not cut from every match in Python.
    offset: int = 0


@dataclass(frozen=True)
class DatastoreRecord:
    workspace: str
    name: str
    kind: str  # "local", later "azure_blob"
    config: dict[str, Any]  # never secrets: credentials live in the secrets store
    is_default: bool
    created_at: datetime


@dataclass(frozen=True)
class ComputeTargetRecord:
    workspace: str
    name: str
    kind: str  # "local", later "docker", "spark", "kubernetes"
    config: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class RoleAssignment:
    workspace: str
    principal: str
    role: Role
    created_at: datetime


@dataclass(frozen=True)
class ActivityRecord:
    activity_id: str
    workspace: str
    kind: str  # "run", "image_build", "deployment_create" / "_update" / "_delete"
    target_id: str
    status: ActivityStatus
    progress: float  # 0.0 .. 1.0
    message: str
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None = None
    error: str | None = None


@dataclass(frozen=True)
class ModelRecord:
    workspace: str
    name: str
    version: int
    path: str  # datastore path of the model's files
    datastore: str
    created_at: datetime
    created_by: str
    description: str = ""
    run_id: str | None = None
    sha256: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None

    @property
    def id(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class ImageRecord:
    """One version of an image: a scoring bundle (model files + scoring code) and the environment
    built for it by a builder (``local``: a cached virtualenv; ``docker``: a container image)."""

    workspace: str
    name: str
    version: int
    status: ImageStatus
    builder: str  # "local", "docker"
    created_at: datetime
    created_by: str
    updated_at: datetime
    model_ids: list[str] = field(default_factory=list)  # exact "name:version", in the spec's order
    spec: dict[str, Any] = field(default_factory=dict)  # the ImageSpec, models resolved, paths absolute
    description: str = ""
    digest: str | None = None  # sha256 of the bundle content (equal content, equal digest)
    location: str | None = None  # bundle folder (local) or image reference (docker)
    error: str | None = None
    build_log_path: str | None = None  # datastore path of the full build log (images/<name>/<version>/build.log)
    build_log_tail: str = ""  # the log's last lines, so that a failure reads without a download
    activity_id: str | None = None  # the image_build activity
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None

    @property
    def id(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class AccessTokenRecord:
    """A token of the workspace service, without the token itself (only its hash is stored)."""

    token_id: str
    kind: str  # "personal" or "run"
    principal: str
    name: str
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    run_id: str | None = None  # run tokens: their run, its workspace, the secrets they may read
    workspace: str | None = None
    secrets: tuple[str, ...] = ()

    def usable_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True)
class LogChunk:
    seq: int
    stream: str
    text: str
    timestamp: float


@dataclass(frozen=True)
class DeploymentRecord:
    """A web service: an image served by a deployment target with a configuration.

    ``image_id`` is the image version the deployment should serve; ``serving_image_id`` the one its
    replicas serve now (they differ while an update rolls out). Keys are stored only as SHA-256
    hashes. ``runtime`` is the target's own state (supervisor pid, replicas, ports).
    """

    workspace: str
    name: str
    target: str  # "local", "docker"
    state: DeploymentState
    image_id: str  # "name:version"
    created_at: datetime
    created_by: str
    updated_at: datetime
    generation: int  # +1 at every create/update: the supervisor applies the newest
    config: dict[str, Any] = field(default_factory=dict)  # DeploymentConfig as JSON
    serving_image_id: str | None = None
    scoring_uri: str | None = None
    primary_key_hash: str | None = None
    secondary_key_hash: str | None = None
    error: str | None = None
    activity_id: str | None = None  # the latest create/update/delete activity
    runtime: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None

    @property
    def id(self) -> str:
        return self.name
