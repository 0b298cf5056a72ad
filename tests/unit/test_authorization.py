"""Authorization on every call: every public member of the SDK's objects, under every role.

Each public method and property of ``Workspace``, ``Experiment``, ``Run``, ``Model``, ``Image`` and
``Deployment`` is classified below by the action it needs (or ``None``: it needs no role, e.g. a
field of a record already loaded, or a handle that reads nothing when built). The matrix calls
every member as the Owner, a Contributor, a Reader and a principal with no role at all, on a
handle that principal holds on objects the Owner made (what a principal who learned an id gets):

- a role that allows the action must not get ``AuthorizationError`` (other errors are fine: some
  calls cannot succeed here, e.g. a deployment whose image was built by a fake builder);
- a role that does not must get ``AuthorizationError``.

A member missing from the table fails ``test_every_member_is_classified``: a new public method
cannot be added without saying what it needs.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

from airflow_aml.deployments import Deployment
from airflow_aml.entities import ImageRecord, Metric, Role
from airflow_aml.exceptions import AuthorizationError
from airflow_aml.experiment import Experiment
from airflow_aml.images import builders
from airflow_aml.images.builders import AbstractImageBuilder, BuildResult, LogFn, ProgressFn
from airflow_aml.images.image import Image
from airflow_aml.models import Model
from airflow_aml.names import deployment_key_secret_name
from airflow_aml.roles import Action, allows
from airflow_aml.runs import Run
from airflow_aml.runtime.scoring.auth import hash_key
from airflow_aml.workspace import Workspace

R, W, S, M = Action.READ, Action.WRITE, Action.READ_SECRETS, Action.MANAGE
PRINCIPALS = {"alice": Role.OWNER, "carol": Role.CONTRIBUTOR, "bob": Role.READER, "mallory": None}
CLASSES: dict[str, type] = {
    "Workspace": Workspace, "Experiment": Experiment, "Run": Run, "Model": Model, "Image": Image,
    "Deployment": Deployment,
}


class FakeBuilder(AbstractImageBuilder):
    """Builds at once: the image registry's calls are what is under test, not a builder."""

    kind = "authz-fake"

    def build(self, bundle: Path, record: ImageRecord, progress: ProgressFn, log: LogFn) -> BuildResult:
        log("built")
        return BuildResult(location=str(bundle), digest=bundle.name)


class World:
    """One workspace shared by every case; what a case changes it makes for itself."""

    def __init__(self, root: Path, store_uri: str) -> None:
        self.root = root
        self.store_uri = store_uri
        self.owner = Workspace.create("ws", store_uri=store_uri, datastore_root=root / "datastore",
                                      principal="alice")
        self.owner.assign_role("carol", "Contributor")
        self.owner.assign_role("bob", "Reader")
        self.model_file = root / "model" / "model.txt"
        self.model_file.parent.mkdir()
        self.model_file.write_text("weights\n")
        self.source = root / "src"
        self.source.mkdir()
        (self.source / "score.py").write_text("def init():\n    pass\n\ndef run(raw):\n    return raw\n")
        (self.source / "train.py").write_text("print('hi')\n")
        self.owner.register_model("base", path=self.model_file)

    def handle(self, principal: str) -> Workspace:
        return Workspace.get("ws", store_uri=self.store_uri, principal=principal)

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

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
        builders.register_image_builder(FakeBuilder.kind, FakeBuilder)
        try:
            yield World(root, f"sqlite:///{root / 'aml.db'}")
        finally:
            builders._KINDS.pop(FakeBuilder.kind, None)


class Case:
    """What one call needs: the principal's workspace handle, and its handles on objects the
    Owner made for this case only (built on first use)."""

    def __init__(self, world: World, principal: str) -> None:
        self.world = world
        self.principal = principal
        self.ws = world.handle(principal)
        self.owner = world.owner

    @cached_property
    def owner_run(self) -> Run:
        run = self.owner.experiment("e").start_logging()
        run.log("accuracy", 0.9)
        run.upload_bytes("outputs/model.pkl", b"m")
        run.take_snapshot(self.world.source)
        run.flush()
        return run

    @cached_property
    def run(self) -> Run:
        return Run(self.ws, self.owner_run.record)

    @cached_property
    def child(self) -> Run:
        return Run(self.ws, self.owner_run.child_run("child").record)

    @cached_property
    def experiment(self) -> Experiment:
        return Experiment(self.ws, "e")

    @cached_property
    def model(self) -> Model:
        return Model(self.ws, self.owner.register_model(self.world.unique("m"), path=self.world.model_file).record)

    @cached_property
    def owner_image(self) -> Image:
        return self.owner.create_image(self.world.unique("img"), self.world.image_spec(), builder=FakeBuilder.kind)

    @cached_property
    def image(self) -> Image:
        return Image(self.ws, self.owner_image.record)

    @cached_property
    def deployment(self) -> Deployment:
        store, name = self.owner.store, self.world.unique("svc")
        record = store.create_deployment(
            "ws", name, target="local", image_id=self.owner_image.id, created_by="alice",
            config={}, scoring_uri="http://127.0.0.1:9/score", primary_key_hash=hash_key("k1"),
            secondary_key_hash=hash_key("k2"), runtime={"port": 9},
        )
        for which, key in (("primary", "k1"), ("secondary", "k2")):
            self.owner.vault.set(deployment_key_secret_name(name, which), key)
        activity = store.create_activity("ws", kind="deployment_create", target_id=name)
        record = store.update_deployment("ws", name, activity_id=activity.activity_id)
        return Deployment(self.ws, record)


Call = Callable[[Case], Any]


def _snapshot_into(case: Case) -> Any:
    return case.run.restore_snapshot(case.world.root / case.world.unique("checkout"))


def _delete_compute_target(case: Case) -> Any:
    name = case.world.unique("ct")
    case.owner.register_compute_target(name)
    return case.ws.delete_compute_target(name)


def _remove_role(case: Case) -> Any:
    who = case.world.unique("temp")
    case.owner.assign_role(who, "Reader")
    return case.ws.remove_role(who)


def _delete_secret(case: Case) -> Any:
    name = case.world.unique("secret")
    case.owner.set_secret(name, "v")
    return case.ws.delete_secret(name)


def _get_secret(case: Case) -> Any:
    name = case.world.unique("secret")
    case.owner.set_secret(name, "v")
    return case.ws.get_secret(name)


WORKSPACE: dict[str, tuple[Action | None, Call]] = {
    "activity_waiter": (R, lambda c: c.ws.activity_waiter(c.owner_image.record.activity_id)),
    "allows": (None, lambda c: c.ws.allows(W)),
    "assign_role": (M, lambda c: c.ws.assign_role(c.world.unique("newbie"), "Reader")),
    "compute_targets": (R, lambda c: c.ws.compute_targets),
    "create": (None, lambda c: Workspace.create(c.world.unique("own"), store_uri=c.world.store_uri,
                                                 datastore_root=c.world.root / "own", principal=c.principal)),
    "create_image": (W, lambda c: c.ws.create_image(c.world.unique("img"), c.world.image_spec(),
                                                    builder=FakeBuilder.kind)),
    "datastores": (R, lambda c: c.ws.datastores),
    "delete_compute_target": (M, _delete_compute_target),
    "delete_secret": (M, _delete_secret),
    "deploy_webservice": (W, lambda c: c.ws.deploy_webservice(c.world.unique("svc"), c.owner_image.id, wait=False)),
    "experiment": (None, lambda c: c.ws.experiment("e")),
    "experiments": (R, lambda c: c.ws.experiments),
    "forget_datastore": (None, lambda c: c.ws.forget_datastore("workspaceblobstore")),
    "get": (None, lambda c: Workspace.get("ws", store_uri=c.world.store_uri, principal=c.principal)),
    "get_activity": (R, lambda c: c.ws.get_activity(c.owner_image.record.activity_id)),
    "get_datastore": (R, lambda c: c.ws.get_datastore("workspaceblobstore")),
    "get_default_datastore": (R, lambda c: c.ws.get_default_datastore()),
    "get_deployment": (R, lambda c: c.ws.get_deployment(c.deployment.name)),
    "get_experiment": (R, lambda c: c.ws.get_experiment("e")),
    "get_image": (R, lambda c: c.ws.get_image(c.owner_image.name)),
    "get_model": (R, lambda c: c.ws.get_model("base")),
    "get_run": (R, lambda c: c.ws.get_run(c.owner_run.id)),
    "get_secret": (S, _get_secret),
    "list": (None, lambda c: Workspace.list(store_uri=c.world.store_uri)),
    "list_activities": (R, lambda c: c.ws.list_activities()),
    "list_deployments": (R, lambda c: c.ws.list_deployments()),
    "list_images": (R, lambda c: c.ws.list_images()),
    "list_models": (R, lambda c: c.ws.list_models()),
    "list_role_assignments": (R, lambda c: c.ws.list_role_assignments()),
    "list_secrets": (R, lambda c: c.ws.list_secrets()),
    "metric_writer": (W, lambda c: c.ws.metric_writer(c.owner_run.id).add(Metric("m", 1.0, 0, 0.0))),
    "name": (None, lambda c: c.ws.name),
    "open": (None, lambda c: Workspace.open("ws", store_uri=c.world.store_uri, principal=c.principal)),
    "record": (None, lambda c: c.ws.record),
    "refresh": (R, lambda c: c.ws.refresh()),
    "refusal": (None, lambda c: c.ws.refusal(W)),
    "register_compute_target": (M, lambda c: c.ws.register_compute_target(c.world.unique("ct"))),
    "register_datastore": (M, lambda c: c.ws.register_datastore(
        c.world.unique("ds"), config={"root": str(c.world.root / "ds")})),
    "register_model": (W, lambda c: c.ws.register_model(c.world.unique("m"), path=c.world.model_file)),
    "remove_role": (M, _remove_role),
    "require": (R, lambda c: c.ws.require(R)),
    "role": (None, lambda c: c.ws.role),
    "set_default_datastore": (M, lambda c: c.ws.set_default_datastore("workspaceblobstore")),
    "set_secret": (M, lambda c: c.ws.set_secret(c.world.unique("secret"), "v")),
    "vault": (None, lambda c: c.ws.vault),
    "wait_for_activity": (R, lambda c: c.ws.wait_for_activity(c.owner_image.record.activity_id, timeout=5)),
}

EXPERIMENT: dict[str, tuple[Action | None, Call]] = {
    "best_run": (R, lambda c: c.experiment.best_run("accuracy")),
    "get_metrics_table": (R, lambda c: c.experiment.get_metrics_table()),
    "get_runs": (R, lambda c: c.experiment.get_runs()),
    "search_runs": (R, lambda c: c.experiment.search_runs(metrics=["accuracy >= 0.5"])),
    "start_logging": (W, lambda c: c.experiment.start_logging()),
    # An unknown compute target: a permitted submit stops there, after its authorization check.
    "submit": (W, lambda c: c.experiment.submit(c.world.source, {"script": "train.py", "target": "nowhere"})),
}

RUN: dict[str, tuple[Action | None, Call]] = {
    "add_properties": (W, lambda c: c.run.add_properties({c.world.unique("p"): "1"})),
    "cancel": (W, lambda c: c.run.cancel()),
    "child_run": (W, lambda c: c.run.child_run("kid")),
    "complete": (W, lambda c: c.run.complete()),
    "create_children": (W, lambda c: c.run.create_children(2)),
    "download_file": (R, lambda c: c.run.download_file("outputs/model.pkl", c.world.root / c.world.unique("f"))),
    "download_files": (R, lambda c: c.run.download_files("outputs", c.world.root / c.world.unique("d"))),
    "download_snapshot": (R, lambda c: c.run.download_snapshot(c.world.root / c.world.unique("s.zip"))),
    "experiment": (None, lambda c: c.run.experiment),
    "fail": (W, lambda c: c.run.fail("broken")),
    "flush": (None, lambda c: c.run.flush()),  # writes what was queued, and was checked, before
    "get": (R, lambda c: Run.get(c.ws, c.owner_run.id)),
    "get_children": (R, lambda c: c.run.get_children()),
    "get_context": (None, lambda c: Run.get_context()),  # outside a run: an offline run
    "get_details": (R, lambda c: c.run.get_details()),
    "get_file_names": (R, lambda c: c.run.get_file_names()),
    "get_log_text": (R, lambda c: c.run.get_log_text()),
    "get_metrics": (R, lambda c: c.run.get_metrics()),
    "get_status": (R, lambda c: c.run.get_status(include_children=True)),
    "id": (None, lambda c: c.run.id),
    "log": (W, lambda c: c.run.log("loss", 0.1)),
    "log_image": (W, lambda c: c.run.log_image("curve", path=_png(c))),
    "log_list": (W, lambda c: c.run.log_list("folds", [0.1, 0.2])),
    "log_param": (W, lambda c: c.run.log_param("C", 1)),
    "log_params": (W, lambda c: c.run.log_params({"C": 1})),
    "log_row": (W, lambda c: c.run.log_row("roc", fpr=0.1, tpr=0.8)),
    "log_table": (W, lambda c: c.run.log_table("t", {"x": [1, 2]})),
    "parent": (R, lambda c: c.child.parent),
    "read_log": (R, lambda c: c.run.read_log()),
    "record": (R, lambda c: c.run.record),
    "restore_snapshot": (R, _snapshot_into),
    "set_tags": (W, lambda c: c.run.set_tags({"k": "v"})),
    "start": (W, lambda c: c.run.start()),
    "status": (R, lambda c: c.run.status),
    "tag": (W, lambda c: c.run.tag("k", "v")),
    "take_snapshot": (W, lambda c: c.run.take_snapshot(c.world.source)),
    "upload_bytes": (W, lambda c: c.run.upload_bytes("outputs/x.bin", b"x")),
    "upload_file": (W, lambda c: c.run.upload_file("outputs/m.txt", c.world.model_file)),
    "upload_folder": (W, lambda c: c.run.upload_folder("outputs/src", c.world.source)),
    # A permitted wait on a run that goes on ends at its (tiny) timeout.
    "wait_for_completion": (R, lambda c: c.run.wait_for_completion(timeout=0.01, poll_interval=0.01)),
    "waiter": (None, lambda c: c.run.waiter()),  # builds a waiter; its polls are READ calls
}

MODEL: dict[str, tuple[Action | None, Call]] = {
    "add_tags": (W, lambda c: c.model.add_tags({"stage": "dev"})),
    "delete": (W, lambda c: c.model.delete()),
    "download": (R, lambda c: c.model.download(c.world.root / c.world.unique("model"))),
    "files": (R, lambda c: c.model.files()),
    "get": (R, lambda c: Model.get(c.ws, "base")),
    "id": (None, lambda c: c.model.id),
    "list": (R, lambda c: Model.list(c.ws, tags={"stage": "*"})),
    "name": (None, lambda c: c.model.name),
    "register": (W, lambda c: Model.register(c.ws, c.world.unique("m"), path=c.world.model_file)),
    "tags": (None, lambda c: c.model.tags),
    "version": (None, lambda c: c.model.version),
}

_IMAGE_FIELDS = ("digest", "error", "id", "location", "model_ids", "name", "properties", "status", "tags", "version")
IMAGE: dict[str, tuple[Action | None, Call]] = {
    "activity": (R, lambda c: c.image.activity),
    "add_tags": (W, lambda c: c.image.add_tags({"stage": "dev"})),
    "bundle_path": (None, lambda c: c.image.bundle_path()),  # a local folder named by the record
    "create": (W, lambda c: Image.create(c.ws, c.world.unique("img"), c.world.image_spec(), builder=FakeBuilder.kind)),
    "delete": (W, lambda c: c.image.delete()),
    "get": (R, lambda c: Image.get(c.ws, c.owner_image.name)),
    "get_build_log": (R, lambda c: c.image.get_build_log()),
    "list": (R, lambda c: Image.list(c.ws, model="base")),
    "refresh": (R, lambda c: c.image.refresh()),
    "wait_for_completion": (R, lambda c: c.image.wait_for_completion(timeout=5)),
    "waiter": (None, lambda c: c.image.waiter()),
    **{name: (None, lambda c, name=name: getattr(c.image, name)) for name in _IMAGE_FIELDS},
}

_DEPLOYMENT_FIELDS = ("config", "error", "folder", "image_id", "name", "replicas", "scoring_uri", "serving_image_id",
                      "state", "swagger_uri", "tags", "target")
DEPLOYMENT: dict[str, tuple[Action | None, Call]] = {
    "activity": (R, lambda c: c.deployment.activity),
    # The fake builder's images cannot be served locally: a permitted create/update/deploy stops at
    # that check (ValidationError), after its authorization check.
    "create": (W, lambda c: Deployment.create(c.ws, c.world.unique("svc"), c.owner_image.id, wait=False)),
    "delete": (W, lambda c: c.deployment.delete(timeout=30)),
    "delete_if_exists": (W, lambda c: Deployment.delete_if_exists(c.ws, c.deployment.name, timeout=30)),
    "deploy": (W, lambda c: Deployment.deploy(c.ws, c.deployment.name, c.owner_image.id, wait=False)),
    "get": (R, lambda c: Deployment.get(c.ws, c.deployment.name)),
    "get_keys": (S, lambda c: c.deployment.get_keys()),
    "get_logs": (R, lambda c: c.deployment.get_logs()),
    "get_telemetry": (R, lambda c: c.deployment.get_telemetry()),
    "list": (R, lambda c: Deployment.list(c.ws)),
    "refresh": (R, lambda c: c.deployment.refresh()),
    "regenerate_key": (W, lambda c: c.deployment.regenerate_key("secondary")),
    "restore": (W, lambda c: Deployment.restore(c.ws, wait=False)),
    # Scoring needs the key (read from the secrets); nothing listens on port 9: DeploymentError.
    "run": (S, lambda c: c.deployment.run({"data": [[1]]}, timeout=2)),
    "supervisor_alive": (None, lambda c: c.deployment.supervisor_alive()),  # a local process check
    "update": (W, lambda c: c.deployment.update(config={"replicas": 2}, wait=False)),
    "wait_for_deployment": (R, lambda c: c.deployment.wait_for_deployment(timeout=0.01)),
    "waiter": (None, lambda c: c.deployment.waiter()),
    "worker_check": (None, lambda c: c.deployment.worker_check()),
    **{name: (None, lambda c, name=name: getattr(c.deployment, name)) for name in _DEPLOYMENT_FIELDS},
}

MATRIX: dict[str, dict[str, tuple[Action | None, Call]]] = {
    "Workspace": WORKSPACE, "Experiment": EXPERIMENT, "Run": RUN, "Model": MODEL, "Image": IMAGE,
    "Deployment": DEPLOYMENT,
}


def _png(case: Case) -> Path:
    path = case.world.root / f"{case.world.unique('curve')}.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 16)
    return path


def _public_members(cls: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls) if not name.startswith("_")}


@pytest.mark.parametrize("class_name", sorted(CLASSES))
def test_every_member_is_classified(class_name: str) -> None:
    members = _public_members(CLASSES[class_name])
    table = set(MATRIX[class_name])
    assert sorted(members - table) == [], f"{class_name}: classify these members in the authorization matrix"
    assert sorted(table - members) == [], f"{class_name}: these matrix entries no longer exist"


CASES = [
    pytest.param(class_name, member, principal, id=f"{class_name}.{member}-{principal}")
    for class_name, members in sorted(MATRIX.items())
    for member in sorted(members)
    for principal in PRINCIPALS
]


@pytest.mark.parametrize(("class_name", "member", "principal"), CASES)
def test_authorization_matrix(world: World, class_name: str, member: str, principal: str) -> None:
    action, call = MATRIX[class_name][member]
    case = Case(world, principal)  # its objects are made by the Owner, on first use
    allowed = action is None or allows(PRINCIPALS[principal], action)
    try:
        call(case)
    except AuthorizationError as exc:
        assert not allowed, f"{class_name}.{member} refused {principal} ({PRINCIPALS[principal]}): {exc}"
        assert principal in str(exc) or "workspace" in str(exc)
        return
    except Exception as exc:  # a permitted call that cannot succeed here: its check was passed
        assert allowed, f"{class_name}.{member} let {principal} through to {type(exc).__name__}: {exc}"
        return
    assert allowed, f"{class_name}.{member} did not refuse {principal} ({PRINCIPALS[principal]})"


def test_the_matrix_covers_every_principal_and_action() -> None:
    actions = {action for members in MATRIX.values() for action, _ in members.values()}
    assert actions == {None, *Action}
    assert set(PRINCIPALS.values()) == {*Role, None}
