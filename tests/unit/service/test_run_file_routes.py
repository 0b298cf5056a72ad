"""A run's files and its snapshot's entries through the service (run_file_routes), on a run made
with the SDK over the service: its files uploaded, its snapshot taken from a source folder."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from airflow_aml.entities import Role
from airflow_aml.workspace import Workspace
from tests.unit.service.served import Served, serve

API = "/api/v1"


@dataclass
class Demo:
    served: Served
    run_id: str
    bare_run_id: str  # no file, no snapshot
    source: Path

    def get(self, principal: str, path: str, **params: str | int) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.served.token(principal)}"}
        return httpx.get(self.served.url + API + path, params=params, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    home = tmp_path_factory.mktemp("aml-home")
    source = tmp_path_factory.mktemp("src")
    (source / "train.py").write_text("print('training')\n")
    (source / "pkg").mkdir()
    (source / "pkg" / "util.py").write_text("X = 1\n" * 1000)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AML_HOME", str(home))
        env.setenv("AML_PROGRESS", "0")
        env.delenv("AML_STORE_URI", raising=False)
        with serve(f"sqlite:///{home / 'aml.db'}") as served:
            ws = Workspace.create("demo", store_uri=served.uri_for("alice"))
            ws.assign_role("bob", Role.READER)
            run = ws.experiment("exp").start_logging()
            run.upload_bytes("outputs/model.pkl", b"model bytes")
            run.upload_bytes("logs/driver.txt", b"log line\n")
            run.take_snapshot(source)
            bare = ws.experiment("exp").start_logging()
            yield Demo(served=served, run_id=run.id, bare_run_id=bare.id, source=source)


def test_the_files_of_a_run_are_listed_with_their_datastore_not_the_snapshot(demo: Demo) -> None:
    answer = demo.get("bob", f"/runs/{demo.run_id}/files")  # a Reader
    assert answer.status_code == 200, answer.text
    page = answer.json()
    assert page["datastore"] == "workspaceblobstore"
    assert [(item["name"], item["size"]) for item in page["items"]] == [
        ("logs/driver.txt", 9), ("outputs/model.pkl", 11)]
    assert page["items"][1]["path"] == f"runs/{demo.run_id}/outputs/model.pkl"
    # Each downloads through the datastore object route.
    body = demo.get("bob", f"/workspaces/demo/datastores/{page['datastore']}/objects/{page['items'][1]['path']}")
    assert body.content == b"model bytes"


def test_the_file_listing_pages(demo: Demo) -> None:
    first = demo.get("alice", f"/runs/{demo.run_id}/files", limit=1).json()
    assert [item["name"] for item in first["items"]] == ["logs/driver.txt"]
    second = demo.get("alice", f"/runs/{demo.run_id}/files", limit=1, cursor=first["next_cursor"]).json()
    assert [item["name"] for item in second["items"]] == ["outputs/model.pkl"]
    assert second["next_cursor"] is None


def test_the_snapshot_entries_come_from_the_zip(demo: Demo) -> None:
    answer = demo.get("bob", f"/runs/{demo.run_id}/snapshot/entries")
    assert answer.status_code == 200, answer.text
    listing = answer.json()
    assert [(item["name"], item["size"]) for item in listing["items"]] == [
        ("pkg/util.py", 6000), ("train.py", 18)]
    assert listing["items"][0]["compressed_size"] < 6000  # deflated
    # The zip itself is the datastore object the listing names, with the size and hash it gives.
    whole = demo.get("bob", f"/workspaces/demo/datastores/{listing['datastore']}/objects/{listing['path']}")
    assert len(whole.content) == listing["size"]
    assert hashlib.sha256(whole.content).hexdigest() == listing["sha256"]
    assert zipfile.ZipFile(io.BytesIO(whole.content)).namelist() == ["pkg/util.py", "train.py"]


def test_one_snapshot_entry_downloads_decompressed(demo: Demo) -> None:
    answer = demo.get("bob", f"/runs/{demo.run_id}/snapshot/entries/pkg/util.py")
    assert answer.status_code == 200, answer.text
    assert answer.content == (demo.source / "pkg" / "util.py").read_bytes()
    missing = demo.get("bob", f"/runs/{demo.run_id}/snapshot/entries/pkg/absent.py")
    assert missing.status_code == 404
    assert "absent.py" in missing.json()["error"]["message"]


def test_a_path_leaving_the_zip_is_refused(demo: Demo) -> None:
    answer = demo.get("bob", f"/runs/{demo.run_id}/snapshot/entries/..%2F..%2Fetc%2Fpasswd")
    assert answer.status_code in (400, 404), answer.text


def test_a_run_without_snapshot_answers_404_and_lists_no_file(demo: Demo) -> None:
    assert demo.get("alice", f"/runs/{demo.bare_run_id}/snapshot/entries").status_code == 404
    assert demo.get("alice", f"/runs/{demo.bare_run_id}/snapshot/entries/train.py").status_code == 404
    files = demo.get("alice", f"/runs/{demo.bare_run_id}/files")
    assert files.status_code == 200 and files.json()["items"] == []


def test_a_principal_without_a_role_is_refused(demo: Demo) -> None:
    for path in ("files", "snapshot/entries", "snapshot/entries/train.py"):
        answer = demo.get("carol", f"/runs/{demo.run_id}/{path}")
        assert answer.status_code == 403, (path, answer.text)
