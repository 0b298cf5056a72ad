"""Image builders, chosen by kind: ``local`` (a cached virtualenv, the default), ``docker`` ...

A builder turns an assembled bundle (see ``bundle.py`` for the layout) into something that can
serve it: ``build`` returns where the result is (``location``) and its digest. ``Image.create``
calls ``validate`` before anything is created, then ``build`` with the image record (status
Building) and two callbacks:

- ``progress(fraction, message)``: the builder's own progress, 0.0 to 1.0 (mapped into the
  image_build activity's range);
- ``log(line)``: one line for the build log (stored with the image).

A builder raises on failure (``ImageBuildError`` or any AmlError with a message naming the
problem); the caller records the image Failed with that message and the log.

A new kind is a subclass registered with ``register_image_builder``. Kinds whose module is not
imported yet are imported on first use (``_BUILTIN_MODULES``): such a module registers its class
when it is imported, e.g. ``airflow_aml/images/docker/builder.py`` ends with ``register()``,
which is ``register_image_builder("docker", DockerImageBuilder)``.
"""

from __future__ import annotations

import abc
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from airflow_aml.context import WorkspaceContext
from airflow_aml.entities import ImageRecord
from airflow_aml.exceptions import ValidationError
from airflow_aml.images.spec import ImageSpec

ProgressFn = Callable[[float, str], None]
LogFn = Callable[[str], None]

DEFAULT_BUILDER = "local"


@dataclass(frozen=True)
class BuildResult:
    """What a build produced.

    ``location``: the bundle folder (local) or the image reference (docker). ``digest``: the
    content digest of what was built; the local builder returns the bundle digest, which is also
    the bundle folder's name. ``properties`` are recorded on the image (``local.python`` ...).
    """

    location: str
    digest: str
    properties: dict[str, str] = field(default_factory=dict)


class AbstractImageBuilder(abc.ABC):
    kind: ClassVar[str] = ""

    def __init__(self, workspace: WorkspaceContext | None) -> None:
        self.workspace = workspace

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workspace={getattr(self.workspace, 'name', None)!r})"

    def validate(self, spec: ImageSpec) -> None:  # noqa: B027 - optional hook
        """Refuse (ValidationError) a spec this builder cannot build, before anything is created."""

    @abc.abstractmethod
    def build(self, bundle: Path, record: ImageRecord, progress: ProgressFn, log: LogFn) -> BuildResult:
        """Build ``bundle`` (read-only: it is content-addressed and may be shared by images)."""

    def remove(self, record: ImageRecord) -> None:  # noqa: B027 - optional hook
        """Remove what ``build`` made for the image version ``record``, which is being deleted (the
        local builder keeps the content-addressed bundle: other versions may share it). Raise on
        failure; the caller logs it and goes on, the version's record is gone either way."""


_KINDS: dict[str, type[AbstractImageBuilder]] = {}
# Kinds that ship with airflow-aml, imported when first asked for (docker pulls in the docker SDK).
_BUILTIN_MODULES: dict[str, str] = {
    "local": "airflow_aml.images.local",
    "docker": "airflow_aml.images.docker",
}


def register_image_builder(kind: str, cls: type[AbstractImageBuilder]) -> None:
    """Make ``kind`` build with ``cls`` (replacing an earlier registration of the kind)."""
    if not isinstance(cls, type) or not issubclass(cls, AbstractImageBuilder):
        raise ValidationError(f"Image builder {kind!r} must be an AbstractImageBuilder subclass, not {cls!r}")
    _KINDS[kind] = cls


def image_builder_kinds() -> list[str]:
    """Registered kinds, and the built-in ones that are available in this installation."""
    available = {kind for kind, module in _BUILTIN_MODULES.items() if _module_exists(module)}
    return sorted(set(_KINDS) | available)


def build_image_builder(kind: str, workspace: WorkspaceContext | None) -> AbstractImageBuilder:
    """A builder of ``kind`` for ``workspace``; ValidationError listing the kinds for an unknown one."""
    if kind not in _KINDS and kind in _BUILTIN_MODULES and _module_exists(_BUILTIN_MODULES[kind]):
        importlib.import_module(_BUILTIN_MODULES[kind])  # registers the kind
    cls = _KINDS.get(kind)
    if cls is None:
        raise ValidationError(f"Unknown image builder {kind!r}; valid: {', '.join(image_builder_kinds())}")
    return cls(workspace)


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False
