from __future__ import annotations

import importlib
import json
from pathlib import Path

import jsonschema

from airflow_aml.get_provider_info import get_provider_info


def test_provider_info_matches_airflows_schema() -> None:
    import airflow

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_every_named_module_and_class_imports() -> None:
    info = get_provider_info()
    for section in ("hooks", "operators", "sensors", "triggers"):
        for entry in info[section]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for dotted in [*info["extra-links"], *(c["hook-class-name"] for c in info["connection-types"])]:
        module, _, name = dotted.rpartition(".")
        assert hasattr(importlib.import_module(module), name), dotted


def test_airflow_discovers_the_provider_and_connection_type() -> None:
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    manager = ProvidersManager()
    assert "airflow-aml" in manager.providers
    assert "extra__aml_workspace__store_uri" in manager.connection_form_widgets
    hook = ProvidersManagerTaskRuntime().hooks["aml_workspace"]
    assert hook is not None and hook.hook_class_name == "airflow_aml.hooks.workspace.AmlWorkspaceHook"
