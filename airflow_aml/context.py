"""The workspace context: what every feature needs from a workspace, and nothing else.

    ctx = WorkspaceContext.open("demo")          # the store under $AML_HOME, the acting principal
    ctx.require(Action.WRITE)                    # AuthorizationError naming principal, role, action
    ctx.store.get_run(run_id)                    # every store call is checked for the principal
    ctx.get_default_datastore().upload(...)      # read-only for a principal who may not write

Features (runs, experiments, models, images, deployments, compute, activities) take a context
and import only this module and the layers below it; ``airflow_aml.workspace.Workspace`` is the
Azure-ML-style facade on top (a context that also hands the features out).

Authorization lives here so that no feature method can forget it: ``ctx.store`` is the metadata
store behind a guard that checks, for every call, the action the call needs (``roles.STORE_ACTIONS``)
against the principal's role, and that the call names this workspace; datastores are read-only
for a principal who may not write. Feature methods still call ``require`` first where they would
do work before their first store call (snapshots, processes, buffered metrics), so that a refusal
comes before any side effect.

Artifact path conventions shared by the features are defined here too: a run's files live under
``runs/<run_id>/`` in the datastore recorded on the run (``DATASTORE_PROPERTY``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, Self, cast

from airflow_aml import config
from airflow_aml.datastores import AbstractDatastore, build_datastore
from airflow_aml.datastores.paths import normalize_path
from airflow_aml.datastores.readonly import ReadOnlyDatastore
from airflow_aml.entities import Role, WorkspaceRecord
from airflow_aml.exceptions import AlreadyExistsError, AuthorizationError
from airflow_aml.names import validate_name
from airflow_aml.roles import STORE_ACTIONS, Action, Unavailable, allows, store_action
from airflow_aml.secrets_store import SecretsVault
from airflow_aml.store import AbstractStore, get_store
from airflow_aml.store.buffer import MetricBuffer, buffer_for

DEFAULT_DATASTORE = "workspaceblobstore"
# The datastore that holds a run's (or an image's) files, fixed when it is created: changing the
# workspace's default later must not hide the files of earlier runs.
DATASTORE_PROPERTY = "aml.datastore"
SNAPSHOT_NAME = "snapshot.zip"
OUTPUTS_DIR = "outputs"


def run_prefix(run_id: str) -> str:
    """Datastore folder that holds one run's files (outputs/, logs/, images/, snapshot.zip)."""
    return f"runs/{run_id}"


def run_file(run_id: str, name: str) -> str:
    """The datastore path of the run's file ``name`` (``outputs/model.pkl``), checked."""
    return f"{run_prefix(run_id)}/{normalize_path(name)}"


class GuardedStore:
    """The metadata store as one principal may use it in one workspace.

    Every attribute is a store method wrapped with a check: the principal's role must allow the
    call's action (``roles.STORE_ACTIONS``), and a call that names a workspace must name this one.
    """

    def __init__(self, context: WorkspaceContext, inner: AbstractStore) -> None:
        self._context = context
        self._inner = inner

    def __repr__(self) -> str:
        return f"GuardedStore({self._inner!r}, workspace={self._context.name!r}, principal={self._context.principal!r})"

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method not in STORE_ACTIONS:
            raise AttributeError(f"{method!r} is not a metadata store call")
        target = getattr(self._inner, method)
        workspace_at = _workspace_parameter(method)
        context = self._context

        @functools.wraps(target)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            action = store_action(method, args, kwargs)
            if isinstance(action, Unavailable):
                raise AuthorizationError(f"{method} is not available through a handle on workspace {context.name!r}")
            context.require(action)
            if workspace_at is not None:
                named = kwargs["workspace"] if "workspace" in kwargs else (
                    args[workspace_at] if len(args) > workspace_at else None)
                if named is not None and named != context.name:
                    raise AuthorizationError(
                        f"A handle on workspace {context.name!r} may not act on workspace {named!r}"
                    )
            return target(*args, **kwargs)

        self.__dict__[method] = guarded  # built once per method and handle
        return guarded


@functools.cache
def _workspace_parameter(method: str) -> int | None:
    """The position of the ``workspace`` parameter of a store method (without self), if it has one."""
    parameters = list(inspect.signature(getattr(AbstractStore, method)).parameters)[1:]
    return parameters.index("workspace") if "workspace" in parameters else None


class WorkspaceContext:
    """One principal's handle on one workspace. Cheap to build; talks to the store only when asked."""

    def __init__(self, record: WorkspaceRecord, store: AbstractStore, store_uri: str, principal: str) -> None:
        self._record = record
        self._raw_store = store
        self.store_uri = store_uri
        self.principal = principal
        # Typed as the store interface: the guard forwards every call to it, checked.
        self.store: AbstractStore = cast(AbstractStore, GuardedStore(self, store))
        self._datastores: dict[str, AbstractDatastore] = {}

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, name: str, *, store_uri: str | None = None, principal: str | None = None) -> Self:
        """The workspace ``name`` (WorkspaceNotFoundError otherwise), acting as ``principal``
        (default: ``$AML_PRINCIPAL``, else the OS user)."""
        uri = _store_uri(store_uri)
        store = get_store(uri)
        return cls(store.get_workspace(name), store, uri, principal or config.current_principal())

    @classmethod
    def create(
        cls,
        name: str,
        *,
        store_uri: str | None = None,
        datastore_root: str | Path | None = None,
        description: str = "",
        exist_ok: bool = False,
        principal: str | None = None,
    ) -> Self:
        """Create a workspace with a local default datastore; its creator becomes Owner."""
        validate_name("workspace", name)
        uri = _store_uri(store_uri)
        store = get_store(uri)
        who = principal or config.current_principal()
        try:
            record = store.create_workspace(
                name, description=description, created_by=who, default_datastore=DEFAULT_DATASTORE
            )
        except AlreadyExistsError:
            if not exist_ok:
                raise
            return cls.open(name, store_uri=uri, principal=who)
        root = Path(datastore_root) if datastore_root else config.default_datastore_root(name)
        store.register_datastore(name, DEFAULT_DATASTORE, kind="local", config={"root": str(root.resolve())})
        store.assign_role(name, who, Role.OWNER)
        return cls(record, store, uri, who)

    # ------------------------------------------------------------------ identity
    @property
    def name(self) -> str:
        return self._record.name

    @property
    def record(self) -> WorkspaceRecord:
        return self._record

    def refresh(self) -> None:
        """Re-read the workspace record (its default datastore may have changed)."""
        self._record = self.store.get_workspace(self.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, store={config.redact(self.store_uri)!r})"

    # ------------------------------------------------------------------ authorization
    @cached_property
    def role(self) -> Role | None:
        """The acting principal's role, read once per handle (role changes need a new handle)."""
        return self._raw_store.get_role(self.name, self.principal)

    def allows(self, action: Action) -> bool:
        return allows(self.role, action)

    def require(self, action: Action) -> None:
        """AuthorizationError unless the principal's role allows ``action`` in this workspace."""
        if not allows(self.role, action):
            raise AuthorizationError(self.refusal(action))

    def refusal(self, action: Action) -> str:
        held = self.role.value if self.role else "no role"
        return f"Principal {self.principal!r} ({held}) may not {action.value} in workspace {self.name!r}"

    # ------------------------------------------------------------------ datastores
    def get_datastore(self, name: str) -> AbstractDatastore:
        """The datastore ``name``; read-only for a principal who may not write (a Reader)."""
        self.require(Action.READ)
        if name not in self._datastores:
            record = self.store.get_datastore(self.name, name)
            datastore = build_datastore(record.name, record.kind, dict(record.config))
            if not self.allows(Action.WRITE):
                datastore = ReadOnlyDatastore(datastore, self.refusal(Action.WRITE))
            self._datastores[name] = datastore
        return self._datastores[name]

    def get_default_datastore(self) -> AbstractDatastore:
        return self.get_datastore(self._record.default_datastore)

    def forget_datastore(self, name: str) -> None:
        """Drop a cached datastore handle (its registration changed)."""
        self._datastores.pop(name, None)

    # ------------------------------------------------------------------ secrets, metrics
    @cached_property
    def vault(self) -> SecretsVault:
        """Encrypted secrets; every read and write goes through the guarded store."""
        return SecretsVault(self.store, self.name, config.secret_key())

    @property
    def metric_buffer(self) -> MetricBuffer:
        """The process's buffer of metrics for this store. It writes with the store itself: callers
        check ``Action.WRITE`` when a value is queued (``run.log`` does), not when it is flushed."""
        return buffer_for(self._raw_store)


def _store_uri(store_uri: str | None) -> str:
    return config.absolute_store_uri(store_uri) if store_uri else config.default_store_uri()


__all__ = [
    "DATASTORE_PROPERTY",
    "DEFAULT_DATASTORE",
    "OUTPUTS_DIR",
    "SNAPSHOT_NAME",
    "GuardedStore",
    "WorkspaceContext",
    "run_file",
    "run_prefix",
]
