"""The model registry: a name + an auto-incremented version, tags, and the files behind them.

    model = ws.register_model("iris", run_id=run.id, run_path="outputs/model.pkl", tags={"stage": "dev"})
    Model.list(ws, tags={"stage": "dev"})
    ws.get_model("iris").download("/tmp/iris")

A version's files are copied into the datastore under ``models/<name>/<uuid>/`` when it is
registered, so that deleting the run or re-training later never changes a registered version.
Versions are assigned by the store inside one transaction: concurrent registrations get distinct
numbers, and a number is never reused after a delete.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from airflow_aml.context import WorkspaceContext, run_file
from airflow_aml.datastores import AbstractDatastore
from airflow_aml.datastores.paths import normalize_path
from airflow_aml.entities import ModelRecord
from airflow_aml.exceptions import ArtifactNotFoundError, DuplicateAttemptError, ValidationError
from airflow_aml.hashing import CHUNK_SIZE, tree_sha256, verify_tree
from airflow_aml.names import validate_name
from airflow_aml.roles import Action
from airflow_aml.runtime.run import Run


class Model:
    def __init__(self, workspace: WorkspaceContext, record: ModelRecord) -> None:
        self.workspace = workspace
        self.record = record

    def __repr__(self) -> str:
        return f"Model(name={self.name!r}, version={self.version})"

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
    def tags(self) -> dict[str, str]:
        return dict(self.record.tags)

    # ------------------------------------------------------------------ registry
    @classmethod
    def register(
        cls,
        workspace: WorkspaceContext,
        name: str,
        *,
        path: str | Path | None = None,
        run_id: str | None = None,
        run_path: str = "outputs",
        datastore_path: str | None = None,
        tags: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
        description: str = "",
        idempotency_key: str | None = None,
    ) -> Model:
        """Register the next version of ``name`` from exactly one source: a local file/folder
        (``path``), a run's files (``run_id`` + ``run_path``, a file or folder of the run), or files
        already in the default datastore (``datastore_path``).

        With an ``idempotency_key``, a second call with the same key returns the version the first
        one registered instead of adding another (what a retried Airflow task needs).
        """
        workspace.require(Action.WRITE)
        validate_name("model", name)
        if sum(source is not None for source in (path, run_id, datastore_path)) != 1:
            raise ValidationError(f"Model {name!r}: give exactly one of path=, run_id= or datastore_path=")
        store = workspace.store
        if idempotency_key:
            existing = store.search_models(workspace.name, name=name, idempotency_key=idempotency_key)
            if existing:
                return cls(workspace, existing[0])

        datastore = workspace.get_default_datastore()
        properties = dict(properties or {})
        if run_id is not None:
            run = Run.get(workspace, run_id)  # RunNotFoundError before anything is copied
            source_prefix = run_file(run.id, run_path)
            properties.setdefault("source", f"run:{run.id}/{normalize_path(run_path)}")
        elif datastore_path is not None:
            source_prefix = normalize_path(datastore_path)
            properties.setdefault("source", f"datastore:{datastore.name}/{source_prefix}")
        else:
            local = Path(path)  # type: ignore[arg-type]
            if not local.exists():
                raise ValidationError(f"Model {name!r}: path {str(local)!r} does not exist")
            source_prefix = None

        target = f"models/{name}/{uuid.uuid4().hex}"
        # The tree digest from what the copy itself wrote (each object's SHA-256 as committed),
        # not from listing the folder just written.
        if source_prefix is None:
            written = datastore.upload(Path(path), target, show_progress=True)  # type: ignore[arg-type]
            digest = tree_sha256((info.path[len(target) + 1:], info.sha256) for info in written)
        else:
            digest = _copy_within(datastore, source_prefix, target, what=f"Model {name!r} source")
        try:
            record = store.create_model_version(
                workspace.name, name, path=target, datastore=datastore.name, created_by=workspace.principal,
                description=description, run_id=run_id, sha256=digest, tags=tags, properties=properties,
                idempotency_key=idempotency_key,
            )
        except BaseException as exc:
            with contextlib.suppress(Exception):
                datastore.delete(target)  # no version points at these files
            if isinstance(exc, DuplicateAttemptError):  # a racing copy of this task registered it first
                [winner] = store.search_models(workspace.name, name=name, idempotency_key=idempotency_key)
                return cls(workspace, winner)
            raise
        return cls(workspace, record)

    @classmethod
    def get(cls, workspace: WorkspaceContext, name: str, version: int | None = None) -> Model:
        workspace.require(Action.READ)
        return cls(workspace, workspace.store.get_model_version(workspace.name, name, version))

    @classmethod
    def list(
        cls, workspace: WorkspaceContext, *, name: str | None = None, tags: Mapping[str, str] | None = None,
        latest: bool = False,
    ) -> list[Model]:
        """Versions matching ``name`` and every tag (a value of ``"*"`` matches any value)."""
        workspace.require(Action.READ)
        records = workspace.store.search_models(workspace.name, name=name, tags=tags, latest_only=latest)
        return [cls(workspace, r) for r in records]

    # ------------------------------------------------------------------ one version
    def add_tags(self, tags: Mapping[str, str]) -> None:
        self.workspace.require(Action.WRITE)
        self.workspace.store.set_model_tags(self.workspace.name, self.name, self.version, dict(tags))
        self.record = self.workspace.store.get_model_version(self.workspace.name, self.name, self.version)

    def files(self) -> list[str]:
        self.workspace.require(Action.READ)
        datastore = self.workspace.get_datastore(self.record.datastore)
        prefix = self.record.path + "/"
        return [info.path[len(prefix):] for info in datastore.list(prefix)]

    def download(self, target_dir: str | Path, *, exist_ok: bool = False) -> Path:
        """Copy the version's files into ``target_dir``; returns the folder (or the single file).

        The files are checked against the tree SHA-256 recorded at registration (IntegrityError
        when the datastore's copy was changed since)."""
        datastore = self.workspace.get_datastore(self.record.datastore)
        target = Path(target_dir)
        files = datastore.download(target, self.record.path, overwrite=exist_ok, show_progress=True)
        verify_tree(target, files, self.record.sha256, f"Model '{self.name}' version {self.version}")
        return files[0] if len(files) == 1 else target

    def delete(self) -> None:
        """Delete this version (ConflictError while an image uses it). Its number is never reused."""
        self.workspace.require(Action.WRITE)
        self.workspace.store.delete_model_version(self.workspace.name, self.name, self.version)
        self.workspace.get_datastore(self.record.datastore).delete(self.record.path)


def _copy_within(datastore: AbstractDatastore, source: str, target: str, *, what: str) -> str:
    """Copy one object or a folder of objects to ``target`` inside the same datastore; returns
    the tree SHA-256 of the copy, from the bytes written (the reads are verified against the
    source objects' own digests on the way)."""
    entries: list[tuple[str, str]] = []
    with contextlib.ExitStack() as stack:
        try:  # one object: opening it is the existence check (a folder is not an object)
            single: IO[bytes] | None = stack.enter_context(datastore.open_read(source))
        except ArtifactNotFoundError:
            single = None
        if single is not None:
            rel = source.rsplit("/", 1)[-1]
            return tree_sha256([(rel, _copy_stream(datastore, single, f"{target}/{rel}"))])
    pairs = [(info.path, info.path[len(source) + 1:]) for info in datastore.list(source + "/")]
    if not pairs:
        raise ArtifactNotFoundError(f"{what} {source!r} has no files in datastore {datastore.name!r}")
    for src, rel in pairs:
        with datastore.open_read(src) as reader:
            entries.append((rel, _copy_stream(datastore, reader, f"{target}/{rel}")))
    return tree_sha256(entries)


def _copy_stream(datastore: AbstractDatastore, reader: IO[bytes], dst: str) -> str:
    digest = hashlib.sha256()
    with datastore.open_write(dst) as writer:
        while chunk := reader.read(CHUNK_SIZE):
            writer.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()
