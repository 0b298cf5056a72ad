from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest

from airflow_aml.datastores import LocalDatastore, ObjectInfo
from airflow_aml.datastores._files import TEMP_PREFIX
from airflow_aml.exceptions import (
    AlreadyExistsError,
    ArtifactNotFoundError,
    ConflictError,
    IntegrityError,
    PathEscapeError,
    ValidationError,
)


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders left anywhere below ``folder``."""
    found = []
    for current, dirs, files in os.walk(folder):
        found += [os.path.join(current, n) for n in dirs + files if n.startswith(TEMP_PREFIX)]
    return found


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ basics
def test_write_read_round_trip_and_layout(ds: LocalDatastore) -> None:
    before = time.time()
    info = ds.write_bytes("runs/1/outputs/model.pkl", b"weights")
    assert info == ObjectInfo(path="runs/1/outputs/model.pkl", size=7, sha256=sha(b"weights"), modified=info.modified)
    assert before <= info.modified <= time.time()
    assert ds.read_bytes("runs/1/outputs/model.pkl") == b"weights"
    assert (ds.root / "data/runs/1/outputs/model.pkl").read_bytes() == b"weights"
    sidecar = json.loads((ds.root / "meta/runs/1/outputs/model.pkl.json").read_text())
    assert sidecar == {"sha256": sha(b"weights"), "size": 7, "modified": info.modified}
    assert ds.info("runs//1/./outputs/model.pkl") == info  # paths are normalized


def test_open_write_streams_and_open_read_streams(ds: LocalDatastore) -> None:
    chunks = [os.urandom(100_000) for _ in range(5)]
    with ds.open_write("big.bin") as f:
        for chunk in chunks:
            f.write(chunk)
    with ds.open_read("big.bin") as f:
        assert f.read(10) == chunks[0][:10]
        assert f.read() == b"".join(chunks)[10:]
    assert ds.info("big.bin").sha256 == sha(b"".join(chunks))


def test_empty_object(ds: LocalDatastore) -> None:
    ds.write_bytes("empty", b"")
    assert ds.read_bytes("empty") == b""
    assert ds.info("empty").size == 0


def test_overwrite_replaces(ds: LocalDatastore) -> None:
    ds.write_bytes("a.txt", b"one")
    ds.write_bytes("a.txt", b"two, longer")
    assert ds.read_bytes("a.txt") == b"two, longer"
    assert ds.info("a.txt").sha256 == sha(b"two, longer")


def test_objects_get_ordinary_permissions(ds: LocalDatastore, tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        ds.write_bytes("a.txt", b"x")
        ds.download_file("a.txt", tmp_path / "dl.txt")
    finally:
        os.umask(umask)
    assert (ds.root / "data/a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "dl.txt").stat().st_mode & 0o777 == 0o644


def test_missing_object(ds: LocalDatastore, tmp_path: Path) -> None:
    for call in (ds.read_bytes, ds.info):
        with pytest.raises(ArtifactNotFoundError) as excinfo:
            call("nope/model.pkl")
        assert "'nope/model.pkl'" in str(excinfo.value) and "'store'" in str(excinfo.value)
    with pytest.raises(ArtifactNotFoundError), ds.open_read("nope"):
        pass
    with pytest.raises(ArtifactNotFoundError):
        ds.download_file("nope", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert not ds.exists("nope")
    assert not ds.root.exists()  # reading never creates the datastore's folders


def test_a_folder_is_not_an_object(ds: LocalDatastore) -> None:
    ds.write_bytes("a/b.txt", b"x")
    assert not ds.exists("a")
    with pytest.raises(ArtifactNotFoundError):
        ds.read_bytes("a")


def test_file_and_folder_conflicts(ds: LocalDatastore) -> None:
    ds.write_bytes("a", b"x")
    with pytest.raises(ConflictError, match="'a' is an object"):
        ds.write_bytes("a/b", b"y")
    ds.write_bytes("f/g", b"y")
    with pytest.raises(ConflictError, match="folder"):
        ds.write_bytes("f", b"z")
    assert leftovers(ds.root) == []


def test_reserved_temp_prefix(ds: LocalDatastore) -> None:
    with pytest.raises(ValidationError, match="reserved"):
        ds.write_bytes(f"a/{TEMP_PREFIX}x", b"x")


# ------------------------------------------------------------------ escapes
ESCAPES = ["../x", "a/../../x", "%2e%2e/x", "%252e%252e/x", "/etc/passwd", "C:\\x", "a\\..\\x", "a\x00b"]


@pytest.mark.parametrize("path", ESCAPES)
def test_escapes_are_refused_before_anything_is_touched(ds: LocalDatastore, tmp_path: Path, path: str) -> None:
    calls = [
        lambda: ds.write_bytes(path, b"x"),
        lambda: ds.read_bytes(path),
        lambda: ds.info(path),
        lambda: ds.exists(path),
        lambda: ds.delete(path),
        lambda: ds.list(path),
        lambda: ds.download_file(path, tmp_path / "dl"),
        lambda: ds.upload_file(__file__, path),
        lambda: ds.download(tmp_path / "dl-folder", path),
    ]
    for call in calls:
        with pytest.raises(PathEscapeError):
            call()
    assert not ds.root.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_symlinked_file_in_data_pointing_outside(ds: LocalDatastore, outside: Path) -> None:
    ds.write_bytes("ok.txt", b"fine")
    os.symlink(outside / "secret.txt", ds.root / "data/evil.txt")
    with pytest.raises(PathEscapeError, match="symbolic link") as excinfo:
        ds.read_bytes("evil.txt")
    assert "outside" in str(excinfo.value)
    with pytest.raises(PathEscapeError):
        ds.write_bytes("evil.txt", b"overwritten")
    with pytest.raises(PathEscapeError):
        ds.info("evil.txt")
    with pytest.raises(PathEscapeError):
        ds.delete("evil.txt")
    assert (outside / "secret.txt").read_bytes() == b"top secret"
    assert [o.path for o in ds.list()] == ["ok.txt"]  # links are never listed


def test_symlinked_folder_in_data_pointing_outside(ds: LocalDatastore, outside: Path) -> None:
    ds.write_bytes("ok.txt", b"fine")
    os.symlink(outside, ds.root / "data/linked")
    with pytest.raises(PathEscapeError):
        ds.read_bytes("linked/secret.txt")
    with pytest.raises(PathEscapeError):
        ds.write_bytes("linked/new.txt", b"planted")
    with pytest.raises(PathEscapeError):
        ds.list("linked")
    with pytest.raises(PathEscapeError):
        ds.delete("linked")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert [o.path for o in ds.list()] == ["ok.txt"]


def test_symlinked_data_root_and_meta(ds: LocalDatastore, outside: Path, tmp_path: Path) -> None:
    # data/ itself replaced by a link
    other = LocalDatastore("other", tmp_path / "other-root")
    (tmp_path / "other-root").mkdir()
    os.symlink(outside, tmp_path / "other-root/data")
    with pytest.raises(PathEscapeError):
        other.write_bytes("x.txt", b"planted")
    with pytest.raises(PathEscapeError):
        other.list()
    # a sidecar link
    ds.write_bytes("m.txt", b"x")
    (ds.root / "meta/n.txt.json").symlink_to(outside / "secret.txt")
    with pytest.raises(PathEscapeError):
        ds.write_bytes("n.txt", b"y")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_bytes() == b"top secret"


def test_link_inside_the_root_is_refused_too(ds: LocalDatastore) -> None:
    ds.write_bytes("real.txt", b"x")
    os.symlink(ds.root / "data/real.txt", ds.root / "data/alias.txt")
    with pytest.raises(PathEscapeError, match="inside the datastore root"):
        ds.read_bytes("alias.txt")


def test_a_root_reached_through_a_link_is_fine(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "alias")
    ds = LocalDatastore("s", tmp_path / "alias")
    ds.write_bytes("a/b.txt", b"x")
    assert ds.read_bytes("a/b.txt") == b"x"
    assert (tmp_path / "real/data/a/b.txt").exists()


# ------------------------------------------------------------------ atomicity
class Boom(Exception):
    pass


def test_failing_write_leaves_no_object_and_no_temp_file(ds: LocalDatastore) -> None:
    with pytest.raises(Boom), ds.open_write("a/b.bin") as f:
        f.write(b"half of it")
        raise Boom
    assert not ds.exists("a/b.bin")
    assert list(ds.list()) == []
    assert leftovers(ds.root) == []


def test_failing_overwrite_keeps_the_old_object(ds: LocalDatastore) -> None:
    ds.write_bytes("a.bin", b"old")
    with pytest.raises(Boom), ds.open_write("a.bin") as f:
        f.write(b"new new new")
        raise Boom
    assert ds.read_bytes("a.bin") == b"old"
    assert leftovers(ds.root) == []


def test_readers_see_the_old_object_until_the_write_commits(ds: LocalDatastore) -> None:
    ds.write_bytes("a.bin", b"old")
    with ds.open_write("a.bin") as f:
        f.write(b"new")
        assert ds.read_bytes("a.bin") == b"old"
        assert [o.path for o in ds.list()] == ["a.bin"]  # the temp file is not listed
    assert ds.read_bytes("a.bin") == b"new"


def test_a_reader_keeps_its_version_across_an_overwrite(ds: LocalDatastore) -> None:
    ds.write_bytes("a.bin", b"old" * 1000)
    with ds.open_read("a.bin") as f:
        first = f.read(3)
        ds.write_bytes("a.bin", b"new" * 2000)
        assert first + f.read() == b"old" * 1000  # verified against the old record
    assert ds.read_bytes("a.bin") == b"new" * 2000


def test_concurrent_writers_of_one_path(ds: LocalDatastore) -> None:
    contents = [bytes([i]) * (300_000 + i * 7919) for i in range(8)]
    errors: list[BaseException] = []
    reads: list[bytes] = []
    start = threading.Barrier(len(contents) + 2)

    def write(data: bytes) -> None:
        try:
            start.wait()
            for _ in range(3):
                with ds.open_write("shared/model.bin") as f:
                    for i in range(0, len(data), 65536):
                        f.write(data[i : i + 65536])
        except BaseException as exc:  # collected: a thread's exception would be lost
            errors.append(exc)

    def read() -> None:
        try:
            start.wait()
            for _ in range(30):
                with contextlib.suppress(ArtifactNotFoundError):  # before the first commit
                    reads.append(ds.read_bytes("shared/model.bin"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(c,)) for c in contents]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    final = ds.read_bytes("shared/model.bin")  # verified: bytes and checksum belong together
    assert final in contents
    assert ds.info("shared/model.bin").sha256 == sha(final)
    assert all(r in contents for r in reads)  # every read saw one whole version
    assert leftovers(ds.root) == []


# ------------------------------------------------------------------ integrity
def corrupt(ds: LocalDatastore, path: str) -> None:
    data_file = ds.root / "data" / path
    raw = bytearray(data_file.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, one byte flipped
    data_file.write_bytes(bytes(raw))


def test_corrupt_object_is_detected_on_read(ds: LocalDatastore) -> None:
    info = ds.write_bytes("m/model.pkl", b"0123456789" * 100)
    corrupt(ds, "m/model.pkl")
    with pytest.raises(IntegrityError) as excinfo:
        ds.read_bytes("m/model.pkl")
    message = str(excinfo.value)
    assert "'m/model.pkl'" in message and "'store'" in message
    assert info.sha256 in message
    assert sha((ds.root / "data/m/model.pkl").read_bytes()) in message


def test_corruption_is_detected_when_reading_exactly_the_size(ds: LocalDatastore) -> None:
    ds.write_bytes("a", b"abcdef")
    corrupt(ds, "a")
    with ds.open_read("a") as f:
        assert f.read(2) == b"abc"[:2]  # no verdict before the end
        with pytest.raises(IntegrityError):
            f.read(4)


@pytest.mark.parametrize("damage", ["append", "truncate"])
def test_size_changes_are_detected(ds: LocalDatastore, damage: str) -> None:
    ds.write_bytes("a", b"abcdef")
    data_file = ds.root / "data/a"
    data_file.write_bytes(b"abcdef+extra" if damage == "append" else b"abc")
    with pytest.raises(IntegrityError):
        ds.read_bytes("a")
    with ds.open_read("a") as f, pytest.raises(IntegrityError):
        f.read(6)
        f.read(6)


def test_corrupt_object_is_detected_on_download_and_leaves_nothing(ds: LocalDatastore, tmp_path: Path) -> None:
    ds.write_bytes("m/model.pkl", os.urandom(3 * 1024 * 1024))
    corrupt(ds, "m/model.pkl")
    target_folder = tmp_path / "dl"
    with pytest.raises(IntegrityError):
        ds.download_file("m/model.pkl", target_folder / "model.pkl")
    assert list(target_folder.iterdir()) == []
    # an existing file is kept as it was
    (target_folder / "model.pkl").write_bytes(b"previous")
    with pytest.raises(IntegrityError):
        ds.download_file("m/model.pkl", target_folder / "model.pkl")
    assert (target_folder / "model.pkl").read_bytes() == b"previous"
    assert leftovers(target_folder) == []
    with pytest.raises(IntegrityError):
        ds.download(tmp_path / "dl2", "m")
    assert list((tmp_path / "dl2").iterdir()) == []


def test_missing_or_broken_sidecar(ds: LocalDatastore) -> None:
    ds.write_bytes("a", b"x")
    ds.write_bytes("b", b"y")
    (ds.root / "meta/a.json").unlink()
    with pytest.raises(IntegrityError, match="no checksum record"):
        ds.read_bytes("a")
    (ds.root / "meta/b.json").write_text("{not json")
    with pytest.raises(IntegrityError, match="unreadable"):
        ds.info("b")


# ------------------------------------------------------------------ list / delete / exists
def test_list_is_sorted_recursive_and_folder_based(ds: LocalDatastore) -> None:
    for path in ["b/2.txt", "a/x/1.txt", "a.txt", "a/0.txt", "ab/3.txt"]:
        ds.write_bytes(path, path.encode())
    assert [o.path for o in ds.list()] == ["a.txt", "a/0.txt", "a/x/1.txt", "ab/3.txt", "b/2.txt"]
    assert [o.path for o in ds.list("a")] == ["a/0.txt", "a/x/1.txt"]
    assert [o.path for o in ds.list("a/")] == ["a/0.txt", "a/x/1.txt"]
    assert [o.path for o in ds.list("a/x/1.txt")] == ["a/x/1.txt"]  # a prefix naming an object
    assert list(ds.list("missing")) == []
    infos = list(ds.list("b"))
    assert infos[0].sha256 == sha(b"b/2.txt") and infos[0].size == 7


def test_list_skips_temp_files(ds: LocalDatastore) -> None:
    ds.write_bytes("a/1.txt", b"1")
    (ds.root / f"data/a/{TEMP_PREFIX}abc").write_bytes(b"in flight")
    (ds.root / f"data/{TEMP_PREFIX}dir").mkdir()
    (ds.root / f"data/{TEMP_PREFIX}dir/x").write_bytes(b"x")
    assert [o.path for o in ds.list()] == ["a/1.txt"]


def test_list_of_an_empty_datastore(ds: LocalDatastore) -> None:
    assert list(ds.list()) == []


def test_delete_object_and_folder(ds: LocalDatastore) -> None:
    for path in ["a/1.txt", "a/b/2.txt", "a/b/c/3.txt", "keep/4.txt"]:
        ds.write_bytes(path, b"x")
    ds.delete("a/1.txt")
    assert not ds.exists("a/1.txt")
    assert not (ds.root / "meta/a/1.txt.json").exists()
    ds.delete("a/b")
    assert [o.path for o in ds.list()] == ["keep/4.txt"]
    assert not (ds.root / "data/a").exists() and not (ds.root / "meta/a").exists()  # emptied folders go
    ds.delete("keep/4.txt")
    assert list(ds.list()) == []
    assert (ds.root / "data").exists()


def test_delete_missing_is_a_no_op(ds: LocalDatastore) -> None:
    ds.delete("never/was")
    ds.write_bytes("x", b"1")
    ds.delete("x")
    ds.delete("x")


def test_delete_of_the_root_is_refused(ds: LocalDatastore) -> None:
    ds.write_bytes("x", b"1")
    for path in ("", ".", "./"):
        with pytest.raises(ValidationError, match="empty"):
            ds.delete(path)
    assert ds.exists("x")


def test_write_after_delete_of_its_folder(ds: LocalDatastore) -> None:
    ds.write_bytes("a/b/c.txt", b"1")
    ds.delete("a")
    ds.write_bytes("a/b/c.txt", b"2")
    assert ds.read_bytes("a/b/c.txt") == b"2"


# ------------------------------------------------------------------ upload / download
def make_tree(folder: Path) -> dict[str, bytes]:
    files = {
        "train.py": b"print('hi')\n",
        "empty.txt": b"",
        "data/raw/blob.bin": os.urandom(200_000),
        "data/labels.csv": b"a,b\n1,2\n",
        "conf/deep/er/x.yaml": b"k: v\n",
    }
    for rel, content in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(content)
    return files


def test_upload_download_folder_round_trip(ds: LocalDatastore, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "src")
    infos = ds.upload(tmp_path / "src", "runs/1/outputs")
    assert [i.path for i in infos] == sorted(f"runs/1/outputs/{rel}" for rel in files)
    assert all(i.sha256 == sha(files[i.path.removeprefix("runs/1/outputs/")]) for i in infos)

    written = ds.download(tmp_path / "dst", "runs/1/outputs")
    assert sorted(p.relative_to(tmp_path / "dst").as_posix() for p in written) == sorted(files)
    for rel, content in files.items():
        assert (tmp_path / "dst" / rel).read_bytes() == content
    assert leftovers(tmp_path / "dst") == []

    ds.download(tmp_path / "all")  # no prefix: full datastore paths
    assert (tmp_path / "all/runs/1/outputs/data/labels.csv").read_bytes() == files["data/labels.csv"]


def test_download_of_a_prefix_naming_one_object(ds: LocalDatastore, tmp_path: Path) -> None:
    ds.write_bytes("runs/1/outputs/model.pkl", b"m")
    assert ds.download(tmp_path / "d", "runs/1/outputs/model.pkl") == [tmp_path / "d/model.pkl"]
    assert ds.download(tmp_path / "e", "nothing/here") == []


def test_upload_a_single_file(ds: LocalDatastore, tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(b"m")
    [info] = ds.upload(tmp_path / "model.pkl", "models/m1")
    assert info.path == "models/m1/model.pkl"
    assert ds.upload_file(tmp_path / "model.pkl", "x/y.pkl").path == "x/y.pkl"
    assert ds.download_file("x/y.pkl", tmp_path / "out/deep/y.pkl") == tmp_path / "out/deep/y.pkl"
    assert (tmp_path / "out/deep/y.pkl").read_bytes() == b"m"


def test_upload_of_something_missing(ds: LocalDatastore, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no such file or folder"):
        ds.upload(tmp_path / "nope")
    with pytest.raises(ValidationError, match="not a file"):
        ds.upload_file(tmp_path, "x")


def test_upload_skips_links_leading_outside(ds: LocalDatastore, tmp_path: Path, outside: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "real.txt").write_bytes(b"r")
    os.symlink(src / "real.txt", src / "alias.txt")
    os.symlink(outside / "secret.txt", src / "secret.txt")
    os.symlink(outside, src / "linked-folder")
    assert [i.path for i in ds.upload(src)] == ["alias.txt", "real.txt"]
    assert ds.read_bytes("alias.txt") == b"r"


def test_upload_refuses_unsafe_file_names_before_writing(ds: LocalDatastore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"a")
    (src / "b\\..\\c.txt").write_bytes(b"x")  # a legal POSIX file name, not a legal datastore path
    with pytest.raises(PathEscapeError):
        ds.upload(src)
    assert list(ds.list()) == []


def test_overwrite_false(ds: LocalDatastore, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_bytes(b"new")
    ds.write_bytes("f.txt", b"old")
    with pytest.raises(AlreadyExistsError, match=r"'f\.txt'"):
        ds.upload_file(tmp_path / "f.txt", "f.txt", overwrite=False)
    assert ds.read_bytes("f.txt") == b"old"

    src = make_tree(tmp_path / "src")
    ds.write_bytes("up/train.py", b"old")
    with pytest.raises(AlreadyExistsError, match=r"up/train\.py"):
        ds.upload(tmp_path / "src", "up", overwrite=False)
    assert [o.path for o in ds.list("up")] == ["up/train.py"]  # refused before anything was written

    ds.upload(tmp_path / "src", "up")
    (tmp_path / "dst/data").mkdir(parents=True)
    (tmp_path / "dst/data/labels.csv").write_bytes(b"mine")
    with pytest.raises(AlreadyExistsError, match=r"labels\.csv"):
        ds.download(tmp_path / "dst", "up", overwrite=False)
    assert sorted(p.name for p in (tmp_path / "dst").rglob("*")) == ["data", "labels.csv"]
    assert (tmp_path / "dst/data/labels.csv").read_bytes() == b"mine"

    with pytest.raises(AlreadyExistsError, match=r"labels\.csv"):
        ds.download_file("up/data/labels.csv", tmp_path / "dst/data/labels.csv", overwrite=False)
    assert (tmp_path / "dst/data/labels.csv").read_bytes() == b"mine"
    assert leftovers(tmp_path / "dst") == []

    ds.download(tmp_path / "dst", "up", overwrite=True)
    assert (tmp_path / "dst/data/labels.csv").read_bytes() == src["data/labels.csv"]


def test_download_file_to_a_folder_is_refused(ds: LocalDatastore, tmp_path: Path) -> None:
    ds.write_bytes("a", b"x")
    with pytest.raises(ValidationError, match="is a folder"):
        ds.download_file("a", tmp_path)


def test_upload_shows_progress_for_large_transfers(
    ds: LocalDatastore, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AML_PROGRESS", "1")
    (tmp_path / "src").mkdir()
    (tmp_path / "src/big.bin").write_bytes(b"\0" * (9 * 1024 * 1024))
    ds.upload(tmp_path / "src", "p")
    ds.download(tmp_path / "dst", "p", show_progress=False)
    err = capsys.readouterr().err
    assert "Uploading 1 files to store" in err
    assert "Downloading" not in err
