"""Tags and display names within limits, on every registry, refused before the transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from airflow_aml.exceptions import ValidationError
from airflow_aml.names import MAX_TAG_VALUE_LENGTH
from airflow_aml.store.sql import SqlStore
from tests.unit.store.helpers import WS, dump_tables, new_workspace, refusal

BAD_TAGS = [
    ({"k": "v" * (MAX_TAG_VALUE_LENGTH + 1)}, "8,001 characters long"),
    ({"k" * 251: "v"}, "invalid tag key"),
    ({"": "v"}, "invalid tag key"),
    ({"a\x1bb": "v"}, "invalid tag key"),
    ({"k": "\x1b[2J"}, "control characters"),
    ({"k": 3}, "must be a string"),
]


@pytest.fixture
def filled(store: SqlStore) -> SqlStore:
    new_workspace(store)
    store.create_run(workspace=WS, experiment="e", submitted_by="alice", run_id="r1")
    store.create_model_version(WS, "m", path="models/m", datastore="files", created_by="alice")
    store.create_image_version(WS, "img", builder="local", created_by="alice", model_ids=["m:1"], spec={})
    store.create_deployment(WS, "svc", target="local", image_id="img:1", created_by="alice", config={})
    return store


WRITERS: dict[str, Callable[[SqlStore, Any], Any]] = {
    "create_run": lambda s, tags: s.create_run(workspace=WS, experiment="e", submitted_by="alice", tags=tags),
    "set_run_tags": lambda s, tags: s.set_run_tags("r1", tags),
    "create_model_version": lambda s, tags: s.create_model_version(
        WS, "m", path="models/m2", datastore="files", created_by="alice", tags=tags),
    "set_model_tags": lambda s, tags: s.set_model_tags(WS, "m", 1, tags),
    "create_image_version": lambda s, tags: s.create_image_version(
        WS, "img", builder="local", created_by="alice", model_ids=["m:1"], spec={}, tags=tags),
    "set_image_tags": lambda s, tags: s.set_image_tags(WS, "img", 1, tags),
    "create_deployment": lambda s, tags: s.create_deployment(
        WS, "svc2", target="local", image_id="img:1", created_by="alice", config={}, tags=tags),
    "update_deployment": lambda s, tags: s.update_deployment(WS, "svc", tags=tags),
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_every_tag_writer_refuses_bad_tags_and_writes_nothing(filled: SqlStore, writer: str) -> None:
    before = dump_tables(filled)
    for tags, message in BAD_TAGS:
        with pytest.raises(ValidationError, match=refusal(filled, message)):
            WRITERS[writer](filled, tags)
    assert dump_tables(filled) == before
    WRITERS[writer](filled, {"k": "line one\nline two\ttabbed", "long": "v" * MAX_TAG_VALUE_LENGTH})  # allowed


def test_display_name_limits(filled: SqlStore) -> None:
    for bad in ("x" * 257, "two\nlines", "\x1b[2J"):
        with pytest.raises(ValidationError, match="Invalid display name"):
            filled.create_run(workspace=WS, experiment="e", submitted_by="alice", display_name=bad)
    ok = filled.create_run(workspace=WS, experiment="e", submitted_by="alice", display_name="é" * 256)
    assert ok.display_name == "é" * 256
