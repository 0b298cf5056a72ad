"""Every route of the workspace service, called by every kind of caller: who gets through, who
gets 401, who gets 403.

The expectation of a route is its action (read / write / read_secrets / manage, or "any signed-in
caller") and what a run token may do with it. For the metadata-store routes the action is the one
``roles.STORE_ACTIONS`` gives the store call; for the other routes (datastore objects, secret
values, tokens) it is written out in ``OTHER_ROUTES`` below, for the MLflow tracking routes in
``MLFLOW_ROUTES`` (their refusals come in MLflow's error body). ``test_every_route_has_an_expectation``
fails on a route of ``create_app`` that no row describes, so a new route cannot skip this matrix.

Each call is a valid request on real objects (a run, a model version, an image, a deployment, a
secret, a datastore object), so an allowed call really succeeds; a call that changes or deletes
something acts on an object made for that one call.
"""

from __future__ import annotations

import io
import itertools
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from airflow_aml.context import DEFAULT_DATASTORE
from airflow_aml.entities import Role, RunStatus
from airflow_aml.roles import STORE_ACTIONS, Action, Unavailable, allows
from airflow_aml.service.app import create_app
from airflow_aml.service.tokens import mint_personal_token, mint_run_token
from airflow_aml.store.http.endpoints import API_PREFIX, ENDPOINTS
from airflow_aml.store.sql.store import SqlStore
from airflow_aml.store.sql.tokens import SqlTokenStore

WS, OTHER_WS = "ws", "other"
ANY = "any"  # any signed-in caller (personal tokens; run tokens as their column says)

# ---------------------------------------------------------------------------- callers
ROLE_OF: dict[str, Role | None] = {
    "owner": Role.OWNER, "contributor": Role.CONTRIBUTOR, "reader": Role.READER,
    "owner_of_other_ws": None,  # Owner of OTHER_WS, no role in WS
}
PRINCIPAL = {"owner": "olivia", "contributor": "carl", "reader": "rita", "owner_of_other_ws": "sam"}
UNAUTHENTICATED = ("expired_token", "revoked_token", "anonymous")  # the Owner's expired/revoked PATs
# Run tokens: of the run the calls target (in WS, submitted by the Contributor), of a sibling run
# in WS, and of a run in OTHER_WS.
RUN_TOKENS = ("run_token_own", "run_token_sibling", "run_token_other_ws")
CALLERS = (*ROLE_OF, *UNAUTHENTICATED, *RUN_TOKENS)

# ---------------------------------------------------------------------------- what a run token may do
# "any": every run token (it names no workspace or its own); "reads": the reads a script needs
# to open its workspace (any run token of WS); "own": only the token of the targeted run (the
# calls act on that run, a child of it, or name it as a parent); "no": no run token.
RunScope = str


@dataclass
class Env:
    client: TestClient
    store: SqlStore
    tokens: SqlTokenStore
    headers: dict[str, dict[str, str]]
    run_id: str  # the run of run_token_own; calls act on fresh children of it
    root: Path
    counter: Iterator[int] = field(default_factory=itertools.count)

    def fresh(self, prefix: str) -> str:
        return f"{prefix}-{next(self.counter)}"

    def child_run(self) -> str:
        run = self.store.create_run(workspace=WS, experiment="exp", submitted_by="carl", parent_run_id=self.run_id,
                                    status=RunStatus.RUNNING)
        return run.run_id

    def as_owner(self) -> dict[str, str]:
        return self.headers["owner"]


@dataclass(frozen=True)
class Call:
    verb: str
    path: str  # under API_PREFIX
    json: Any = None
    content: bytes | None = None
    params: dict[str, Any] | None = None


Prepare = Callable[[Env, str], Call]  # (env, caller) -> the request, objects made for it


@dataclass(frozen=True)
class Row:
    action: Action | str  # an Action, or ANY
    run: RunScope
    prepare: Prepare


_W = f"/workspaces/{WS}"
_DS = f"{_W}/datastores/{DEFAULT_DATASTORE}"


_TAGS = {"tags": {"a": "b"}}


def _metric() -> dict[str, Any]:
    return {"name": "loss", "value": 0.5, "step": 0, "timestamp": 1.0}


def _model(env: Env, name: str) -> None:
    env.store.create_model_version(WS, name, path="models/m", datastore=DEFAULT_DATASTORE, created_by="olivia")


def _image(env: Env, name: str) -> None:
    env.store.create_image_version(WS, name, builder="docker", created_by="olivia", model_ids=["m:1"], spec={})


def _delete_object(env: Env, caller: str) -> Call:
    path = f"runs/{env.run_id}/{env.fresh('del')}.txt"
    answer = env.client.put(f"{API_PREFIX}{_DS}/objects/{path}", content=b"x", headers=env.as_owner())
    assert answer.status_code == 200, answer.text
    return Call("DELETE", f"{_DS}/objects/{path}")


def _delete_secret(env: Env, caller: str) -> Call:
    name = env.fresh("sec")
    answer = env.client.put(f"{API_PREFIX}{_W}/secrets/{name}", json={"value": "v"}, headers=env.as_owner())
    assert answer.status_code == 204, answer.text
    return Call("DELETE", f"{_W}/secrets/{name}")


def _revoke_token(env: Env, caller: str) -> Call:
    # The caller's own token (a run token's principal is the Contributor's).
    principal = PRINCIPAL.get(caller, "carl")
    _, record = mint_personal_token(env.tokens, principal, name=env.fresh("to-revoke"), expires_in=None)
    return Call("DELETE", f"/tokens/{record.token_id}")


def _activity(env: Env) -> str:
    return env.store.create_activity(WS, kind="test", target_id=env.child_run()).activity_id


# The store routes: (request, run-token scope) per store method; the action comes from
# roles.STORE_ACTIONS.
STORE_CALLS: dict[str, tuple[RunScope, Prepare]] = {
    "create_workspace": ("no", lambda env, c: Call("POST", "/workspaces", json={
        "name": env.fresh("new-ws"), "description": "", "default_datastore": DEFAULT_DATASTORE})),
    "list_workspaces": ("any", lambda env, c: Call("GET", "/workspaces")),
    "get_workspace": ("reads", lambda env, c: Call("GET", f"/workspaces/{WS}")),
    "set_default_datastore": ("no", lambda env, c: Call("PUT", f"{_W}/default-datastore",
                                                         json={"datastore": DEFAULT_DATASTORE})),
    "get_or_create_experiment": ("own", lambda env, c: Call("PUT", f"{_W}/experiments/exp")),
    "get_experiment": ("reads", lambda env, c: Call("GET", f"{_W}/experiments/exp")),
    "list_experiments": ("no", lambda env, c: Call("GET", f"{_W}/experiments")),
    "create_run": ("own", lambda env, c: Call("POST", f"{_W}/runs", json={
        "experiment": "exp", "parent_run_id": env.run_id})),
    "search_runs": ("own", lambda env, c: Call("POST", f"{_W}/runs:search",
                                                json={"query": {"parent_run_id": env.run_id}})),
    "count_child_runs": ("no", lambda env, c: Call("POST", f"{_W}/runs:child-counts",
                                                    json={"run_ids": [env.run_id]})),
    "find_run_by_idempotency_key": ("no", lambda env, c: Call("GET", f"{_W}/runs-by-idempotency-key",
                                                               params={"key": "k"})),
    "find_runs_without_heartbeat": ("no", lambda env, c: Call("GET", f"{_W}/runs-without-heartbeat",
                                                               params={"since": "2020-01-01T00:00:00Z"})),
    "get_run": ("own", lambda env, c: Call("GET", f"/runs/{env.child_run()}")),
    "beat_run_heartbeat": ("own", lambda env, c: Call("POST", f"/runs/{env.child_run()}/heartbeat")),
    "update_run_status": ("own", lambda env, c: Call("PUT", f"/runs/{env.child_run()}/status",
                                                      json={"status": "Finalizing"})),
    "request_cancel": ("own", lambda env, c: Call("POST", f"/runs/{env.child_run()}/cancel")),
    "set_snapshot": ("own", lambda env, c: Call("PUT", f"/runs/{env.child_run()}/snapshot-sha256",
                                                 json={"sha256": "0" * 64})),
    "set_run_tags": ("own", lambda env, c: Call("PATCH", f"/runs/{env.child_run()}/tags", json=_TAGS)),
    "delete_run_tags": ("own", lambda env, c: Call("POST", f"/runs/{_tagged_run(env)}/tags:delete",
                                                    json={"keys": ["a"]})),
    "add_run_properties": ("own", lambda env, c: Call("PATCH", f"/runs/{env.child_run()}/properties",
                                                       json={"properties": {"a": "b"}})),
    "log_params": ("own", lambda env, c: Call("PATCH", f"/runs/{env.child_run()}/params", json={"params": {"a": "b"}})),
    "log_batch": ("own", lambda env, c: Call("POST", f"/runs/{env.child_run()}/metrics",
                                              json={"metrics": [_metric()]})),
    "log_metric": ("own", lambda env, c: Call("POST", f"/runs/{env.child_run()}/metric", json={"metric": _metric()})),
    "get_metrics": ("own", lambda env, c: Call("GET", f"/runs/{env.child_run()}/metrics")),
    "get_latest_scalar_metrics": ("own", lambda env, c: Call("POST", "/runs:latest-scalar-metrics",
                                                              json={"run_ids": [env.child_run()]})),
    "get_latest_metrics": ("own", lambda env, c: Call("POST", "/runs:latest-metrics",
                                                       json={"run_ids": [env.child_run()]})),
    "append_log": ("own", lambda env, c: Call("POST", f"/runs/{env.child_run()}/logs",
                                               json={"stream": "stdout", "text": "hi\n"})),
    "read_log": ("own", lambda env, c: Call("GET", f"/runs/{env.child_run()}/logs")),
    "register_datastore": ("no", lambda env, c: Call("PUT", f"{_W}/datastores/{env.fresh('ds')}", json={
        "kind": "local", "config": {"root": env.fresh("ds-root")}})),  # inside the workspace's folder
    "get_datastore": ("reads", lambda env, c: Call("GET", _DS)),
    "list_datastores": ("reads", lambda env, c: Call("GET", f"{_W}/datastores")),
    "delete_datastore": ("no", lambda env, c: Call("DELETE", f"{_W}/datastores/{_registered_datastore(env)}")),
    "register_compute_target": ("no", lambda env, c: Call("PUT", f"{_W}/compute-targets/{env.fresh('ct')}",
                                                           json={"kind": "local", "config": {}})),
    "get_compute_target": ("reads", lambda env, c: Call("GET", f"{_W}/compute-targets/cpu")),
    "list_compute_targets": ("no", lambda env, c: Call("GET", f"{_W}/compute-targets")),
    "delete_compute_target": ("no", lambda env, c: Call("DELETE", f"{_W}/compute-targets/{_compute_target(env)}")),
    "assign_role": ("no", lambda env, c: Call("PUT", f"{_W}/roles/{env.fresh('user')}", json={"role": "Reader"})),
    "remove_role": ("no", lambda env, c: Call("DELETE", f"{_W}/roles/{_assigned(env)}")),
    "get_role": ("reads", lambda env, c: Call("GET", f"{_W}/roles/rita")),
    "list_role_assignments": ("no", lambda env, c: Call("GET", f"{_W}/roles")),
    "list_secret_names": ("no", lambda env, c: Call("GET", f"{_W}/secrets")),
    "create_activity": ("no", lambda env, c: Call("POST", f"{_W}/activities", json={
        "kind": "test", "target_id": env.run_id})),
    "list_activities": ("no", lambda env, c: Call("GET", f"{_W}/activities")),
    "get_activity": ("own", lambda env, c: Call("GET", f"/activities/{_activity(env)}")),
    "update_activity": ("own", lambda env, c: Call("PATCH", f"/activities/{_activity(env)}", json={"progress": 0.5})),
    "create_model_version": ("no", lambda env, c: Call("POST", f"{_W}/models/m/versions", json={
        "path": "models/m", "datastore": DEFAULT_DATASTORE})),
    "get_model_version": ("no", lambda env, c: Call("GET", f"{_W}/models/m", params={"version": 1})),
    "search_models": ("no", lambda env, c: Call("POST", f"{_W}/models:search", json={"name": "m"})),
    "set_model_tags": ("no", lambda env, c: Call("PATCH", f"{_W}/models/m/versions/1/tags", json=_TAGS)),
    "delete_model_version": ("no", lambda env, c: Call("DELETE", f"{_W}/models/{_fresh_model(env)}/versions/1")),
    "create_image_version": ("no", lambda env, c: Call("POST", f"{_W}/images/img/versions", json={
        "builder": "docker", "model_ids": ["m:1"], "spec": {}})),
    "update_image": ("no", lambda env, c: Call("PATCH", f"{_W}/images/img/versions/1", json={"build_log_tail": "ok"})),
    "get_image": ("no", lambda env, c: Call("GET", f"{_W}/images/img")),
    "search_images": ("no", lambda env, c: Call("POST", f"{_W}/images:search", json={"name": "img"})),
    "set_image_tags": ("no", lambda env, c: Call("PATCH", f"{_W}/images/img/versions/1/tags", json=_TAGS)),
    "delete_image_version": ("no", lambda env, c: Call("DELETE", f"{_W}/images/{_fresh_image(env)}/versions/1")),
    "create_deployment": ("no", lambda env, c: Call("POST", f"{_W}/deployments/{env.fresh('dep')}", json={
        "target": "local", "image_id": "img:1", "config": {}})),
    "update_deployment": ("no", lambda env, c: Call("PATCH", f"{_W}/deployments/dep", json=_TAGS)),
    "get_deployment": ("no", lambda env, c: Call("GET", f"{_W}/deployments/dep")),
    "search_deployments": ("no", lambda env, c: Call("POST", f"{_W}/deployments:search", json={"target": "local"})),
    "delete_deployment": ("no", lambda env, c: Call("DELETE", f"{_W}/deployments/{_fresh_deployment(env)}")),
}


def _registered_datastore(env: Env) -> str:
    name = env.fresh("ds")
    env.store.register_datastore(WS, name, kind="local", config={"root": str(env.root / name)})
    return name


def _tagged_run(env: Env) -> str:
    run_id = env.child_run()
    env.store.set_run_tags(run_id, {"a": "b"})
    return run_id


def _compute_target(env: Env) -> str:
    name = env.fresh("ct")
    env.store.register_compute_target(WS, name, kind="local", config={})
    return name


def _assigned(env: Env) -> str:
    principal = env.fresh("user")
    env.store.assign_role(WS, principal, Role.READER)
    return principal


def _fresh_model(env: Env) -> str:
    name = env.fresh("model")
    _model(env, name)
    return name


def _fresh_image(env: Env) -> str:
    name = env.fresh("image")
    _image(env, name)
    return name


def _fresh_deployment(env: Env) -> str:
    name = env.fresh("dep")
    env.store.create_deployment(WS, name, target="local", image_id="img:1", created_by="olivia", config={})
    return name


# The routes that are not store calls, written out: "VERB path" -> action, run-token scope, request.
OTHER_ROUTES: dict[str, Row] = {
    # datastore objects (file_routes): a Reader reads, a Contributor writes; a run token only
    # under runs/<its run or a descendant>/.
    f"GET {API_PREFIX}/workspaces/{{workspace}}/datastores/{{datastore}}/objects": Row(
        Action.READ, "own", lambda env, c: Call("GET", f"{_DS}/objects", params={"prefix": f"runs/{env.run_id}"})),
    f"GET {API_PREFIX}/workspaces/{{workspace}}/datastores/{{datastore}}/info/{{path:path}}": Row(
        Action.READ, "own", lambda env, c: Call("GET", f"{_DS}/info/runs/{env.run_id}/f.txt")),
    f"GET {API_PREFIX}/workspaces/{{workspace}}/datastores/{{datastore}}/objects/{{path:path}}": Row(
        Action.READ, "own", lambda env, c: Call("GET", f"{_DS}/objects/runs/{env.run_id}/f.txt")),
    f"PUT {API_PREFIX}/workspaces/{{workspace}}/datastores/{{datastore}}/objects/{{path:path}}": Row(
        Action.WRITE, "own", lambda env, c: Call("PUT", f"{_DS}/objects/runs/{env.run_id}/{env.fresh('up')}.txt",
                                                 content=b"hello")),
    f"DELETE {API_PREFIX}/workspaces/{{workspace}}/datastores/{{datastore}}/objects/{{path:path}}": Row(
        Action.WRITE, "own", _delete_object),
    # secret values (secret_routes): set and delete by an Owner, read with read_secrets; a run
    # token reads the secrets named when it was minted (run_token_own: "s1") and nothing else.
    f"PUT {API_PREFIX}/workspaces/{{workspace}}/secrets/{{name}}": Row(
        Action.MANAGE, "no", lambda env, c: Call("PUT", f"{_W}/secrets/{env.fresh('sec')}", json={"value": "v"})),
    f"GET {API_PREFIX}/workspaces/{{workspace}}/secrets/{{name}}": Row(
        Action.READ_SECRETS, "own", lambda env, c: Call("GET", f"{_W}/secrets/s1")),
    f"DELETE {API_PREFIX}/workspaces/{{workspace}}/secrets/{{name}}": Row(Action.MANAGE, "no", _delete_secret),
    # deployments for the UI (deployment_routes): keys with read_secrets, regenerate with write, logs
    # with read; no run token (a script has no business with a service's keys or logs).
    f"GET {API_PREFIX}/workspaces/{{workspace}}/deployments/{{name}}/keys": Row(
        Action.READ_SECRETS, "no", lambda env, c: Call("GET", f"{_W}/deployments/dep/keys")),
    f"POST {API_PREFIX}/workspaces/{{workspace}}/deployments/{{name}}/keys/{{which}}:regenerate": Row(
        Action.WRITE, "no", lambda env, c: Call("POST", f"{_W}/deployments/dep/keys/secondary:regenerate")),
    f"GET {API_PREFIX}/workspaces/{{workspace}}/deployments/{{name}}/logs": Row(
        Action.READ, "no", lambda env, c: Call("GET", f"{_W}/deployments/dep/logs", params={"tail": 5})),
    # what an Airflow DAG run or task created (airflow_object_routes): a Reader reads, no run token.
    f"GET {API_PREFIX}/workspaces/{{workspace}}/airflow-objects": Row(
        Action.READ, "no", lambda env, c: Call("GET", f"{_W}/airflow-objects", params={"dag_id": "d", "run_id": "r"})),
    # a run's metrics as downsampled series (series_routes): as GET /runs/{id}/metrics.
    f"GET {API_PREFIX}/runs/{{run_id}}/metric-series": Row(
        Action.READ, "own", lambda env, c: Call("GET", f"/runs/{env.child_run()}/metric-series",
                                                params={"max_points": 100})),
    # a run's files and its snapshot's entries (run_file_routes): as GET /runs/{id} (a Reader may
    # browse a run and its snapshot), a run token for its own run.
    f"GET {API_PREFIX}/runs/{{run_id}}/files": Row(
        Action.READ, "own", lambda env, c: Call("GET", f"/runs/{env.run_id}/files")),
    f"GET {API_PREFIX}/runs/{{run_id}}/snapshot/entries": Row(
        Action.READ, "own", lambda env, c: Call("GET", f"/runs/{env.run_id}/snapshot/entries")),
    f"GET {API_PREFIX}/runs/{{run_id}}/snapshot/entries/{{name:path}}": Row(
        Action.READ, "own", lambda env, c: Call("GET", f"/runs/{env.run_id}/snapshot/entries/train.py")),
    # following an activity (follow_routes): reads as GET /activities/{id}, run tokens on their
    # own run's activities; timeout 0 so that the call answers at once.
    f"GET {API_PREFIX}/activities/{{activity_id}}/wait": Row(
        Action.READ, "own", lambda env, c: Call("GET", f"/activities/{_activity(env)}/wait",
                                                params={"after": "2000-01-01T00:00:00Z", "timeout": 0})),
    f"GET {API_PREFIX}/activities/{{activity_id}}/events": Row(
        Action.READ, "own", lambda env, c: Call("GET", f"/activities/{_activity(env)}/events", params={"timeout": 0})),
    f"GET {API_PREFIX}/runs/{{run_id}}/logs/events": Row(
        Action.READ, "own", lambda env, c: Call("GET", f"/runs/{env.child_run()}/logs/events", params={"timeout": 0})),
    # tokens (token_routes): one's own personal tokens, whatever one's roles; run tokens for a
    # run one may write to.
    f"GET {API_PREFIX}/whoami": Row(ANY, "any", lambda env, c: Call("GET", "/whoami")),
    f"GET {API_PREFIX}/tokens": Row(ANY, "no", lambda env, c: Call("GET", "/tokens")),
    f"POST {API_PREFIX}/tokens": Row(ANY, "no", lambda env, c: Call("POST", "/tokens", json={"name": "t"})),
    f"DELETE {API_PREFIX}/tokens/{{token_id}}": Row(ANY, "no", _revoke_token),
    f"POST {API_PREFIX}/runs/{{run_id}}/tokens": Row(
        Action.WRITE, "no", lambda env, c: Call("POST", f"/runs/{env.child_run()}/tokens", json={"secrets": []})),
}


# The MLflow tracking routes (service/mlflow): each makes the store calls of its MLflow call, so
# its action is theirs; they answer refusals in MLflow's error body (see _error_code).
_ML = f"{_W}/mlflow/api/2.0/mlflow"
_MLFLOW_PATH = f"{API_PREFIX}/workspaces/{{workspace}}/mlflow/api/2.0/mlflow"


def _mlflow_metric() -> dict[str, Any]:
    return {"key": "loss", "value": 0.5, "timestamp": 1000, "step": 0}


MLFLOW_ROUTES: dict[str, Row] = {
    f"GET {_MLFLOW_PATH}/experiments/get-by-name": Row(
        Action.READ, "reads", lambda env, c: Call("GET", f"{_ML}/experiments/get-by-name",
                                                  params={"experiment_name": "exp"})),
    f"GET {_MLFLOW_PATH}/experiments/get": Row(
        Action.READ, "reads", lambda env, c: Call("GET", f"{_ML}/experiments/get", params={"experiment_id": "exp"})),
    f"POST {_MLFLOW_PATH}/experiments/create": Row(
        Action.WRITE, "no", lambda env, c: Call("POST", f"{_ML}/experiments/create", json={"name": env.fresh("exp")})),
    f"POST {_MLFLOW_PATH}/experiments/search": Row(
        Action.READ, "no", lambda env, c: Call("POST", f"{_ML}/experiments/search", json={"max_results": 10})),
    f"POST {_MLFLOW_PATH}/runs/create": Row(
        Action.WRITE, "own", lambda env, c: Call("POST", f"{_ML}/runs/create", json={
            "experiment_id": "exp", "tags": [{"key": "mlflow.parentRunId", "value": env.run_id}]})),
    f"POST {_MLFLOW_PATH}/runs/update": Row(
        Action.WRITE, "own", lambda env, c: Call("POST", f"{_ML}/runs/update", json={
            "run_id": env.child_run(), "status": "FINISHED"})),
    f"GET {_MLFLOW_PATH}/runs/get": Row(
        Action.READ, "own", lambda env, c: Call("GET", f"{_ML}/runs/get", params={"run_id": env.child_run()})),
    f"POST {_MLFLOW_PATH}/runs/log-metric": Row(
        Action.WRITE, "own", lambda env, c: Call("POST", f"{_ML}/runs/log-metric", json={
            "run_id": env.child_run(), **_mlflow_metric()})),
    f"POST {_MLFLOW_PATH}/runs/log-parameter": Row(
        Action.WRITE, "own", lambda env, c: Call("POST", f"{_ML}/runs/log-parameter", json={
            "run_id": env.child_run(), "key": "p", "value": "1"})),
    f"POST {_MLFLOW_PATH}/runs/set-tag": Row(
        Action.WRITE, "own", lambda env, c: Call("POST", f"{_ML}/runs/set-tag", json={
            "run_id": env.child_run(), "key": "t", "value": "1"})),
    f"POST {_MLFLOW_PATH}/runs/delete-tag": Row(
        Action.WRITE, "own", lambda env, c: Call("POST", f"{_ML}/runs/delete-tag", json={
            "run_id": _tagged_run(env), "key": "a"})),
    f"POST {_MLFLOW_PATH}/runs/log-batch": Row(
        Action.WRITE, "own", lambda env, c: Call("POST", f"{_ML}/runs/log-batch", json={
            "run_id": env.child_run(), "metrics": [_mlflow_metric()], "params": [{"key": "p", "value": "1"}]})),
    f"POST {_MLFLOW_PATH}/runs/log-inputs": Row(
        Action.WRITE, "own", lambda env, c: Call("POST", f"{_ML}/runs/log-inputs", json={
            "run_id": env.child_run(), "datasets": [{"dataset": {"name": "d", "digest": "1"}}]})),
    f"GET {_MLFLOW_PATH}/metrics/get-history": Row(
        Action.READ, "own", lambda env, c: Call("GET", f"{_ML}/metrics/get-history", params={
            "run_id": env.child_run(), "metric_key": "loss"})),
    f"POST {_MLFLOW_PATH}/runs/search": Row(
        Action.READ, "no", lambda env, c: Call("POST", f"{_ML}/runs/search", json={
            "experiment_ids": ["exp"], "filter": "metrics.loss < 1"})),
}


_ARTIFACTS = f"{_W}/mlflow/api/2.0/mlflow-artifacts/artifacts"
_ARTIFACTS_PATH = f"{API_PREFIX}/workspaces/{{workspace}}/mlflow/api/2.0/mlflow-artifacts/artifacts"


def _artifact(env: Env) -> str:
    """A fresh artifact of the targeted run (its outputs), written by the Owner."""
    path = f"runs/{env.run_id}/outputs/{env.fresh('artifact')}.txt"
    answer = env.client.put(f"{API_PREFIX}{_DS}/objects/{path}", content=b"a", headers=env.as_owner())
    assert answer.status_code == 200, answer.text
    return path


MLFLOW_ROUTES.update({
    f"POST {_MLFLOW_PATH}/logged-models/search": Row(
        Action.READ, "no", lambda env, c: Call("POST", f"{_ML}/logged-models/search",
                                               json={"experiment_ids": ["exp"]})),
    f"GET {_ARTIFACTS_PATH}": Row(
        Action.READ, "own", lambda env, c: Call("GET", _ARTIFACTS, params={"path": f"runs/{env.run_id}/outputs"})),
    f"GET {_ARTIFACTS_PATH}/{{path:path}}": Row(
        Action.READ, "own", lambda env, c: Call("GET", f"{_ARTIFACTS}/{_artifact(env)}")),
    f"PUT {_ARTIFACTS_PATH}/{{path:path}}": Row(
        Action.WRITE, "own", lambda env, c: Call("PUT", f"{_ARTIFACTS}/runs/{env.run_id}/outputs/{env.fresh('up')}.txt",
                                                 content=b"hello")),
    f"DELETE {_ARTIFACTS_PATH}/{{path:path}}": Row(
        Action.WRITE, "own", lambda env, c: Call("DELETE", f"{_ARTIFACTS}/{_artifact(env)}")),
})


def _logged_model(env: Env) -> tuple[str, str]:
    """(run, logged model id): a fresh model of a fresh child of the targeted run, by the Owner."""
    run_id = env.child_run()
    answer = env.client.post(f"{API_PREFIX}{_ML}/logged-models", headers=env.as_owner(), json={
        "experiment_id": "exp", "name": "model", "source_run_id": run_id})
    assert answer.status_code == 200, answer.text
    return run_id, answer.json()["model"]["info"]["model_id"]


def _model_id(env: Env) -> str:
    return _logged_model(env)[1]


def _outputs(env: Env, caller: str) -> Call:
    run_id, model_id = _logged_model(env)
    return Call("POST", f"{_ML}/runs/outputs", json={"run_id": run_id, "models": [{"model_id": model_id, "step": 0}]})


MLFLOW_ROUTES.update({
    f"POST {_MLFLOW_PATH}/logged-models": Row(
        Action.WRITE, "own", lambda env, c: Call("POST", f"{_ML}/logged-models", json={
            "experiment_id": "exp", "name": "model", "source_run_id": env.child_run()})),
    f"GET {_MLFLOW_PATH}/logged-models/{{model_id}}": Row(
        Action.READ, "own", lambda env, c: Call("GET", f"{_ML}/logged-models/{_model_id(env)}")),
    f"PATCH {_MLFLOW_PATH}/logged-models/{{model_id}}": Row(
        Action.WRITE, "own", lambda env, c: Call("PATCH", f"{_ML}/logged-models/{_model_id(env)}",
                                                 json={"status": "LOGGED_MODEL_READY"})),
    f"PATCH {_MLFLOW_PATH}/logged-models/{{model_id}}/tags": Row(
        Action.WRITE, "own", lambda env, c: Call("PATCH", f"{_ML}/logged-models/{_model_id(env)}/tags",
                                                 json={"tags": [{"key": "a", "value": "b"}]})),
    f"DELETE {_MLFLOW_PATH}/logged-models/{{model_id}}/tags/{{tag_key}}": Row(
        Action.WRITE, "own", lambda env, c: Call("DELETE", f"{_ML}/logged-models/{_model_id(env)}/tags/a")),
    f"POST {_MLFLOW_PATH}/runs/outputs": Row(Action.WRITE, "own", _outputs),
    f"POST {_MLFLOW_PATH}/registered-models/create": Row(
        Action.WRITE, "no", lambda env, c: Call("POST", f"{_ML}/registered-models/create",
                                                json={"name": env.fresh("registered")})),
    f"GET {_MLFLOW_PATH}/registered-models/get": Row(
        Action.READ, "no", lambda env, c: Call("GET", f"{_ML}/registered-models/get", params={"name": "m"})),
    f"POST {_MLFLOW_PATH}/registered-models/get-latest-versions": Row(
        Action.READ, "no", lambda env, c: Call("POST", f"{_ML}/registered-models/get-latest-versions",
                                               json={"name": "m"})),
    f"POST {_MLFLOW_PATH}/model-versions/create": Row(
        Action.WRITE, "no", lambda env, c: Call("POST", f"{_ML}/model-versions/create", json={
            "name": env.fresh("registered"), "source": f"mlflow-artifacts:/{_artifact(env)}"})),
    f"GET {_MLFLOW_PATH}/model-versions/get": Row(
        Action.READ, "no", lambda env, c: Call("GET", f"{_ML}/model-versions/get", params={"name": "m", "version": 1})),
    f"GET {_MLFLOW_PATH}/model-versions/get-download-uri": Row(
        Action.READ, "no", lambda env, c: Call("GET", f"{_ML}/model-versions/get-download-uri",
                                               params={"name": "m", "version": 1})),
})


def _error_code(route: str, answer: Any) -> str:
    body = answer.json()
    return str(body["error_code"] if route in MLFLOW_ROUTES else body["error"]["code"])


def _store_rows() -> dict[str, Row]:
    rows = {}
    for endpoint in ENDPOINTS:
        access = STORE_ACTIONS[endpoint.method]
        # create_workspace / list_workspaces are no workspace's call: any signed-in caller.
        action = ANY if access is Unavailable.SYSTEM or endpoint.scope == "system" else access
        run, prepare = STORE_CALLS[endpoint.method]
        rows[f"{endpoint.verb} {API_PREFIX}{endpoint.path}"] = Row(action, run, prepare)  # type: ignore[arg-type]
    return rows


ROWS: dict[str, Row] = {**_store_rows(), **OTHER_ROUTES, **MLFLOW_ROUTES}


def expected(row: Row, caller: str) -> int:
    """401, 403, or 200 for "allowed" (any 2xx, or a 4xx other than 401/403)."""
    if caller in UNAUTHENTICATED:
        return 401
    if caller in RUN_TOKENS:
        if row.run == "any":
            return 200
        scope_ok = (row.run == "reads" and caller != "run_token_other_ws") or (
            row.run == "own" and caller == "run_token_own")
        # A run token acts for its run's submitter: the Contributor of WS.
        return 200 if scope_ok and (row.action == ANY or allows(Role.CONTRIBUTOR, Action(row.action))) else 403
    if row.action == ANY:
        return 200
    return 200 if allows(ROLE_OF[caller], Action(row.action)) else 403


# ---------------------------------------------------------------------------- the service
@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("authz")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AML_HOME", str(root / "home"))
        patch.delenv("AML_STORE_URI", raising=False)
        patch.delenv("AML_SECRET_KEY", raising=False)
        app = create_app(f"sqlite:///{root / 'aml.db'}")
        store: SqlStore = app.state.aml.store
        tokens: SqlTokenStore = app.state.aml.tokens
        for name, owner in ((WS, "olivia"), (OTHER_WS, "sam")):
            store.create_workspace(name, description="", created_by=owner, default_datastore=DEFAULT_DATASTORE,
                                   datastore={"kind": "local", "config": {"root": str(root / name)}}, owner=owner)
        store.assign_role(WS, "carl", Role.CONTRIBUTOR)
        store.assign_role(WS, "rita", Role.READER)
        run = store.create_run(workspace=WS, experiment="exp", submitted_by="carl", status=RunStatus.RUNNING)
        sibling = store.create_run(workspace=WS, experiment="exp2", submitted_by="carl", status=RunStatus.RUNNING)
        elsewhere = store.create_run(workspace=OTHER_WS, experiment="exp", submitted_by="sam", status=RunStatus.RUNNING)
        store.register_compute_target(WS, "cpu", kind="local", config={})
        headers = {caller: _bearer(mint_personal_token(tokens, PRINCIPAL[caller], name=caller, expires_in=None)[0])
                   for caller in ROLE_OF}
        headers["expired_token"] = _bearer(mint_personal_token(tokens, "olivia", name="expired",
                                                               expires_in=timedelta(seconds=-1))[0])
        revoked, record = mint_personal_token(tokens, "olivia", name="revoked", expires_in=None)
        tokens.revoke_token(record.token_id, principal="olivia")
        headers["revoked_token"] = _bearer(revoked)
        headers["anonymous"] = {}
        for caller, target, principal, secrets in (
            ("run_token_own", run, "carl", ["s1"]), ("run_token_sibling", sibling, "carl", []),
            ("run_token_other_ws", elsewhere, "sam", []),
        ):
            token, _ = mint_run_token(tokens, principal=principal, workspace=target.workspace, run_id=target.run_id,
                                      secrets_allowed=secrets)
            headers[caller] = _bearer(token)
        with TestClient(app, raise_server_exceptions=False) as client:
            environment = Env(client=client, store=store, tokens=tokens, headers=headers, run_id=run.run_id, root=root)
            owner = headers["owner"]
            assert client.put(f"{API_PREFIX}{_W}/secrets/s1", json={"value": "v"}, headers=owner).status_code == 204
            upload = client.put(f"{API_PREFIX}{_DS}/objects/runs/{run.run_id}/f.txt", content=b"f", headers=owner)
            assert upload.status_code == 200, upload.text
            snapshot = client.put(f"{API_PREFIX}{_DS}/objects/runs/{run.run_id}/snapshot.zip", content=_zip(),
                                  headers=owner)
            assert snapshot.status_code == 200, snapshot.text
            _model(environment, "m")
            _image(environment, "img")
            store.create_deployment(WS, "dep", target="local", image_id="img:1", created_by="olivia", config={})
            for which in ("primary", "secondary"):  # its keys in the workspace's secrets, as a deploy leaves them
                answer = client.post(f"{API_PREFIX}{_W}/deployments/dep/keys/{which}:regenerate", headers=owner)
                assert answer.status_code == 200, answer.text
            yield environment


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("train.py", "print('hi')\n")
    return buffer.getvalue()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------------------- the tests
def _app_routes(app: Any) -> set[str]:
    return {f"{verb} {route.path}" for route in app.routes if isinstance(route, APIRoute)
            if route.path != "/openapi.json" for verb in route.methods}


def test_every_route_has_an_expectation(env: Env) -> None:
    routes = _app_routes(env.client.app)
    assert sorted(routes - ROWS.keys()) == [], "routes of create_app without a row in this matrix"
    assert sorted(ROWS.keys() - routes) == [], "rows of this matrix that are no route"


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", sorted(ROWS))
def test_route_and_caller(env: Env, route: str, caller: str) -> None:
    row = ROWS[route]
    call = row.prepare(env, caller)
    answer = env.client.request(call.verb, API_PREFIX + call.path, json=call.json, content=call.content,
                                params=call.params, headers=env.headers[caller])
    want = expected(row, caller)
    got = answer.status_code
    detail = f"{call.verb} {call.path} as {caller}: {got} {answer.text[:300]}"
    if want == 200:
        # Every call here names real objects: allowed means it succeeded.
        assert 200 <= got < 300, detail
    else:
        assert got == want, detail
        if route in MLFLOW_ROUTES:
            code = "UNAUTHENTICATED" if want == 401 else "PERMISSION_DENIED"
        else:
            code = "AuthenticationError" if want == 401 else "AuthorizationError"
        assert _error_code(route, answer) == code, detail


def test_expired_token_is_past_its_expiry(env: Env) -> None:
    # The 401s of expired_token must come from its expiry, not from an unknown token.
    answer = env.client.get(f"{API_PREFIX}/whoami", headers=env.headers["expired_token"])
    assert answer.status_code == 401 and "expired" in answer.json()["error"]["message"]
    revoked = env.client.get(f"{API_PREFIX}/whoami", headers=env.headers["revoked_token"])
    assert revoked.status_code == 401 and "revoked" in revoked.json()["error"]["message"]
