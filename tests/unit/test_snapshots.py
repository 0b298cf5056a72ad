from __future__ import annotations

import io
import os
import stat
import struct
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_aml.exceptions import SnapshotTooLargeError, UnsafeArchiveError, ValidationError
from airflow_aml.hashing import sha256_file
from airflow_aml.snapshots import SnapshotInfo, create_snapshot, safe_extract

MiB = 1024 * 1024


def write(root: Path, files: dict[str, bytes | str]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)


def names_in(zip_path: Path) -> list[str]:
    with zipfile.ZipFile(zip_path) as zf:
        return zf.namelist()


# ---------------------------------------------------------------------------- create
def test_snapshot_contents_and_info(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, {"train.py": "print(1)\n", "pkg/util.py": "x = 1\n" * 100, "outputs/keep.txt": "k", "empty": ""})
    info = create_snapshot(src, tmp_path / "snap.zip")
    expected = ["empty", "outputs/keep.txt", "pkg/util.py", "train.py"]  # outputs/ is not excluded
    assert info == SnapshotInfo(
        sha256=sha256_file(tmp_path / "snap.zip"),
        size_bytes=(tmp_path / "snap.zip").stat().st_size,
        uncompressed_bytes=9 + 600 + 1,
        file_count=4,
        files=expected,
    )
    assert names_in(tmp_path / "snap.zip") == expected
    with zipfile.ZipFile(tmp_path / "snap.zip") as zf:
        assert zf.read("pkg/util.py") == b"x = 1\n" * 100
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_always_excluded(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, {
        ".git/HEAD": "ref", "sub/.git": "gitdir: ../.git/modules/sub",  # a submodule's .git file
        "__pycache__/m.cpython-311.pyc": "b", "pkg/__pycache__/x.pyc": "b", "stray.pyc": "b",
        "m.py": "m", ".venv/bin/python": "p", "outputs/o.txt": "o",
    })
    assert create_snapshot(src, tmp_path / "s.zip").files == [".venv/bin/python", "m.py", "outputs/o.txt"]


def test_gitignore_is_honoured_including_nested_ones(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, {
        ".gitignore": "*.log\ndata/\n!keep.log\n/top-only.txt\n",
        "a.log": "x", "keep.log": "x", "data/big.csv": "x", "sub/data/nested.csv": "x",
        "top-only.txt": "x", "sub/top-only.txt": "x",
        "sub/.gitignore": "*.tmp\n!important.log\n", "sub/x.tmp": "x", "sub/important.log": "x",
        "sub/other.log": "x", "x.tmp": "x",
    })
    assert create_snapshot(src, tmp_path / "s.zip").files == [
        ".gitignore", "keep.log", "sub/.gitignore", "sub/important.log", "sub/top-only.txt", "x.tmp",
    ]


def test_amlignore_replaces_gitignore(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, {
        ".gitignore": "*.csv\n", ".amlignore": "*.bin\n.amlignore\n",
        "a.csv": "x", "b.bin": "x", "sub/.gitignore": "*.txt\n", "sub/c.txt": "x",
        "sub2/.amlignore": "*.md\n", "sub2/.gitignore": "*.py\n", "sub2/d.md": "x", "sub2/e.py": "x",
    })
    assert create_snapshot(src, tmp_path / "s.zip").files == [
        # each folder uses its own .amlignore, else its .gitignore; the root's patterns apply below
        ".gitignore", "a.csv", "sub/.gitignore", "sub2/.gitignore", "sub2/e.py",
    ]


def test_snapshot_is_deterministic(tmp_path: Path) -> None:
    files: dict[str, bytes | str] = {"b.py": "b", "a/z.py": "z" * 1000, "a/y.bin": os.urandom(5000), "c": ""}
    one, two = tmp_path / "one", tmp_path / "elsewhere/two"
    write(one, files)
    write(two, dict(reversed(files.items())))  # other creation order, other folder
    os.utime(two / "b.py", (1_000_000_000, 1_000_000_000))
    os.chmod(two / "a/z.py", 0o600)  # permissions other than the executable bit do not count
    first = create_snapshot(one, tmp_path / "1.zip")
    second = create_snapshot(two, tmp_path / "2.zip")
    again = create_snapshot(one, tmp_path / "3.zip")
    assert first.sha256 == second.sha256 == again.sha256
    (one / "b.py").write_text("changed")
    assert create_snapshot(one, tmp_path / "4.zip").sha256 != first.sha256


def test_executable_bit_is_kept(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, {"run.sh": "#!/bin/sh\n", "lib.py": "x"})
    os.chmod(src / "run.sh", 0o755)
    create_snapshot(src, tmp_path / "s.zip")
    with zipfile.ZipFile(tmp_path / "s.zip") as zf:
        modes = {i.filename: i.external_attr >> 16 for i in zf.infolist()}
    assert modes == {"lib.py": stat.S_IFREG | 0o644, "run.sh": stat.S_IFREG | 0o755}
    safe_extract(tmp_path / "s.zip", tmp_path / "out")
    assert os.access(tmp_path / "out/run.sh", os.X_OK)
    assert not os.access(tmp_path / "out/lib.py", os.X_OK)


def test_symlinks(tmp_path: Path) -> None:
    src, outside = tmp_path / "src", tmp_path / "outside"
    write(src, {"real/data.txt": "inside"})
    write(outside, {"secret.txt": "secret", "dir/f.txt": "f"})
    os.symlink(src / "real/data.txt", src / "alias.txt")
    os.symlink("real/data.txt", src / "relative-alias.txt")
    os.symlink(outside / "secret.txt", src / "secret.txt")
    os.symlink(outside / "dir", src / "outside-dir")
    os.symlink(src / "real", src / "inside-dir")  # not followed: its files are there already
    os.symlink(src / "missing", src / "broken")
    info = create_snapshot(src, tmp_path / "s.zip")
    assert info.files == ["alias.txt", "real/data.txt", "relative-alias.txt"]
    with zipfile.ZipFile(tmp_path / "s.zip") as zf:
        assert zf.read("alias.txt") == b"inside"
        assert all(i.external_attr >> 16 & stat.S_IFMT(0o777777) == stat.S_IFREG for i in zf.infolist())


def test_a_linked_source_dir_is_fine(tmp_path: Path) -> None:
    write(tmp_path / "real", {"a.py": "a"})
    os.symlink(tmp_path / "real", tmp_path / "link")
    assert create_snapshot(tmp_path / "link", tmp_path / "s.zip").files == ["a.py"]


def test_too_large(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, {
        "data/raw/huge.bin": b"x" * 5000,  # a chain of folders made of one file: shown as the file
        "data/readme.md": b"x" * 10,
        "node_modules/a/1.js": b"x" * 900, "node_modules/b/2.js": b"x" * 900, "node_modules/c/3.js": b"x" * 900,
        "model.pt": b"x" * 2000,
        "train.py": b"x" * 100,
        ".gitignore": "*.tmp\n",
    })
    dest = tmp_path / "out" / "s.zip"
    with pytest.raises(SnapshotTooLargeError) as excinfo:
        create_snapshot(src, dest, max_bytes=4096)
    message = str(excinfo.value)
    lines = message.splitlines()
    assert "9.6 KiB" in lines[0] and "4.0 KiB" in lines[0]  # the size and the limit
    listed = [line.split()[-1] for line in lines[1:] if line.startswith("  ")]
    assert listed == ["data/raw/huge.bin", "node_modules/", "model.pt", "node_modules/a/1.js",
                      "node_modules/b/2.js"]
    assert "4.9 KiB" in message and "2.6 KiB" in message
    assert ".amlignore" in message and ".gitignore is no longer read" in message
    assert not (tmp_path / "out").exists()  # checked before writing anything


def test_limit_is_on_the_files_kept(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, {"data/big.bin": b"x" * 10_000, "a.py": "a", ".amlignore": "data/\n"})
    assert create_snapshot(src, tmp_path / "s.zip", max_bytes=1000).files == [".amlignore", "a.py"]


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="nope"):
        create_snapshot(tmp_path / "nope", tmp_path / "s.zip")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValidationError, match="not a directory"):
        create_snapshot(tmp_path / "file", tmp_path / "s.zip")


def test_zip_inside_the_source_is_not_included(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, {"a.py": "a"})
    first = create_snapshot(src, src / "snapshot.zip")
    second = create_snapshot(src, src / "snapshot.zip")
    assert first.files == second.files == ["a.py"]
    assert first.sha256 == second.sha256


def test_progress_for_large_snapshots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AML_PROGRESS", "1")
    write(tmp_path / "src", {"zeros.bin": b"\0" * (9 * MiB)})
    create_snapshot(tmp_path / "src", tmp_path / "s.zip", show_progress=True)
    assert "Snapshot of src" in capsys.readouterr().err


# ---------------------------------------------------------------------------- extract
def test_round_trip(tmp_path: Path) -> None:
    files: dict[str, bytes | str] = {"train.py": "t", "pkg/a/b.py": "b", "data.bin": os.urandom(100_000), "e": ""}
    write(tmp_path / "src", files)
    info = create_snapshot(tmp_path / "src", tmp_path / "s.zip")
    extracted = safe_extract(tmp_path / "s.zip", tmp_path / "out/run")
    assert extracted == info.files == sorted(files)
    for rel, content in files.items():
        expected = content.encode() if isinstance(content, str) else content
        assert (tmp_path / "out/run" / rel).read_bytes() == expected
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["run"]  # no staging folder left


def test_extract_into_an_existing_empty_folder(tmp_path: Path) -> None:
    write(tmp_path / "src", {"a": "a"})
    create_snapshot(tmp_path / "src", tmp_path / "s.zip")
    (tmp_path / "target").mkdir()
    assert safe_extract(tmp_path / "s.zip", tmp_path / "target") == ["a"]


def test_extract_with_folder_entries(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as zf:
        zf.writestr("./", "")
        zf.writestr("empty/", "")
        zf.writestr("a/", "")
        zf.writestr("a/b.txt", "b")
    assert safe_extract(tmp_path / "d.zip", tmp_path / "out") == ["a/b.txt"]
    assert (tmp_path / "out/empty").is_dir()


@pytest.mark.parametrize("kind", ["non-empty", "file", "link"])
def test_target_must_be_absent_or_empty(tmp_path: Path, kind: str) -> None:
    write(tmp_path / "src", {"a": "a"})
    create_snapshot(tmp_path / "src", tmp_path / "s.zip")
    target = tmp_path / "target"
    if kind == "non-empty":
        write(target, {"old.txt": "old"})
    elif kind == "file":
        target.write_text("x")
    else:
        (tmp_path / "elsewhere").mkdir()
        target.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValidationError, match="target"):
        safe_extract(tmp_path / "s.zip", target)
    assert not (tmp_path / "elsewhere").exists() or list((tmp_path / "elsewhere").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# -- malicious archives: each is refused, naming the entry, with nothing written next to the target
def zip_with(entries: list[tuple[str | zipfile.ZipInfo, bytes]], **kwargs: object) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about duplicate names
            with zipfile.ZipFile(path, "w", **kwargs) as zf:  # type: ignore[arg-type]
                for name, data in entries:
                    zf.writestr(name, data)

    return build


def symlink_entry() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("link")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def fifo_entry() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("pipe")
    info.create_system = 3
    info.external_attr = (stat.S_IFIFO | 0o644) << 16
    return info


def patch_headers(path: Path, *, local: dict[int, tuple[str, int]], central: dict[int, tuple[str, int]]) -> None:
    """Overwrite fields of the first local header and the first central directory header."""
    raw = bytearray(path.read_bytes())
    for signature, fields in ((b"PK\x03\x04", local), (b"PK\x01\x02", central)):
        start = raw.index(signature)
        for offset, (fmt, value) in fields.items():
            struct.pack_into("<" + fmt, raw, start + offset, value)
    path.write_bytes(bytes(raw))


def lying_sizes(path: Path) -> None:
    zip_with([("liar.bin", os.urandom(MiB))], compression=zipfile.ZIP_DEFLATED)(path)
    # Uncompressed size is at offset 22 of a local header and 24 of a central directory header.
    patch_headers(path, local={22: ("I", 100)}, central={24: ("I", 100)})


def encrypted(path: Path) -> None:
    zip_with([("secret.txt", b"x" * 100)])(path)
    patch_headers(path, local={6: ("H", 0x1)}, central={8: ("H", 0x1)})


MALICIOUS: dict[str, tuple[Callable[[Path], None], dict[str, int | float], str]] = {
    "parent": (zip_with([("ok.txt", b"x"), ("../evil", b"x")]), {}, "../evil"),
    "nested parent": (zip_with([("a/../../evil", b"x")]), {}, "a/../../evil"),
    "encoded parent": (zip_with([("%2e%2e/evil", b"x")]), {}, "%2e%2e/evil"),
    "absolute": (zip_with([("/tmp/evil", b"x")]), {}, "/tmp/evil"),
    "drive": (zip_with([("C:/evil", b"x")]), {}, "C:/evil"),
    "backslash": (zip_with([("..\\evil", b"x")]), {}, "..\\\\evil"),
    "symlink": (zip_with([("ok.txt", b"x"), (symlink_entry(), b"/etc/passwd")]), {}, "'link'"),
    "special file": (zip_with([(fifo_entry(), b"")]), {}, "'pipe'"),
    "duplicate": (zip_with([("a.txt", b"1"), ("b.txt", b"2"), ("a.txt", b"3")]), {}, "'a.txt'"),
    "duplicate after normalizing": (zip_with([("a/b.txt", b"1"), ("a//./b.txt", b"2")]), {}, "a//./b.txt"),
    "file and folder": (zip_with([("a", b"1"), ("a/b.txt", b"2")]), {}, "a/b.txt"),
    "too many entries": (zip_with([(f"f{i}", b"x") for i in range(5)]), {"max_entries": 4}, "5 entries"),
    "bomb ratio": (
        zip_with([("zeros.bin", b"\0" * (20 * MiB))], compression=zipfile.ZIP_DEFLATED), {}, "zeros.bin",
    ),
    # Each entry just under the per-entry ratio check's 1 MiB floor; together 40 MiB from ~40 kB.
    "bomb of many entries": (
        zip_with([(f"z{i}.bin", b"\0" * (MiB - 1)) for i in range(40)], compression=zipfile.ZIP_DEFLATED),
        {}, "its 40 files declare 40.0 MiB",
    ),
    "bomb size": (
        zip_with([("zeros.bin", b"\0" * (3 * MiB))], compression=zipfile.ZIP_DEFLATED),
        {"max_bytes": 2 * MiB, "max_ratio": 1e9}, "zeros.bin",
    ),
    "declared total": (
        zip_with([("a.bin", os.urandom(600_000)), ("b.bin", os.urandom(600_000))]),
        {"max_bytes": MiB}, "b.bin",
    ),
    "lying sizes": (lying_sizes, {"max_bytes": 1000}, "liar.bin"),
    "encrypted": (encrypted, {}, "secret.txt"),
    "not a zip": (lambda p: p.write_bytes(b"this is not a zip file"), {}, "not a readable zip"),
    "truncated": (lambda p: (zip_with([("a", os.urandom(5000))])(p), p.write_bytes(p.read_bytes()[:3000])), {},
                  "zip"),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_archives_are_refused(tmp_path: Path, case: str) -> None:
    build, limits, named = MALICIOUS[case]
    archive = tmp_path / "archives" / "evil.zip"
    archive.parent.mkdir()
    build(archive)
    parent = tmp_path / "work"
    parent.mkdir()
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract(archive, parent / "target", **limits)  # type: ignore[arg-type]
    assert named in str(excinfo.value)
    assert list(parent.iterdir()) == []  # nothing written, not even a staging folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archives", "work"]


def test_decompressed_bytes_are_counted_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A decoder that yields more than the header declares (CPython's stops; another may not)."""
    zip_with([("ok.txt", b"fine"), ("liar.bin", b"x" * 10)])(tmp_path / "z.zip")
    real_open = zipfile.ZipFile.open

    def generous_open(self: zipfile.ZipFile, name: str | zipfile.ZipInfo, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        filename = name.filename if isinstance(name, zipfile.ZipInfo) else name
        if filename == "liar.bin":
            return io.BytesIO(b"x" * (5 * MiB))
        return real_open(self, name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(zipfile.ZipFile, "open", generous_open)
    (tmp_path / "work").mkdir()
    with pytest.raises(UnsafeArchiveError, match=r"liar\.bin.*more than the 10 bytes"):
        safe_extract(tmp_path / "z.zip", tmp_path / "work/target")
    assert list((tmp_path / "work").iterdir()) == []


def test_missing_archive(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        safe_extract(tmp_path / "nope.zip", tmp_path / "out")
    assert not (tmp_path / "out").exists()
