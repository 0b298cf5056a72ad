"""The compute target interface: where and how a submitted run's script is executed.

A compute target is built per call from its ``ComputeTargetRecord`` (or from nothing, for the
implicit ``local`` target). ``Experiment.submit`` calls ``validate`` before it writes anything and
``submit`` once the run record, snapshot and activity exist; ``submit`` only *starts* the run and
returns, the run reports its own progress through the store.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from airflow_aml.compute.environments import read_conda_file
from airflow_aml.context import WorkspaceContext
from airflow_aml.entities import ComputeTargetRecord, RunRecord
from airflow_aml.exceptions import RunConfigurationError
from airflow_aml.runconfig import RunConfiguration, check_source_directory


@dataclass(frozen=True)
class RunLaunch:
    """Everything a compute target needs to start one run, none of it secret.

    ``snapshot_path`` is the datastore path of the source zip (``runs/<run_id>/snapshot.zip``)
    in the datastore named ``datastore`` (the workspace default at submit time).
    """

    workspace: str
    store_uri: str
    run_id: str
    principal: str
    run_config: dict[str, Any]
    snapshot_path: str
    datastore: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AbstractComputeTarget(abc.ABC):
    """One kind of compute (``local``, later ``docker``, ``kubernetes`` ...)."""

    kind: str = ""

    def __init__(self, workspace: WorkspaceContext, record: ComputeTargetRecord | None) -> None:
        self.workspace = workspace
        self.record = record
        self.config: dict[str, Any] = dict(record.config) if record is not None else {}

    @property
    def name(self) -> str:
        return self.record.name if self.record is not None else self.kind

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workspace={self.workspace.name!r}, name={self.name!r})"

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> None:
        """Refuse a bad target configuration (ValidationError); called when a target is registered.
        The base accepts any: ``local`` has no settings."""
        return None

    @abc.abstractmethod
    def submit(self, launch: RunLaunch) -> None:
        """Start the run asynchronously; return once it is started, never wait for the script."""

    @abc.abstractmethod
    def cancel(self, run_id: str) -> None:
        """Ask the run to stop; returns at once, the run ends up Canceled when it has stopped."""

    def worker_alive(self, record: RunRecord) -> bool | None:
        """Whether the process carrying the run (``record``, as now) still runs: False lets a
        waiter fail the run at once instead of waiting for ever; None when it cannot be told."""
        return None

    def validate(self, run_config: RunConfiguration, source_directory: Path) -> None:
        """Refuse a configuration this target cannot run, before anything is created.

        The base checks what every target needs: the source directory, the script inside it, and
        the environment's conda file (present and with valid requirement lines). Subclasses add
        their own checks and call ``super().validate``.
        """
        source = check_source_directory(source_directory)
        script = source / run_config.script
        if not script.is_file():
            raise RunConfigurationError(
                f"Script {run_config.script!r} not found in source directory {str(source)!r}"
            )
        if not _is_inside(script, source):
            raise RunConfigurationError(
                f"Script {run_config.script!r} resolves outside source directory {str(source)!r}"
            )
        env = run_config.environment
        if env.conda_file is not None:
            conda = source / env.conda_file
            if not conda.is_file() or not _is_inside(conda, source):
                raise RunConfigurationError(
                    f"Conda file {env.conda_file!r} of the run's environment not found in source "
                    f"directory {str(source)!r}"
                )
            read_conda_file(conda)  # raises RunConfigurationError naming the bad line
        if env.python is not None and "/" in env.python and not Path(env.python).exists():
            raise RunConfigurationError(f"Python interpreter {env.python!r} of the run's environment does not exist")


def _is_inside(path: Path, root: Path) -> bool:
    # A symlink in the source directory may point anywhere; the snapshot would not contain it.
    return path.resolve().is_relative_to(root.resolve())
