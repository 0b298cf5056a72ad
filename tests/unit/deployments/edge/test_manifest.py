"""The IoT Edge manifest's shape, and our schema refusing what the documented format forbids."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from airflow_aml.deployments.edge import EdgeModuleSpec, build_manifest, container_config, module_of, validate_manifest
from airflow_aml.deployments.edge.manifest import ENV_SCORING_CONFIG, MODULE_PORT, TELEMETRY_DIR
from airflow_aml.exceptions import ValidationError
from airflow_aml.runtime.scoring import ScoringConfig, hash_key

KEY = "k3y-" + "x" * 40


def manifest(**kw: Any) -> dict[str, Any]:
    return build_manifest(EdgeModuleSpec(name="iris-edge", image="aml/iris:3", key=KEY, host_port=8080,
                                         host_folder="/srv/edge", **kw))


def test_edge_agent_holds_the_module_as_the_documented_format_says() -> None:
    content = manifest()["modulesContent"]
    desired = content["$edgeAgent"]["properties.desired"]
    assert desired["schemaVersion"] == "1.1"
    assert desired["runtime"]["type"] == "docker"
    assert set(desired["systemModules"]) == {"edgeAgent", "edgeHub"}
    module = desired["modules"]["iris-edge"]
    assert (module["type"], module["status"], module["restartPolicy"]) == ("docker", "running", "always")
    assert module["settings"]["image"] == "aml/iris:3"
    options = json.loads(module["settings"]["createOptions"])  # a JSON string, as the twin needs
    port = f"{MODULE_PORT}/tcp"
    assert options["ExposedPorts"] == {port: {}}
    assert options["HostConfig"]["PortBindings"][port] == [{"HostIp": "", "HostPort": "8080"}]
    assert options["HostConfig"]["Binds"] == [f"/srv/edge:{TELEMETRY_DIR}"]
    # The scoring config travels in the env, with the key's hash and never the key.
    config = ScoringConfig.model_validate_json(module["env"][ENV_SCORING_CONFIG]["value"])
    assert config.primary_key_hash == hash_key(KEY) and config.auth_enabled
    assert KEY not in json.dumps(content)


def test_edge_hub_routes_the_modules_telemetry_upstream() -> None:
    hub = manifest()["modulesContent"]["$edgeHub"]["properties.desired"]
    (route,) = hub["routes"].values()
    assert route["route"] == "FROM /messages/modules/iris-edge/outputs/telemetry INTO $upstream"
    assert hub["storeAndForwardConfiguration"]["timeToLiveSecs"] > 0


def test_host_network_listens_on_the_port_itself_and_publishes_none() -> None:
    module = module_of(manifest(network_mode="host", host_ip="127.0.0.1"), "iris-edge")
    options = json.loads(module["settings"]["createOptions"])
    assert options["HostConfig"]["NetworkMode"] == "host"
    assert "PortBindings" not in options["HostConfig"] and "ExposedPorts" not in options
    assert "--host 127.0.0.1 --port 8080" in options["Cmd"][-1]


def test_container_config_is_what_the_edge_agent_sends_the_engine() -> None:
    module = module_of(manifest(env={"EXTRA": "1"}), "iris-edge")
    config = container_config(module)
    assert config["Image"] == "aml/iris:3"
    assert "EXTRA=1" in config["Env"] and any(e.startswith(f"{ENV_SCORING_CONFIG}=") for e in config["Env"])
    assert config["HostConfig"]["PortBindings"] == json.loads(module["settings"]["createOptions"])[
        "HostConfig"]["PortBindings"]
    with pytest.raises(ValidationError, match="no module 'other'"):
        module_of(manifest(), "other")


def test_a_manifest_without_edge_hub_is_refused() -> None:
    broken = manifest()
    del broken["modulesContent"]["$edgeHub"]
    with pytest.raises(ValidationError, match=r"modulesContent: '\$edgeHub' is a required property"):
        validate_manifest(broken)


def test_a_bad_restart_policy_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"modules/iris-edge/restartPolicy: 'sometimes' is not one of"):
        manifest(restart_policy="sometimes")


def test_create_options_given_as_an_object_is_refused() -> None:
    broken = manifest()
    module = broken["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]["iris-edge"]
    module["settings"]["createOptions"] = json.loads(module["settings"]["createOptions"])
    with pytest.raises(ValidationError, match=r"iris-edge/settings/createOptions: .* is not of type 'string'"):
        validate_manifest(broken)


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: _module(m)["settings"].__setitem__("createOptions", "[1, 2]"), "must be a JSON object"),
    (lambda m: _module(m)["settings"].__setitem__("createOptions", "{not json"), "createOptions is not JSON"),
    (lambda m: _module(m)["settings"].__setitem__("createOptions", json.dumps({"Env": ["A=" + "é" * 2100]})),
     "above the twin's 4 KB"),
    (lambda m: _module(m).__setitem__("status", "paused"), "'paused' is not one of"),
    (lambda m: _hub(m)["routes"].__setitem__("bad", "SELECT * INTO $upstream"), "routes/bad"),
    (lambda m: _hub(m)["routes"].__setitem__("r", {"route": "FROM /messages/* INTO $upstream", "priority": 12}),
     "routes/r"),
    (lambda m: _desired(m)["modules"].__setitem__("bad name!", copy.deepcopy(_module(m))), "bad name!"),
    (lambda m: _desired(m).__setitem__("schemaVersion", "2.0"), "schemaVersion: '2.0' is not one of"),
])
def test_the_schema_refuses(change: Any, message: str) -> None:
    broken = manifest()
    change(broken)
    with pytest.raises(ValidationError, match="Invalid IoT Edge deployment manifest") as refused:
        validate_manifest(broken)
    assert message in str(refused.value)


def test_a_valid_manifest_with_routes_in_both_forms_passes() -> None:
    valid = manifest(registry_credentials={"acr": {"username": "u", "password": "p", "address": "r.azurecr.io"}})
    _hub(valid)["routes"]["plain"] = "FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO $upstream"
    assert validate_manifest(valid) is valid


def _desired(m: dict[str, Any]) -> dict[str, Any]:
    return m["modulesContent"]["$edgeAgent"]["properties.desired"]


def _module(m: dict[str, Any]) -> dict[str, Any]:
    return _desired(m)["modules"]["iris-edge"]


def _hub(m: dict[str, Any]) -> dict[str, Any]:
    return m["modulesContent"]["$edgeHub"]["properties.desired"]
