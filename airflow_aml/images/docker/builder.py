"""``DockerImageBuilder``, the ``docker`` image builder kind, registered when this module is imported.

The builder puts the other modules together: the options it is made with, the build context
(:mod:`.context`), the engine (:mod:`.engine`) and the build itself (:mod:`.build`). The image
registry calls ``validate`` before anything is created and ``build`` with the image record.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_aml.context import WorkspaceContext
from airflow_aml.entities import ImageRecord
from airflow_aml.exceptions import ValidationError
from airflow_aml.images.builders import AbstractImageBuilder, BuildResult, register_image_builder
from airflow_aml.images.docker.build import run_build
from airflow_aml.images.docker.context import _write_context_tar, prepare_context
from airflow_aml.images.docker.engine import _ensure_base_image, docker_api_client, remove_image
from airflow_aml.images.docker.options import KIND, DockerBuildOptions

if TYPE_CHECKING:
    import docker

    from airflow_aml.images.builders import LogFn as Log
    from airflow_aml.images.builders import ProgressFn as Progress
    from airflow_aml.images.docker.context import BuildContext
    from airflow_aml.images.spec import ImageSpec


class DockerImageBuilder(AbstractImageBuilder):
    """Builds an image bundle into a local Docker image, ``aml/<name>:<version>`` by default.

    ``BuildResult.location`` is the image reference (the tag), ``BuildResult.digest`` the image id
    (``sha256:...``: a local image has no registry digest until it is pushed).
    """

    kind = KIND

    def __init__(
        self,
        workspace: WorkspaceContext | None = None,
        options: DockerBuildOptions | Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(workspace)
        if options is None:
            self.options = DockerBuildOptions.from_env(**overrides)
        elif isinstance(options, DockerBuildOptions):
            self.options = options.model_copy(update=overrides) if overrides else options
        else:
            self.options = DockerBuildOptions.model_validate({**options, **overrides})

    def __repr__(self) -> str:
        name = getattr(self.workspace, "name", None)
        return f"{type(self).__name__}(workspace={name!r}, base_image={self.options.base_image!r})"

    def validate(self, spec: ImageSpec) -> None:
        """The docker SDK must be installed; the engine itself is checked when the build starts."""
        try:
            import docker  # noqa: F401
        except ImportError as exc:
            raise ValidationError(
                "The docker image builder needs the docker Python package: pip install 'airflow-aml[docker]'"
            ) from exc

    def build(self, bundle: Path, record: Any, progress: Progress, log: Log) -> BuildResult:
        """Build ``bundle`` into an image named after ``record`` (the ``ImageRecord`` being built)."""
        progress(0.0, "Preparing the Docker build context")
        with tempfile.TemporaryDirectory(prefix="aml-docker-build-") as tmp:
            context = prepare_context(Path(bundle), self.options, Path(tmp) / "context", record=record, log=log)
            log(f"Dockerfile for {context.tag}:")
            for line in context.dockerfile.splitlines():
                log(f"  {line}")
            api = docker_api_client(self.options)
            try:
                _ensure_base_image(api, context.base_image, log)
                tar_path = Path(tmp) / "context.tar"
                size = _write_context_tar(context.path, tar_path)
                progress(0.03, f"Sending the build context ({size / 1e6:.1f} MB) to the Docker engine")
                self._run_build(api, context, tar_path, progress, log)
                info = api.inspect_image(context.tag)
            finally:
                api.close()
        image_id = info["Id"]
        progress(1.0, f"Built {context.tag} ({image_id[:19]})")
        return BuildResult(
            location=context.tag,
            digest=image_id,
            properties={
                "docker.image_id": image_id,
                "docker.base_image": context.base_image,
                "docker.size_bytes": str(info.get("Size", "")),
            },
        )

    def remove_image(self, ref: str, *, force: bool = False) -> bool:
        """Remove the image ``ref`` from the engine; False when it did not exist."""
        return remove_image(ref, force=force, options=self.options)

    def remove(self, record: ImageRecord) -> None:
        """The image version is being deleted: remove its image (its tag) from the engine."""
        if record.location:
            remove_image(record.location, options=self.options)

    def _run_build(
        self, api: docker.APIClient, context: BuildContext, tar_path: Path, progress: Progress, log: Log
    ) -> str | None:
        """Send the context, follow the build; on failure remove the layers this build made."""
        return run_build(api, self.options, context, tar_path, progress, log)


def register() -> None:
    """Register ``DockerImageBuilder`` as the ``docker`` image builder kind (done on import)."""
    register_image_builder(KIND, DockerImageBuilder)


register()
