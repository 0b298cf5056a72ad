"""The authorization matrix: every public member of the SDK's objects, called under every role.

Every public method and property (inherited ones, classmethods and staticmethods included) of
``Workspace``, ``Experiment``, ``Run``, ``Model``, ``Image`` and ``Deployment`` is classified in
``TABLE`` by the ``Action`` it needs, or ``None`` when it needs no role (a field of a record already
loaded, a handle that reads nothing when it is built, a purely local check). Each member is then
called as the Owner (alice), a Contributor (carol), a Reader (bob) and a principal with no role at
all (mallory), on handles that principal holds on objects the Owner made -- what a principal who
learned an id gets (``Run(ws_of_principal, owner_run.record)``). The matrix guarantees:

- a role that allows the action (or any principal, for ``None``) is never refused with
  ``AuthorizationError``;
- a role that does not allow it always is, and the refusal leaves the Owner's run, model, image
  and deployment of that case exactly as they were;
- no public member can be added (or renamed) without being classified here
  (``test_every_member_is_classified`` names the ones missing, and the entries that are stale).
"""

from __future__ import annotations

import inspect
import socket
import uuid
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

from airflow_aml.activities import ActivityKind
from airflow_aml.deployments import Deployment
from airflow_aml.deployments.keys import read_keys, store_keys
from airflow_aml.entities import ImageRecord, Metric, Role
from airflow_aml.exceptions import AmlError, AuthorizationError
from airflow_aml.experiment import Experiment
from airflow_aml.images import builders
from airflow_aml.images.builders import AbstractImageBuilder, BuildResult, LogFn, ProgressFn
from airflow_aml.images.image import Image
from airflow_aml.models import Model
from airflow_aml.roles import Action, allows
from airflow_aml.runs import Run
from airflow_aml.runtime.scoring.auth import hash_key
from airflow_aml.workspace import Workspace

R, W, S, M = Action.READ, Action.WRITE, Action.READ_SECRETS, Action.MANAGE
WORKSPACE = "ws"
OWNER = "alice"
PRINCIPALS: dict[str, Role | None] = {
    OWNER: Role.OWNER, "carol": Role.CONTRIBUTOR, "bob": Role.READER, "mallory": None,
}
CLASSES: dict[str, type] = {
    "Workspace": Workspace, "Experiment": Experiment, "Run": Run, "Model": Model, "Image": Image,
    "Deployment": Deployment,
}
FAKE_BUILDER = "authz-fake"


class FakeBuilder(AbstractImageBuilder):
    """Builds at once (the registry's calls are under test, not a builder). Its images cannot be
    served by the ``local`` deployment target, so no deployment here ever starts a supervisor."""

    kind = FAKE_BUILDER

    def build(self, bundle: Path, record: ImageRecord, progress: ProgressFn, log: LogFn) -> BuildResult:
        progress(0.0, "Faking an environment")
        log("fake build")
        progress(1.0, "Fake environment ready")
        return BuildResult(location=str(bundle), digest=bundle.name)


def _free_port() -> int:
    """A port nothing listens on (a scoring call to it fails at once, with DeploymentError)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class World:
    """One workspace for the whole module (a workspace per case would cost a database each).
    What the cases read is made here; what a case changes, its ``Case`` makes for it alone."""

    def __init__(self, root: Path, store_uri: str) -> None:
        self.root = root
        self.store_uri = store_uri
        self.owner = Workspace.create(WORKSPACE, store_uri=store_uri, datastore_root=root / "datastore",
                                      principal=OWNER)
        self.owner.assign_role("carol", Role.CONTRIBUTOR)
        self.owner.assign_role("bob", Role.READER)
        self.model_file = root / "model" / "model.txt"
        self.model_file.parent.mkdir()
        self.model_file.write_text("weights: 1 2 3\n")
        self.source = root / "src"
        self.source.mkdir()
        (self.source / "score.py").write_text("def init():\n    pass\n\ndef run(raw):\n    return raw\n")
        (self.source / "train.py").write_text("print('trained')\n")
        self.png = root / "curve.png"
        self.png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
        # Read-only fixtures of every case: experiment "e" (with a completed run), model "base",
        # image "base-img" (built, with its image_build activity).
        seed = self.owner.experiment("e").start_logging()
        seed.log("accuracy", 0.9)
        seed.complete()
        self.owner.register_model("base", path=self.model_file)
        self.base_image = self.owner.create_image("base-img", self.image_spec(), builder=FAKE_BUILDER)

    def handle(self, principal: str) -> Workspace:
        return Workspace.get(WORKSPACE, store_uri=self.store_uri, principal=principal)

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    def path(self, prefix: str) -> Path:
        return self.root / self.unique(prefix)

    def image_spec(self) -> dict[str, Any]:
        return {"models": ["base"], "source_directory": str(self.source), "entry_script": "score.py"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("authz")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AML_HOME", str(root / "aml-home"))
        patch.setenv("AML_PROGRESS", "0")
        for name in ("AML_STORE_URI", "AML_SECRET_KEY", "AML_RUN_ID", "AML_PRINCIPAL"):
            patch.delenv(name, raising=False)
        builders.register_image_builder(FAKE_BUILDER, FakeBuilder)
        try:
            yield World(root, f"sqlite:///{root / 'aml.db'}")
        finally:
            builders._KINDS.pop(FAKE_BUILDER, None)


# ---------------------------------------------------------------------------------------- one case
def _run_state(run: Run) -> tuple[Any, ...]:
    record = run.record
    return (record.status, record.error, record.cancel_requested, record.tags, record.properties,
            record.params, record.snapshot_sha256, run.get_metrics(), sorted(run.get_file_names()))


def _model_state(model: Model) -> tuple[Any, ...]:
    record = Model.get(model.workspace, model.name, model.version).record
    return record, sorted(model.files())


def _image_state(image: Image) -> ImageRecord:
    return Image.get(image.workspace, image.name, image.version).record


def _deployment_state(deployment: Deployment) -> tuple[Any, ...]:
    return Deployment.get(deployment.workspace, deployment.name).record, read_keys(deployment.workspace,
                                                                                   deployment.name)


class Case:
    """One (member, principal) case: the principal's handle on the workspace, and its handles on
    objects the Owner made for this case only (each made on first use). ``watch`` makes the case
    remember the Owner's view of each of them, to tell afterwards whether a refused call changed
    anything."""

    def __init__(self, world: World, principal: str, *, watch: bool) -> None:
        self.world = world
        self.principal = principal
        self.owner = world.owner
        self.ws = world.handle(principal)
        self._watch = watch
        self._watched: dict[str, Callable[[], Any]] = {}
        self.before: dict[str, Any] = {}

    def _made(self, what: str, state: Callable[[], Any]) -> None:
        if self._watch:
            self._watched[what] = state
            self.before = self.now()  # again: making one object may change another's view

    def now(self) -> dict[str, Any]:
        return {what: state() for what, state in self._watched.items()}

    # The Owner's objects ------------------------------------------------------------------------
    @cached_property
    def owner_run(self) -> Run:
        run = self.owner.experiment("e").start_logging(display_name="owned")
        run.log("accuracy", 0.8)
        run.upload_bytes("outputs/model.pkl", b"model")
        run.take_snapshot(self.world.source)
        run.flush()
        self._made("run", lambda: _run_state(run))
        return run

    @cached_property
    def owner_child(self) -> Run:
        child = self.owner_run.child_run("child")
        self._made("child", lambda: _run_state(child))
        return child

    @cached_property
    def owner_model(self) -> Model:
        model = self.owner.register_model(self.world.unique("m"), path=self.world.model_file, tags={"stage": "dev"})
        self._made("model", lambda: _model_state(model))
        return model

    @cached_property
    def owner_image(self) -> Image:
        image = self.owner.create_image(self.world.unique("img"), self.world.image_spec(), builder=FAKE_BUILDER)
        self._made("image", lambda: _image_state(image))
        return image

    @cached_property
    def owner_deployment(self) -> Deployment:
        """A deployment record as the Owner's create leaves it (keys in the secrets, an activity),
        served by nothing: no supervisor, no replicas, nothing listening on its port."""
        store, name, port = self.owner.store, self.world.unique("svc"), _free_port()
        keys = {"primary": uuid.uuid4().hex, "secondary": uuid.uuid4().hex}
        store.create_deployment(
            WORKSPACE, name, target="local", image_id=self.world.base_image.id, created_by=OWNER, config={},
            scoring_uri=f"http://127.0.0.1:{port}/score", primary_key_hash=hash_key(keys["primary"]),
            secondary_key_hash=hash_key(keys["secondary"]), runtime={"port": port},
        )
        store_keys(self.owner, name, keys)
        activity = store.create_activity(WORKSPACE, kind=ActivityKind.DEPLOYMENT_CREATE, target_id=name,
                                         message="Queued")
        deployment = Deployment(self.owner, store.update_deployment(WORKSPACE, name, activity_id=activity.activity_id))
        self._made("deployment", lambda: _deployment_state(deployment))
        return deployment

    # The principal's handles on them, as obtained by id -----------------------------------------
    @cached_property
    def run(self) -> Run:
        return Run(self.ws, self.owner_run.record)

    @cached_property
    def child(self) -> Run:
        return Run(self.ws, self.owner_child.record)

    @cached_property
    def experiment(self) -> Experiment:
        return Experiment(self.ws, "e")

    @cached_property
    def model(self) -> Model:
        return Model(self.ws, self.owner_model.record)

    @cached_property
    def image(self) -> Image:
        return Image(self.ws, self.owner_image.record)

    @cached_property
    def deployment(self) -> Deployment:
        return Deployment(self.ws, self.owner_deployment.record)

    # Helpers of the calls that need the Owner to prepare something ------------------------------
    def owner_secret(self) -> str:
        name = self.world.unique("secret")
        self.owner.set_secret(name, "s3cret")
        return name

    def owner_compute_target(self) -> str:
        name = self.world.unique("ct")
        self.owner.register_compute_target(name)
        return name

    def owner_assignee(self) -> str:
        who = self.world.unique("temp")
        self.owner.assign_role(who, Role.READER)
        return who


Expected = Action | None
Call = Callable[[Case], Any]

# ------------------------------------------------------------------------------- the classification
# (class, member) -> (the action the member needs, or None; a call of it on the case's objects).
# Calls that would start something real are made to stop after their authorization check:
# ``submit`` names a compute target that does not exist, deployments serve fake-built images (which
# the local target refuses), and waits end at a short timeout.
TABLE: dict[tuple[str, str], tuple[Expected, Call]] = {
    # ----- Workspace (and what it inherits from WorkspaceContext)
    ("Workspace", "activity_waiter"): (R, lambda c: c.ws.activity_waiter(c.world.base_image.record.activity_id)),
    ("Workspace", "allows"): (None, lambda c: c.ws.allows(W)),
    ("Workspace", "assign_role"): (M, lambda c: c.ws.assign_role(c.world.unique("newbie"), Role.READER)),
    ("Workspace", "compute_targets"): (R, lambda c: c.ws.compute_targets),
    # Anyone may create a workspace of their own (and becomes its Owner).
    ("Workspace", "create"): (None, lambda c: Workspace.create(
        c.world.unique("own"), store_uri=c.world.store_uri, datastore_root=c.world.path("own"),
        principal=c.principal)),
    ("Workspace", "create_image"): (W, lambda c: c.ws.create_image(
        c.world.unique("img"), c.world.image_spec(), builder=FAKE_BUILDER)),
    ("Workspace", "datastores"): (R, lambda c: c.ws.datastores),
    ("Workspace", "delete_compute_target"): (M, lambda c: c.ws.delete_compute_target(c.owner_compute_target())),
    ("Workspace", "delete_secret"): (M, lambda c: c.ws.delete_secret(c.owner_secret())),
    ("Workspace", "deploy_webservice"): (W, lambda c: c.ws.deploy_webservice(
        c.world.unique("svc"), c.world.base_image.id, wait=False)),
    # Fake-built images: refused as not docker-built, after the authorization check.
    ("Workspace", "edge_manifest"): (R, lambda c: c.ws.edge_manifest("edge", c.world.base_image.id)),
    ("Workspace", "deploy_edge_module"): (W, lambda c: c.ws.deploy_edge_module(
        "edge", c.world.base_image.id, device_id="dev", hub_connection_secret="hub")),
    ("Workspace", "export_edge_module"): (W, lambda c: c.ws.export_edge_module(
        "edge", c.world.base_image.id, c.world.path(c.world.unique("export")))),
    ("Workspace", "collect_edge_telemetry"): (W, lambda c: c.ws.collect_edge_telemetry(
        "edge", c.world.path(c.world.unique("edge")))),
    ("Workspace", "experiment"): (None, lambda c: c.ws.experiment("e")),  # a handle; reads nothing
    ("Workspace", "experiments"): (R, lambda c: c.ws.experiments),
    ("Workspace", "forget_datastore"): (None, lambda c: c.ws.forget_datastore("workspaceblobstore")),
    # Builds a handle for any principal; the checks come when it is used.
    ("Workspace", "get"): (None, lambda c: Workspace.get(WORKSPACE, store_uri=c.world.store_uri,
                                                         principal=c.principal)),
    ("Workspace", "get_activity"): (R, lambda c: c.ws.get_activity(c.world.base_image.record.activity_id)),
    ("Workspace", "get_datastore"): (R, lambda c: c.ws.get_datastore("workspaceblobstore")),
    ("Workspace", "get_default_datastore"): (R, lambda c: c.ws.get_default_datastore()),
    ("Workspace", "get_deployment"): (R, lambda c: c.ws.get_deployment(c.owner_deployment.name)),
    ("Workspace", "get_experiment"): (R, lambda c: c.ws.get_experiment("e")),
    ("Workspace", "get_image"): (R, lambda c: c.ws.get_image("base-img")),
    ("Workspace", "get_model"): (R, lambda c: c.ws.get_model("base")),
    ("Workspace", "get_run"): (R, lambda c: c.ws.get_run(c.owner_run.id)),
    ("Workspace", "get_secret"): (S, lambda c: c.ws.get_secret(c.owner_secret())),
    # Fails lost runs (none here: the Owner's runs have ended or beat): a write.
    ("Workspace", "reap_lost_runs"): (W, lambda c: c.ws.reap_lost_runs()),
    # The workspaces of a store: no workspace, so no role, to ask in (a system listing).
    ("Workspace", "list"): (None, lambda c: Workspace.list(store_uri=c.world.store_uri)),
    ("Workspace", "list_activities"): (R, lambda c: c.ws.list_activities(kind=ActivityKind.IMAGE_BUILD)),
    ("Workspace", "list_deployments"): (R, lambda c: c.ws.list_deployments()),
    ("Workspace", "list_images"): (R, lambda c: c.ws.list_images(model="base")),
    ("Workspace", "list_models"): (R, lambda c: c.ws.list_models(name="base")),
    ("Workspace", "list_role_assignments"): (R, lambda c: c.ws.list_role_assignments()),
    ("Workspace", "list_secrets"): (R, lambda c: c.ws.list_secrets()),
    # Building the writer reads nothing; what it is for, queuing a metric, needs WRITE.
    ("Workspace", "metric_writer"): (W, lambda c: c.ws.metric_writer(c.owner_run.id).add(Metric("m", 1.0, 0, 0.0))),
    ("Workspace", "name"): (None, lambda c: c.ws.name),
    ("Workspace", "open"): (None, lambda c: Workspace.open(WORKSPACE, store_uri=c.world.store_uri,
                                                           principal=c.principal)),
    ("Workspace", "record"): (None, lambda c: c.ws.record),  # read when the handle was built
    ("Workspace", "refresh"): (R, lambda c: c.ws.refresh()),
    ("Workspace", "refusal"): (None, lambda c: c.ws.refusal(W)),
    ("Workspace", "register_compute_target"): (M, lambda c: c.ws.register_compute_target(c.world.unique("ct"))),
    ("Workspace", "register_datastore"): (M, lambda c: c.ws.register_datastore(
        c.world.unique("ds"), config={"root": str(c.world.path("ds"))})),
    ("Workspace", "register_model"): (W, lambda c: c.ws.register_model(c.world.unique("m"), path=c.world.model_file)),
    ("Workspace", "remove_role"): (M, lambda c: c.ws.remove_role(c.owner_assignee())),
    ("Workspace", "require"): (R, lambda c: c.ws.require(R)),
    ("Workspace", "role"): (None, lambda c: c.ws.role),
    ("Workspace", "set_default_datastore"): (M, lambda c: c.ws.set_default_datastore("workspaceblobstore")),
    ("Workspace", "set_secret"): (M, lambda c: c.ws.set_secret(c.world.unique("secret"), "v")),
    ("Workspace", "service_client"): (None, lambda c: c.ws.service_client),  # None: not served
    ("Workspace", "vault"): (None, lambda c: c.ws.vault),  # the vault's calls are checked by the store guard
    ("Workspace", "wait_for_activity"): (R, lambda c: c.ws.wait_for_activity(
        c.world.base_image.record.activity_id, timeout=5, poll_interval=0.01)),
    # ----- Experiment
    ("Experiment", "best_run"): (R, lambda c: c.experiment.best_run("accuracy")),
    ("Experiment", "get_metrics_table"): (R, lambda c: c.experiment.get_metrics_table()),
    ("Experiment", "get_runs"): (R, lambda c: c.experiment.get_runs(status="Completed")),
    ("Experiment", "search_runs"): (R, lambda c: c.experiment.search_runs(metrics=["accuracy >= 0.5"],
                                                                          max_results=5)),
    ("Experiment", "start_logging"): (W, lambda c: c.experiment.start_logging()),
    # A compute target that does not exist: a permitted submit stops there (ComputeTargetNotFoundError),
    # after its authorization check and before anything is written or started.
    ("Experiment", "submit"): (W, lambda c: c.experiment.submit(
        c.world.source, {"script": "train.py", "target": "no-such-target"})),
    # ----- Run (the SDK's run handle, with what it inherits from the script-side Run)
    ("Run", "add_properties"): (W, lambda c: c.run.add_properties({"p": "1"})),
    ("Run", "cancel"): (W, lambda c: c.run.cancel()),
    ("Run", "child_run"): (W, lambda c: c.run.child_run("kid")),
    ("Run", "complete"): (W, lambda c: c.run.complete()),
    ("Run", "create_children"): (W, lambda c: c.run.create_children(2)),
    ("Run", "download_file"): (R, lambda c: c.run.download_file("outputs/model.pkl", c.world.path("file"))),
    ("Run", "download_files"): (R, lambda c: c.run.download_files("outputs", c.world.path("files"))),
    ("Run", "download_snapshot"): (R, lambda c: c.run.download_snapshot(c.world.path("snapshot.zip"))),
    ("Run", "experiment"): (None, lambda c: c.run.experiment),
    ("Run", "fail"): (W, lambda c: c.run.fail("broken")),
    ("Run", "flush"): (None, lambda c: c.run.flush()),  # writes what was queued, checked when queued
    ("Run", "get"): (R, lambda c: Run.get(c.ws, c.owner_run.id)),
    ("Run", "get_children"): (R, lambda c: c.run.get_children()),
    ("Run", "get_context"): (None, lambda c: Run.get_context()),  # outside a run: an offline run
    ("Run", "get_details"): (R, lambda c: c.run.get_details()),
    ("Run", "get_file_names"): (R, lambda c: c.run.get_file_names()),
    ("Run", "get_log_text"): (R, lambda c: c.run.get_log_text()),
    ("Run", "get_metrics"): (R, lambda c: c.run.get_metrics()),
    ("Run", "get_status"): (R, lambda c: c.run.get_status(include_children=True)),
    ("Run", "id"): (None, lambda c: c.run.id),
    ("Run", "log"): (W, lambda c: c.run.log("loss", 0.1)),
    ("Run", "log_image"): (W, lambda c: c.run.log_image("curve", path=c.world.png)),
    ("Run", "log_list"): (W, lambda c: c.run.log_list("folds", [0.1, 0.2])),
    ("Run", "log_param"): (W, lambda c: c.run.log_param("C", 1)),
    ("Run", "log_params"): (W, lambda c: c.run.log_params({"C": 1})),
    ("Run", "log_row"): (W, lambda c: c.run.log_row("roc", fpr=0.1, tpr=0.8)),
    ("Run", "log_table"): (W, lambda c: c.run.log_table("table", {"x": [1.0, 2.0]})),
    ("Run", "parent"): (R, lambda c: c.child.parent),
    ("Run", "read_log"): (R, lambda c: c.run.read_log()),
    ("Run", "record"): (R, lambda c: c.run.record),  # re-reads the store
    # A tag the run may not have: a permitted call can end in NotFoundError, past the check.
    ("Run", "remove_tags"): (W, lambda c: c.run.remove_tags("k")),
    ("Run", "restore_snapshot"): (R, lambda c: c.run.restore_snapshot(c.world.path("checkout"))),
    ("Run", "set_tags"): (W, lambda c: c.run.set_tags({"k": "v"})),
    ("Run", "stream_logs"): (R, lambda c: c.run.stream_logs(on_log=lambda chunk: None,
                                                              on_child_log=lambda child, chunk: None)),
    ("Run", "start"): (W, lambda c: c.run.start()),
    ("Run", "status"): (R, lambda c: c.run.status),  # re-reads the store
    ("Run", "tag"): (W, lambda c: c.run.tag("k", "v")),
    ("Run", "take_snapshot"): (W, lambda c: c.run.take_snapshot(c.world.source)),
    ("Run", "upload_bytes"): (W, lambda c: c.run.upload_bytes("outputs/x.bin", b"x")),
    ("Run", "upload_file"): (W, lambda c: c.run.upload_file("outputs/m.txt", c.world.model_file)),
    ("Run", "upload_folder"): (W, lambda c: c.run.upload_folder("outputs/src", c.world.source)),
    # The run goes on: a permitted wait ends at its timeout (WaitTimeoutError).
    ("Run", "wait_for_completion"): (R, lambda c: c.run.wait_for_completion(timeout=0.01, poll_interval=0.01)),
    ("Run", "waiter"): (None, lambda c: c.run.waiter()),  # builds a waiter; its polls are checked reads
    # ----- Model
    ("Model", "add_tags"): (W, lambda c: c.model.add_tags({"stage": "prod"})),
    ("Model", "delete"): (W, lambda c: c.model.delete()),
    ("Model", "download"): (R, lambda c: c.model.download(c.world.path("model"))),
    ("Model", "files"): (R, lambda c: c.model.files()),
    ("Model", "get"): (R, lambda c: Model.get(c.ws, "base")),
    ("Model", "id"): (None, lambda c: c.model.id),
    ("Model", "list"): (R, lambda c: Model.list(c.ws, tags={"stage": "*"})),
    ("Model", "name"): (None, lambda c: c.model.name),
    ("Model", "register"): (W, lambda c: Model.register(c.ws, c.world.unique("m"), path=c.world.model_file)),
    ("Model", "tags"): (None, lambda c: c.model.tags),
    ("Model", "version"): (None, lambda c: c.model.version),
    # ----- Image
    ("Image", "activity"): (R, lambda c: c.image.activity),
    ("Image", "add_tags"): (W, lambda c: c.image.add_tags({"stage": "prod"})),
    ("Image", "bundle_path"): (None, lambda c: c.image.bundle_path()),  # a local folder the record names
    ("Image", "create"): (W, lambda c: Image.create(c.ws, c.world.unique("img"), c.world.image_spec(),
                                                    builder=FAKE_BUILDER)),
    ("Image", "delete"): (W, lambda c: c.image.delete()),
    ("Image", "digest"): (None, lambda c: c.image.digest),
    ("Image", "error"): (None, lambda c: c.image.error),
    ("Image", "get"): (R, lambda c: Image.get(c.ws, "base-img")),
    ("Image", "get_build_log"): (R, lambda c: c.image.get_build_log()),
    ("Image", "id"): (None, lambda c: c.image.id),
    ("Image", "list"): (R, lambda c: Image.list(c.ws, model="base")),
    ("Image", "location"): (None, lambda c: c.image.location),
    ("Image", "model_ids"): (None, lambda c: c.image.model_ids),
    ("Image", "name"): (None, lambda c: c.image.name),
    ("Image", "properties"): (None, lambda c: c.image.properties),
    ("Image", "refresh"): (R, lambda c: c.image.refresh()),
    ("Image", "status"): (None, lambda c: c.image.status),
    ("Image", "tags"): (None, lambda c: c.image.tags),
    ("Image", "version"): (None, lambda c: c.image.version),
    ("Image", "wait_for_completion"): (R, lambda c: c.image.wait_for_completion(timeout=5)),
    ("Image", "waiter"): (None, lambda c: c.image.waiter()),  # builds a waiter; its polls are checked reads
    # ----- Deployment (its images are fake-built: a permitted create/update/deploy/restore stops at the
    # local target's check of the image, ValidationError or DeploymentError, before anything starts)
    ("Deployment", "activity"): (R, lambda c: c.deployment.activity),
    ("Deployment", "config"): (None, lambda c: c.deployment.config),
    ("Deployment", "create"): (W, lambda c: Deployment.create(c.ws, c.world.unique("svc"), c.world.base_image.id,
                                                              wait=False)),
    ("Deployment", "delete"): (W, lambda c: c.deployment.delete(timeout=30)),
    ("Deployment", "delete_if_exists"): (W, lambda c: Deployment.delete_if_exists(c.ws, c.owner_deployment.name,
                                                                                  timeout=30)),
    ("Deployment", "deploy"): (W, lambda c: Deployment.deploy(c.ws, c.owner_deployment.name, c.world.base_image.id,
                                                              wait=False)),
    ("Deployment", "error"): (None, lambda c: c.deployment.error),
    ("Deployment", "folder"): (None, lambda c: c.deployment.folder),
    ("Deployment", "get"): (R, lambda c: Deployment.get(c.ws, c.owner_deployment.name)),
    ("Deployment", "get_keys"): (S, lambda c: c.deployment.get_keys()),
    ("Deployment", "get_logs"): (R, lambda c: c.deployment.get_logs()),
    ("Deployment", "get_telemetry"): (R, lambda c: c.deployment.get_telemetry()),
    ("Deployment", "image_id"): (None, lambda c: c.deployment.image_id),
    ("Deployment", "list"): (R, lambda c: Deployment.list(c.ws, image="base-img")),
    ("Deployment", "name"): (None, lambda c: c.deployment.name),
    ("Deployment", "refresh"): (R, lambda c: c.deployment.refresh()),
    ("Deployment", "regenerate_key"): (W, lambda c: c.deployment.regenerate_key("secondary")),
    ("Deployment", "replicas"): (None, lambda c: c.deployment.replicas),
    ("Deployment", "restore"): (W, lambda c: Deployment.restore(c.ws, wait=False)),
    # Scoring a key-protected service needs its key, read from the secrets; nothing listens on its
    # port, so a permitted call ends in DeploymentError.
    ("Deployment", "run"): (S, lambda c: c.deployment.run({"data": [[1.0]]}, timeout=2)),
    ("Deployment", "scoring_uri"): (None, lambda c: c.deployment.scoring_uri),
    ("Deployment", "serving_image_id"): (None, lambda c: c.deployment.serving_image_id),
    ("Deployment", "state"): (None, lambda c: c.deployment.state),
    ("Deployment", "supervisor_alive"): (None, lambda c: c.deployment.supervisor_alive()),  # a local process
    ("Deployment", "swagger_uri"): (None, lambda c: c.deployment.swagger_uri),
    ("Deployment", "tags"): (None, lambda c: c.deployment.tags),
    ("Deployment", "target"): (None, lambda c: c.deployment.target),
    ("Deployment", "update"): (W, lambda c: c.deployment.update(config={"replicas": 2}, wait=False)),
    # Nothing carries its activity out: a permitted wait ends at its timeout (WaitTimeoutError).
    ("Deployment", "wait_for_deployment"): (R, lambda c: c.deployment.wait_for_deployment(
        timeout=0.01, poll_interval=0.01)),
    ("Deployment", "waiter"): (None, lambda c: c.deployment.waiter()),  # builds a waiter; its polls are reads
    ("Deployment", "worker_check"): (None, lambda c: c.deployment.worker_check()),
}


# ------------------------------------------------------------------------------------------- tests
def public_members(cls: type) -> set[str]:
    """The public methods and properties of ``cls``: inherited ones, classmethods and
    staticmethods included, dunder methods and ``_private`` ones not."""
    kinds = (property, cached_property, classmethod, staticmethod)
    return {
        name for name, value in inspect.getmembers_static(cls)
        if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, kinds))
    }


@pytest.mark.parametrize("class_name", sorted(CLASSES))
def test_every_member_is_classified(class_name: str) -> None:
    members = public_members(CLASSES[class_name])
    classified = {member for cls, member in TABLE if cls == class_name}
    missing, stale = sorted(members - classified), sorted(classified - members)
    assert not missing, f"{class_name}: classify these public members in TABLE (the action each needs): {missing}"
    assert not stale, f"{class_name}: these TABLE entries are no longer public members: {stale}"


def test_the_table_names_only_known_classes_and_actions() -> None:
    assert {cls for cls, _ in TABLE} == set(CLASSES)
    assert {expected for expected, _ in TABLE.values()} == {None, *Action}  # every action is exercised
    assert set(PRINCIPALS.values()) == {*Role, None}


CASES = [
    pytest.param(class_name, member, principal, id=f"{class_name}.{member}-{principal}")
    for class_name, member in sorted(TABLE)
    for principal in PRINCIPALS
]


@pytest.mark.parametrize(("class_name", "member", "principal"), CASES)
def test_authorization_matrix(world: World, class_name: str, member: str, principal: str) -> None:
    expected, call = TABLE[class_name, member]
    role = PRINCIPALS[principal]
    allowed = expected is None or allows(role, expected)
    what = f"{class_name}.{member} as {principal} ({role.value if role else 'no role'}, needs {expected})"
    case = Case(world, principal, watch=not allowed)
    if allowed:
        try:
            call(case)
        except AuthorizationError as exc:
            pytest.fail(f"{what} was refused: {exc}")
        except AmlError:
            # Passed its authorization check; some calls cannot succeed here (NotFoundError,
            # ConflictError, ValidationError, DeploymentError, WaitTimeoutError: see TABLE).
            pass
        return
    with pytest.raises(AuthorizationError) as refused:
        call(case)
    assert principal in str(refused.value) or WORKSPACE in str(refused.value), refused.value
    # A refusal comes before any side effect on the Owner's objects.
    assert case.now() == case.before, f"{what} was refused, but changed the Owner's objects"
