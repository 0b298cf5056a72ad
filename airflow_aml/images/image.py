"""Images: a scoring bundle (model versions + scoring code) and the environment that serves it.

    spec = ImageSpec(models=["iris:3"], source_directory="score/", entry_script="score.py", pip=["scikit-learn"])
    image = Image.create(ws, "iris-scorer", spec)            # builds now; ImageBuildError if it fails
    image = Image.create(ws, "iris-scorer", spec, wait=False)  # detached build; image.wait_for_completion()
    Image.list(ws, model="iris:3")
    image.bundle_path()

Versions are numbered per name by the store (never reused). ``create`` checks everything before it
writes anything: the spec, the model versions (``"iris"`` means the latest, recorded as its exact
version), the scoring script, the dependency lines, the builder. Progress is an ``image_build``
activity (target ``"name:version"``); the build log is stored in the workspace's datastore.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_aml.activities import ActivityWaiter, ProgressCallback, WorkerCheck, get_activity, poll_until
from airflow_aml.context import DATASTORE_PROPERTY, WorkspaceContext
from airflow_aml.entities import ActivityRecord, ActivityStatus, ImageRecord, ImageStatus
from airflow_aml.exceptions import (
    AmlError,
    ArtifactNotFoundError,
    ConflictError,
    DuplicateAttemptError,
    ImageBuildError,
    NotFoundError,
    WaitTimeoutError,
)
from airflow_aml.images.build import ACTIVITY_KIND, execute_build
from airflow_aml.images.builders import DEFAULT_BUILDER, build_image_builder
from airflow_aml.images.bundle import bundle_path as digest_bundle_path
from airflow_aml.images.plan import plan_image
from airflow_aml.images.spec import ImageSpec
from airflow_aml.images.worker import (
    PROP_BUILD_HOST,
    PROP_BUILD_PID,
    PROP_BUILD_PROCESS,
    WORKER_LOG,
    build_dir,
    build_process_alive,
    start_build_process,
)
from airflow_aml.names import validate_name
from airflow_aml.processes import this_host
from airflow_aml.references import Reference
from airflow_aml.roles import Action

if TYPE_CHECKING:
    from airflow_aml.models import Model

log = logging.getLogger(__name__)


class Image:
    def __init__(self, workspace: WorkspaceContext, record: ImageRecord) -> None:
        self.workspace = workspace
        self.record = record

    def __repr__(self) -> str:
        return f"Image(name={self.name!r}, version={self.version}, status={self.status.value!r})"

    # ------------------------------------------------------------------ fields
    @property
    def name(self) -> str:
        return self.record.name

    @property
    def version(self) -> int:
        return self.record.version

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def status(self) -> ImageStatus:
        return self.record.status

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.record.tags)

    @property
    def properties(self) -> dict[str, str]:
        return dict(self.record.properties)

    @property
    def model_ids(self) -> list[str]:
        return list(self.record.model_ids)

    @property
    def digest(self) -> str | None:
        return self.record.digest

    @property
    def location(self) -> str | None:
        return self.record.location

    @property
    def error(self) -> str | None:
        return self.record.error

    # ------------------------------------------------------------------ registry
    @classmethod
    def create(
        cls,
        workspace: WorkspaceContext,
        name: str,
        spec: ImageSpec | Mapping[str, Any] | str | Path,
        *,
        builder: str = DEFAULT_BUILDER,
        tags: Mapping[str, str] | None = None,
        wait: bool = True,
        idempotency_key: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Image:
        """Create the next version of image ``name`` and build it.

        ``spec``: an ImageSpec, a mapping or a YAML file. Everything is validated first; a refused
        spec leaves nothing behind. With ``wait`` (the default) the build runs in this process and
        a failure raises ImageBuildError (the version stays, Failed, with its log). With
        ``wait=False`` a detached process builds it and this returns at once, status Building:
        follow ``image.activity`` or call ``image.wait_for_completion()``.

        With an ``idempotency_key``, a version created earlier with the same key is returned
        instead of a new one (what a retried Airflow task needs), unless that version Failed or
        its build process is gone: a retry then builds again. ``on_progress`` receives the build
        activity at every step while this call waits.
        """
        workspace.require(Action.WRITE)
        validate_name("image", name)
        image_spec = ImageSpec.coerce(dict(spec) if isinstance(spec, Mapping) else spec, image=name)
        store = workspace.store
        attempt = 1
        if idempotency_key:
            earlier = store.search_images(workspace.name, name=name, idempotency_key=idempotency_key)
            for record in earlier:
                existing = cls(workspace, record)
                if record.status is ImageStatus.BUILDING and record.activity_id is not None:
                    # One look of its waiter: a build whose process is gone (an inline build that
                    # died with a crashed Airflow worker) is Failed now, not followed for ever.
                    existing.waiter().poll()
                if existing.refresh().status is not ImageStatus.FAILED:
                    return existing.wait_for_completion(on_progress=on_progress) if wait else existing
            attempt = len(earlier) + 1  # every earlier attempt failed: the next one

        plan = plan_image(workspace, name, image_spec, builder=builder)
        properties = {DATASTORE_PROPERTY: plan.datastore}
        if wait:
            properties.update({PROP_BUILD_PID: str(os.getpid()), PROP_BUILD_HOST: this_host(),
                               PROP_BUILD_PROCESS: "inline"})
        try:
            record = store.create_image_version(
                workspace.name, name, builder=builder, created_by=workspace.principal, model_ids=plan.model_ids,
                spec=plan.spec, description=image_spec.description, tags={**image_spec.tags, **(tags or {})},
                properties=properties, idempotency_key=idempotency_key, idempotency_attempt=attempt,
            )
        except DuplicateAttemptError:
            # A racing copy of this task created this attempt's version first: follow it.
            racer = store.search_images(workspace.name, name=name, idempotency_key=idempotency_key)[0]
            existing = cls(workspace, racer)
            return existing.wait_for_completion(on_progress=on_progress) if wait else existing
        try:
            activity = store.create_activity(workspace.name, kind=ACTIVITY_KIND, target_id=record.id, message="Queued")
            record = store.update_image(workspace.name, name, record.version, activity_id=activity.activity_id)
        except BaseException as exc:
            # The version exists now: record why it never built instead of leaving it Building.
            with contextlib.suppress(Exception):
                store.update_image(workspace.name, name, record.version, status=ImageStatus.FAILED,
                                   error=f"Could not start the build: {exc}")
            raise
        plan = plan.with_image(record.version, activity.activity_id)
        if not wait:
            start_build_process(workspace, plan)
            return cls(workspace, store.get_image(workspace.name, name, record.version))
        image = cls(workspace, execute_build(workspace, plan, on_progress=on_progress))
        image._raise_if_failed()
        return image

    @classmethod
    def get(cls, workspace: WorkspaceContext, name: str, version: int | None = None) -> Image:
        """The given version, or the latest."""
        workspace.require(Action.READ)
        return cls(workspace, workspace.store.get_image(workspace.name, name, version))

    @classmethod
    def list(
        cls,
        workspace: WorkspaceContext,
        *,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
        model: str | Model | None = None,
        status: ImageStatus | str | None = None,
        latest: bool = False,
    ) -> list[Image]:
        """Versions matching every filter, newest first. ``tags`` values of ``"*"`` match any value;
        ``model`` is a Model, ``"name:version"`` or ``"name"`` (any version)."""
        workspace.require(Action.READ)
        model_filter = model if model is None or isinstance(model, str) else model.id
        records = workspace.store.search_images(
            workspace.name, name=name, tags=tags, model=model_filter,
            status=None if status is None else ImageStatus(status), latest_only=latest,
        )
        return [cls(workspace, record) for record in records]

    # ------------------------------------------------------------------ one version
    def refresh(self) -> Image:
        self.record = self.workspace.store.get_image(self.workspace.name, self.name, self.version)
        return self

    @property
    def activity(self) -> ActivityRecord:
        """The build's image_build activity (status, progress 0..1, message)."""
        return get_activity(self.workspace, self._activity_id())

    def _activity_id(self) -> str:
        if self.record.activity_id is None:
            raise NotFoundError(f"Image '{self.name}' version {self.version} has no build activity")
        return self.record.activity_id

    def waiter(self, *, on_progress: ProgressCallback | None = None) -> ActivityWaiter:
        """The waiter of this version's build activity, watching the process that builds it."""
        return ActivityWaiter(self.workspace, self._activity_id(), worker=image_worker_check(self.workspace, self.id),
                              on_progress=on_progress)

    def wait_for_completion(
        self, *, timeout: float | None = None, poll_interval: float = 0.5, raise_on_error: bool = True,
        on_progress: ProgressCallback | None = None,
    ) -> Image:
        """Block until the build ends; ImageBuildError if it Failed (unless ``raise_on_error=False``).

        A build whose process died (killed, machine rebooted) is recorded Failed at once, so that
        no caller waits forever; WaitTimeoutError after ``timeout`` seconds. ``on_progress`` gets
        the build activity whenever it changes.
        """
        self.workspace.require(Action.READ)
        if not self.refresh().status.is_terminal:
            try:
                if self.record.activity_id is not None:
                    self.waiter(on_progress=on_progress).wait(timeout=timeout, poll_interval=poll_interval)
                else:  # a version recorded by hand, with no activity: its status is all there is
                    poll_until(lambda: self.refresh().status.is_terminal, timeout=timeout,
                               poll_interval=poll_interval, what=lambda: "")
            except WaitTimeoutError:
                raise WaitTimeoutError(
                    f"Image '{self.name}' version {self.version} still building after {timeout:g} s",
                    activity_id=self.record.activity_id,
                ) from None
            self.refresh()
        if raise_on_error:
            self._raise_if_failed()
            if self.status is ImageStatus.BUILDING:  # its activity ended, but the version was not told
                activity = self.activity
                raise ImageBuildError(
                    f"Image '{self.name}' version {self.version}: its build {activity.status.value}: "
                    f"{activity.error or activity.message}", image_id=self.id, error=activity.error,
                )
        return self

    def add_tags(self, tags: Mapping[str, str]) -> None:
        self.workspace.require(Action.WRITE)
        self.workspace.store.set_image_tags(self.workspace.name, self.name, self.version, dict(tags))
        self.refresh()

    def bundle_path(self) -> Path:
        """The bundle folder on this machine (``$AML_HOME/images/bundles/<digest>``)."""
        if self.record.digest is None:
            raise ConflictError(
                f"Image '{self.name}' version {self.version} has no bundle (status {self.status.value})"
            )
        path = digest_bundle_path(self.record.digest)
        if not path.is_dir():
            raise ArtifactNotFoundError(
                f"The bundle of image '{self.name}' version {self.version} is not on this machine: {path}"
            )
        return path

    def get_build_log(self) -> str:
        """The whole build log (the record's tail while the build runs)."""
        if self.record.build_log_path is None:
            return self.record.build_log_tail
        datastore = self.workspace.get_datastore(self.record.properties.get(DATASTORE_PROPERTY)
                                                 or self.workspace.record.default_datastore)
        return datastore.read_bytes(self.record.build_log_path).decode(errors="replace")

    def delete(self) -> None:
        """Delete this version (its number is never reused), its build log, and what its builder
        made for it (for a Docker image, the engine's image).

        Refused (ConflictError) while it builds and while a deployment serves it or rolls it out
        (the store refuses, naming the deployments). The bundle stays: it is content-addressed and
        may be shared by other versions.
        """
        self.workspace.require(Action.WRITE)
        self.refresh()
        if self.status is ImageStatus.BUILDING and build_process_alive(self.record.properties) is not False:
            raise ConflictError(
                f"Image '{self.name}' version {self.version} in workspace '{self.workspace.name}' is still "
                "building; wait for it to end"
            )
        self.workspace.store.delete_image_version(self.workspace.name, self.name, self.version)
        if self.record.build_log_path is not None:
            with contextlib.suppress(AmlError):
                datastore = self.workspace.get_datastore(
                    self.record.properties.get(DATASTORE_PROPERTY) or self.workspace.record.default_datastore
                )
                datastore.delete(self.record.build_log_path)
        try:
            # Best effort: the record is gone either way; an engine that refuses (another tag, a
            # container of it still exists) keeps the image, which ``docker image prune`` handles.
            build_image_builder(self.record.builder, self.workspace).remove(self.record)
        except Exception as exc:
            log.warning("Image '%s' deleted, but its %s build was not removed: %s", self.id, self.record.builder, exc)

    # ------------------------------------------------------------------ helpers
    def _raise_if_failed(self) -> None:
        if self.status is ImageStatus.FAILED:
            raise ImageBuildError(
                f"Image '{self.name}' version {self.version} in workspace '{self.workspace.name}' failed to "
                f"build: {self.error or 'no error recorded'}",
                image_id=self.id, error=self.error,
            )



def image_worker_check(ctx: WorkspaceContext, image_id: str) -> WorkerCheck:
    """How a waiter tells that the process building image ``image_id`` ("name:version") is gone."""
    name, version = Reference.parse_id(image_id, "image")

    def alive() -> bool | None:
        try:
            return build_process_alive(ctx.store.get_image(ctx.name, name, version).properties)
        except NotFoundError:  # deleted meanwhile: nothing left to watch
            return None

    def abandon(activity: ActivityRecord, reason: str) -> None:
        props = ctx.store.get_image(ctx.name, name, version).properties
        error = f"The build process (pid {props.get(PROP_BUILD_PID)} on {props.get(PROP_BUILD_HOST)}) " \
                "ended before the build did"
        if props.get(PROP_BUILD_PROCESS) == "worker":
            error += f"; see {build_dir(ctx.name, name, version) / WORKER_LOG}"
        with contextlib.suppress(ConflictError):  # it ended meanwhile after all
            ctx.store.update_image(ctx.name, name, version, status=ImageStatus.FAILED, error=error)

    def ended() -> ActivityStatus | None:
        try:
            status = ctx.store.get_image(ctx.name, name, version).status
        except NotFoundError:
            return None
        return {ImageStatus.SUCCEEDED: ActivityStatus.SUCCEEDED, ImageStatus.FAILED: ActivityStatus.FAILED}.get(status)

    return WorkerCheck(alive=alive, abandon=abandon, where=f"The process building image {image_id!r}", ended=ended)
