"""Every error airflow-aml raises on purpose.

    AmlError
    ├── ValidationError (ValueError)          bad input, refused before anything is written
    │   ├── InvalidNameError
    │   ├── InvalidMetricError
    │   ├── RunConfigurationError
    │   └── SnapshotTooLargeError
    ├── NotFoundError (LookupError)           an id or name that does not exist
    │   ├── WorkspaceNotFoundError
    │   ├── ExperimentNotFoundError
    │   ├── RunNotFoundError
    │   ├── DatastoreNotFoundError
    │   ├── ComputeTargetNotFoundError
    │   ├── ModelNotFoundError
    │   ├── ImageNotFoundError
    │   ├── DeploymentNotFoundError
    │   ├── ActivityNotFoundError
    │   ├── SecretNotFoundError
    │   └── ArtifactNotFoundError
    ├── AlreadyExistsError                    a name that must be unique is taken
    ├── ConflictError                         the object is in a state that forbids the call
    ├── AuthorizationError (PermissionError)  the principal's role does not allow the action
    ├── AuthenticationError (PermissionError) no valid credentials (missing, expired, revoked token)
    ├── DatastoreError
    │   ├── PathEscapeError                   a path that would leave the datastore root
    │   └── IntegrityError                    stored bytes do not match their SHA-256
    ├── UnsafeArchiveError                    a zip that must not be extracted
    ├── StoreError                            the metadata store itself failed
    │   └── SchemaOutOfDateError
    ├── WaitTimeoutError (TimeoutError)       a wait for an activity ran out of time
    ├── EnvironmentBuildError                 a run's or an image's Python environment did not build
    ├── RunFailedError                        waited for a run that ended Failed or Canceled
    ├── ImageBuildError                       an image build failed (or was waited for and failed)
    │   └── DockerImageError                  what the Docker image builder could not do
    │       ├── DockerEngineUnavailableError  no Docker engine answers
    │       ├── BaseImageMissingError (NotFoundError)  the FROM image is not there
    │       └── DockerBuildError              `docker build` failed at a step
    └── DeploymentError                       a deployment create/update/delete failed

Messages name the object (`Run 'abc' not found in workspace 'ws'`), so that one line in a task
log says what went wrong and where.
"""

from __future__ import annotations


class AmlError(Exception):
    """Base class of every airflow-aml error."""


class ValidationError(AmlError, ValueError):
    """Input that is refused before anything is created or changed."""


class InvalidNameError(ValidationError):
    """A name that does not follow the naming rules of its kind of object."""


class InvalidMetricError(ValidationError):
    """A metric name or value that cannot be logged."""


class RunConfigurationError(ValidationError):
    """A run configuration (object, dict or YAML file) with a wrong or missing field."""


class SnapshotTooLargeError(ValidationError):
    """A source directory whose snapshot would exceed the size limit."""


class NotFoundError(AmlError, LookupError):
    """An object that does not exist."""


class WorkspaceNotFoundError(NotFoundError):
    """No workspace of that name."""


class ExperimentNotFoundError(NotFoundError):
    """No experiment of that name in the workspace."""


class RunNotFoundError(NotFoundError):
    """No run with that id."""


class DatastoreNotFoundError(NotFoundError):
    """No datastore of that name in the workspace."""


class ComputeTargetNotFoundError(NotFoundError):
    """No compute target of that name in the workspace."""


class ModelNotFoundError(NotFoundError):
    """No model (version) of that name in the workspace."""


class ImageNotFoundError(NotFoundError):
    """No image (version) of that name in the workspace."""


class DeploymentNotFoundError(NotFoundError):
    """No deployment (web service) of that name in the workspace."""


class ActivityNotFoundError(NotFoundError):
    """No activity with that id."""


class SecretNotFoundError(NotFoundError):
    """No secret of that name in the workspace."""


class ArtifactNotFoundError(NotFoundError):
    """No file at that path in a datastore or a run's outputs."""


class AlreadyExistsError(AmlError):
    """A name that must be unique is already taken."""


class DuplicateAttemptError(AlreadyExistsError):
    """Another caller created the row for this attempt of an idempotency key first (two copies of
    one task instance racing): the SDK looks it up and follows it instead of creating another."""


class ConflictError(AmlError):
    """The object's current state forbids the operation (e.g. deleting a model used by an image)."""


class AuthorizationError(AmlError, PermissionError):
    """The acting principal's role does not allow the action."""


class AuthenticationError(AmlError, PermissionError):
    """The caller is not who it claims to be: no token, or one that is unknown, expired or revoked."""


class DatastoreError(AmlError):
    """A datastore operation failed."""


class PathEscapeError(DatastoreError, ValidationError):
    """A path that would resolve outside the datastore root."""


class IntegrityError(DatastoreError):
    """Stored bytes whose SHA-256 does not match the one recorded when they were written."""


class StorageFullError(DatastoreError, OSError):
    """No space left (or over quota) where a write went; names what was being written and where.

    Also an OSError (errno ENOSPC or EDQUOT, as the system reported it), so that code written for
    a bare ``OSError`` still catches it."""


class UnsafeArchiveError(AmlError, ValueError):
    """A zip archive refused before extraction: path traversal, links, too large, too many entries."""


class StoreError(AmlError):
    """The metadata store failed (connection, locking, schema)."""


class SchemaOutOfDateError(StoreError):
    """The metadata database needs a migration; the message gives the command."""


class WaitTimeoutError(AmlError, TimeoutError):
    """A wait ended at its timeout while the activity (run, build, deployment) still went on;
    the activity itself is left running. ``activity_id`` names it."""

    def __init__(self, message: str, *, activity_id: str | None = None) -> None:
        super().__init__(message)
        self.activity_id = activity_id


class EnvironmentBuildError(AmlError):
    """A Python environment (a run's virtualenv, an image's) could not be built; the message
    holds the installer's last output lines."""


class RunFailedError(AmlError):
    """A run that was waited for ended Failed or Canceled."""

    def __init__(self, message: str, *, run_id: str, status: str, error: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status
        self.error = error


class ImageBuildError(AmlError):
    """Building an image failed; the image version is recorded Failed with its build log.

    ``image_id`` is ``"name:version"`` when the version exists (None when the build failed before).
    """

    def __init__(self, message: str, *, image_id: str | None = None, error: str | None = None) -> None:
        super().__init__(message)
        self.image_id = image_id
        self.error = error


class DeploymentError(AmlError):
    """A deployment operation (create, update, delete) failed; the activity holds the details."""

    def __init__(self, message: str, *, deployment: str | None = None, error: str | None = None) -> None:
        super().__init__(message)
        self.deployment = deployment
        self.error = error


class DockerImageError(ImageBuildError):
    """Something the Docker image builder could not do."""


class DockerEngineUnavailableError(DockerImageError):
    """No Docker engine answers at the configured address."""


class BaseImageMissingError(DockerImageError, NotFoundError):
    """The ``FROM`` image is neither in the engine nor pullable."""


class DockerBuildError(DockerImageError):
    """``docker build`` failed; ``step`` is the failing Dockerfile step, ``log_tail`` its last lines."""

    def __init__(self, message: str, *, step: str | None = None, log_tail: list[str] | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.log_tail = log_tail or []
