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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Self, TypeVar, cast

from airflow_aml import config
from airflow_aml.datastores import SECRET_SUFFIX, AbstractDatastore, build_datastore
from airflow_aml.datastores.paths import normalize_path
from airflow_aml.datastores.readonly import ReadOnlyDatastore
from airflow_aml.entities import ActivityRecord, Metric, Role, RunRecord, WorkspaceRecord
from airflow_aml.exceptions import (
    ActivityNotFoundError,
    AlreadyExistsError,
    AuthorizationError,
    RunNotFoundError,
)
from airflow_aml.names import validate_name
from airflow_aml.roles import STORE_ACTIONS, Action, Unavailable, allows, store_action
from airflow_aml.secrets_store import SecretsVault, ServiceVault
from airflow_aml.store import AbstractStore, get_store
from airflow_aml.store.buffer import MetricBuffer, buffer_for

DEFAULT_DATASTORE = "workspaceblobstore"
_UNREAD = object()
# The datastore that holds a run's (or an image's) files, fixed when it is created: changing the
# workspace's default later must not hide the files of earlier runs.
DATASTORE_PROPERTY = "aml.datastore"
SNAPSHOT_NAME = "snapshot.zip"
OUTPUTS_DIR = "outputs"

T = TypeVar("T")


def run_prefix(run_id: str) -> str:
    """Datastore folder that holds one run's files (outputs/, logs/, images/, snapshot.zip)."""
    return f"runs/{run_id}"


def run_file(run_id: str, name: str) -> str:
    """The datastore path of the run's file ``name`` (``outputs/model.pkl``), checked."""
    return f"{run_prefix(run_id)}/{normalize_path(name)}"


# Store calls that name a run or an activity by id rather than a workspace: the guard looks up
# which workspace the object is in (once per id: a run never moves) and refuses another one's.
_RUN_ID_CALLS = frozenset({
    "get_run", "update_run_status", "finish_run", "request_cancel", "set_snapshot", "set_run_tags", "delete_run_tags",
    "add_run_properties", "beat_run_heartbeat",
    "log_params", "log_batch", "log_metric", "get_metrics", "append_log", "read_log",
})
_ACTIVITY_ID_CALLS = frozenset({"get_activity", "update_activity"})


class GuardedStore:
    """The metadata store as one principal may use it in one workspace.

    Every attribute is a store method wrapped with a check: the principal's role must allow the
    call's action (``roles.STORE_ACTIONS``), and the call must act on this workspace: one that
    names another workspace is refused (AuthorizationError), a run or activity of another
    workspace named by its id is not found (RunNotFoundError, ActivityNotFoundError).
    """

    def __init__(self, context: WorkspaceContext, inner: AbstractStore) -> None:
        self._context = context
        self._inner = inner
        self._workspace_of: dict[tuple[str, str], str] = {}  # (kind, id) -> its workspace

    def check_run(self, run_id: str) -> None:
        """RunNotFoundError unless run ``run_id`` belongs to this handle's workspace."""
        self._check_owned("run", run_id)

    def _check_owned(self, kind: str, object_id: str) -> None:
        key = (kind, object_id)
        if key not in self._workspace_of:
            # The store itself, unguarded: the role was checked already, and a not-found id fails
            # here exactly as the call would.
            record = self._inner.get_run(object_id) if kind == "run" else self._inner.get_activity(object_id)
            self._workspace_of[key] = record.workspace
        if self._workspace_of[key] != self._context.name:
            # Not found, as for any id this workspace does not have: another one's are not shown.
            error = RunNotFoundError if kind == "run" else ActivityNotFoundError
            raise error(f"{kind.capitalize()} {object_id!r} not found in workspace {self._context.name!r}")

    def __repr__(self) -> str:
        return f"GuardedStore({self._inner!r}, workspace={self._context.name!r}, principal={self._context.principal!r})"

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method not in STORE_ACTIONS:
            raise AttributeError(f"{method!r} is not a metadata store call")
        target = getattr(self._inner, method)
        workspace_at = _workspace_parameter(method)
        context, guard = self._context, self

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
            guard._check_ids(method, args, kwargs)
            result = target(*args, **kwargs)
            guard.remember(result)
            return result

        self.__dict__[method] = guarded  # built once per method and handle
        return guarded

    def remember(self, result: Any) -> None:
        """Note the workspace of the runs and activities a call returned: ids a caller got from
        this handle (a search's runs) are then checked without another query."""
        for record in result if isinstance(result, list) else (result,):
            if isinstance(record, RunRecord):
                self._workspace_of[("run", record.run_id)] = record.workspace
            elif isinstance(record, ActivityRecord):
                self._workspace_of[("activity", record.activity_id)] = record.workspace
            else:
                return

    def _check_ids(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if method in _RUN_ID_CALLS:
            self._check_owned("run", kwargs["run_id"] if "run_id" in kwargs else args[0])
        elif method in _ACTIVITY_ID_CALLS:
            self._check_owned("activity", kwargs["activity_id"] if "activity_id" in kwargs else args[0])
        elif method in ("get_latest_scalar_metrics", "get_latest_metrics"):
            for run_id in kwargs.get("run_ids", args[0] if args else ()):
                self._check_owned("run", run_id)
        elif method == "create_run" and kwargs.get("parent_run_id"):
            try:
                self._check_owned("run", kwargs["parent_run_id"])
            except RunNotFoundError:
                raise RunNotFoundError(
                    f"Parent run {kwargs['parent_run_id']!r} not found in workspace {self._context.name!r}"
                ) from None


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
        self._role: Role | object | None = _UNREAD
        self._vault: SecretsVault | ServiceVault | None = None

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, name: str, *, store_uri: str | None = None, principal: str | None = None) -> Self:
        """The workspace ``name`` (WorkspaceNotFoundError otherwise), acting as ``principal``
        (default: ``$AML_PRINCIPAL``, else the OS user)."""
        uri = _store_uri(store_uri)
        store = get_store(uri)
        who = _acting_principal(store, principal)
        return cls(store.get_workspace(name), store, uri, who)

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
        who = _acting_principal(store, principal)
        root = Path(datastore_root) if datastore_root else config.default_datastore_root(name)
        try:
            record = store.create_workspace(
                name, description=description, created_by=who, default_datastore=DEFAULT_DATASTORE,
                datastore={"kind": "local", "config": {"root": str(root.resolve())}}, owner=who,
            )
        except AlreadyExistsError:
            if not exist_ok:
                raise
            return cls.open(name, store_uri=uri, principal=who)
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

    @property
    def service_client(self) -> Any | None:
        """The workspace service's client when this workspace is served (``ServiceClient``), else
        None: for the calls that are not store methods (minting a run token)."""
        return self._raw_store.client if self._raw_store.served else None  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ authorization
    @property
    def role(self) -> Role | None:
        """The acting principal's role, read once per handle (role changes need a new handle)."""
        # Not functools.cached_property: on Python 3.11 it holds one lock per class while it
        # computes, so the service's threads (and a client in the same process) would queue
        # behind one another's store reads.
        if self._role is _UNREAD:
            self._role = self._raw_store.get_role(self.name, self.principal)
        return cast(Role | None, self._role)

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
            if self._raw_store.served:
                # Reached through the service: it holds the credentials and checks every path.
                from airflow_aml.datastores.service import ServiceDatastore

                datastore: AbstractDatastore = ServiceDatastore(
                    self._raw_store.client, self.name, record.name)  # type: ignore[attr-defined]
            else:
                datastore = build_datastore(record.name, record.kind, self._with_secrets(record.config))
            if not self.allows(Action.WRITE):
                datastore = ReadOnlyDatastore(datastore, self.refusal(Action.WRITE))
            self._datastores[name] = datastore
        return self._datastores[name]

    def _with_secrets(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """A datastore's config with each ``<key>_secret`` (a secret's name) replaced by ``<key>``
        holding the secret's value: credentials live in the vault, the record only names them."""
        resolved: dict[str, Any] = {}
        for key, value in config.items():
            if key.endswith(SECRET_SUFFIX) and isinstance(value, str):
                resolved[key[: -len(SECRET_SUFFIX)]] = self.vault.get(value)
            else:
                resolved[key] = value
        return resolved

    def get_default_datastore(self) -> AbstractDatastore:
        return self.get_datastore(self._record.default_datastore)

    def forget_datastore(self, name: str) -> None:
        """Drop a cached datastore handle (its registration changed)."""
        self._datastores.pop(name, None)

    # ------------------------------------------------------------------ secrets, metrics
    @property
    def vault(self) -> SecretsVault | ServiceVault:
        """Encrypted secrets; every read and write goes through the guarded store (or, for a
        served workspace, through the service, which holds the key)."""
        if self._vault is None:
            if self._raw_store.served:
                self._vault = ServiceVault(self._raw_store, self.name)
            else:
                self._vault = SecretsVault(self.store, self.name, config.secret_key())
        return self._vault

    def metric_writer(self, run_id: str) -> MetricWriter:
        """Where ``run.log`` queues the metrics of run ``run_id`` (see ``MetricWriter``)."""
        return MetricWriter(self, run_id, buffer_for(self._raw_store))


class MetricWriter:
    """The metrics of one run, buffered: ``add`` costs a list append, a background thread writes
    batches (``store.buffer``). The buffer writes with the store itself, so the checks happen
    here, when a value is queued, where a refusal reaches the caller: the principal may write,
    and the run is of this workspace (looked up once)."""

    def __init__(self, context: WorkspaceContext, run_id: str, buffer: MetricBuffer) -> None:
        self._context = context
        self._run_id = run_id
        self._buffer = buffer
        self._run_checked = False

    def add(self, metric: Metric) -> None:
        self._context.require(Action.WRITE)
        if not self._run_checked:
            cast(GuardedStore, self._context.store).check_run(self._run_id)
            self._run_checked = True
        self._buffer.add(self._run_id, metric)

    def flush(self) -> None:
        """Write everything queued so far (of every run of this store and process)."""
        self._buffer.flush()

    def take(self, write: Callable[[list[Metric]], T]) -> T:
        """Hand this run's queued metrics to ``write`` instead of flushing them apart
        (``MetricBuffer.take``): how a run's end stores them with its status."""
        return self._buffer.take(self._run_id, write)


def _acting_principal(store: AbstractStore, principal: str | None) -> str:
    """Who acts: for a served workspace the token's principal (the service decides; naming
    another is an error, not a silent switch), else ``principal``, ``$AML_PRINCIPAL`` or the OS user."""
    if not store.served:
        return principal or config.current_principal()
    token_principal = str(store.principal)  # type: ignore[attr-defined]
    if principal and principal != token_principal:
        raise AuthorizationError(
            f"The workspace service's token acts as {token_principal!r}, not {principal!r}"
        )
    return token_principal


def _store_uri(store_uri: str | None) -> str:
    return config.absolute_store_uri(store_uri) if store_uri else config.default_store_uri()


__all__ = [
    "DATASTORE_PROPERTY",
    "DEFAULT_DATASTORE",
    "OUTPUTS_DIR",
    "SNAPSHOT_NAME",
    "GuardedStore",
    "MetricWriter",
    "WorkspaceContext",
    "run_file",
    "run_prefix",
]
