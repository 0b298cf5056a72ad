"""Snapshots: the zip of a run's source directory, and the only way zips are ever extracted.

``create_snapshot`` zips a source directory deterministically (same files -> same SHA-256, so
identical snapshots can be recognised), leaving out what ``.amlignore`` (or, without one,
``.gitignore``) excludes. ``safe_extract`` unpacks a zip that may come from anyone with write
access to a datastore, so it refuses everything that could write outside the target or fill
the disk, before writing a byte, and publishes the result with one rename.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pathspec import GitIgnoreSpec

from airflow_aml.datastores._files import create_temp_file, disk_full_named
from airflow_aml.datastores.paths import normalize_path
from airflow_aml.exceptions import (
    PathEscapeError,
    SnapshotTooLargeError,
    UnsafeArchiveError,
    ValidationError,
)
from airflow_aml.hashing import CHUNK_SIZE, sha256_file
from airflow_aml.progress import transfer_progress
from airflow_aml.runconfig import check_source_directory

MiB = 1024 * 1024
GiB = 1024 * MiB
DEFAULT_MAX_SNAPSHOT_BYTES = 300 * MiB  # Azure ML's limit: a snapshot is code, not data
DEFAULT_MAX_EXTRACT_BYTES = 2 * GiB
DEFAULT_MAX_ENTRIES = 100_000
DEFAULT_MAX_RATIO = 200.0
# Deflate reaches ~1000:1 on runs of zeros; small files are left out of the ratio check because
# a few kB of padding is harmless and the total size limit bounds them anyway.
RATIO_CHECK_MIN_BYTES = 1 * MiB

IGNORE_FILES = (".amlignore", ".gitignore")  # the first one present in a folder is used
_ALWAYS_IGNORED = GitIgnoreSpec.from_lines([".git", "__pycache__/", "*.pyc"])
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold: no clock in the hash
_UNIX = 3  # ZipInfo.create_system: external_attr carries a Unix mode
_LARGEST_SHOWN = 5
_DOMINANT_CHILD = 0.9  # a folder this much made of one child is shown as that child instead


@dataclass(frozen=True)
class SnapshotInfo:
    sha256: str
    size_bytes: int  # of the zip
    uncompressed_bytes: int
    file_count: int
    files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _SourceFile:
    rel: str  # POSIX path inside the zip
    path: str  # what to read: the file, or the target of a link to a file in the source
    size: int
    executable: bool


# ---------------------------------------------------------------------------- create
def create_snapshot(
    source_dir: str | Path,
    dest_zip: str | Path,
    *,
    max_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES,
    show_progress: bool = False,
) -> SnapshotInfo:
    """Zip ``source_dir`` into ``dest_zip`` (written atomically) and describe the result.

    Raises RunConfigurationError (a ValidationError) when ``source_dir`` is not a folder and
    SnapshotTooLargeError, before writing anything, when the files to include add up to more than
    ``max_bytes``.
    """
    source = check_source_directory(source_dir)
    dest = Path(os.path.abspath(dest_zip))
    files = _collect(source, exclude=dest)
    total = sum(f.size for f in files)
    if total > max_bytes:
        raise SnapshotTooLargeError(_too_large_message(source, files, total, max_bytes))

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = create_temp_file(dest.parent)
    try:
        with disk_full_named(f"Writing the snapshot of {str(source)!r} to {str(dest)!r}", dest.parent), \
                open(fd, "wb") as raw:
            written = _write_zip(raw, source, files, max_bytes, show_progress)
            raw.flush()
            os.fsync(raw.fileno())
        # Hashed after closing: zipfile seeks back to patch headers, so a running hash of the
        # writes would not be the hash of the file.
        digest = sha256_file(temp)
        size = os.path.getsize(temp)
        os.replace(temp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    return SnapshotInfo(
        sha256=digest,
        size_bytes=size,
        uncompressed_bytes=written,
        file_count=len(files),
        files=[f.rel for f in files],
    )


def _write_zip(raw: IO[bytes], source: Path, files: list[_SourceFile], max_bytes: int, show_progress: bool) -> int:
    written = 0
    total = sum(f.size for f in files)
    with (
        zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as zf,
        transfer_progress(f"Snapshot of {source.name}", total, show_progress) as advance,
    ):
        for f in files:
            info = zipfile.ZipInfo(f.rel, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = _UNIX
            # Only the executable bit survives (as git keeps it): umask and owner never leak in.
            info.external_attr = (stat.S_IFREG | (0o755 if f.executable else 0o644)) << 16
            info.file_size = f.size  # lets zipfile decide on ZIP64 up front
            with open(f.path, "rb") as src, zf.open(info, "w") as dst:
                while chunk := src.read(CHUNK_SIZE):
                    written += len(chunk)
                    if written > max_bytes:  # a file grew after the size check
                        raise SnapshotTooLargeError(
                            f"Snapshot of {str(source)!r} grew past the limit of {_human(max_bytes)} "
                            f"while it was being written (at {f.rel!r})"
                        )
                    dst.write(chunk)
                    advance(len(chunk))
    return written


def list_source_files(source_dir: str | Path) -> list[tuple[str, str]]:
    """(POSIX path relative to ``source_dir``, file to read) for every file a snapshot of it would
    hold: the same ``.amlignore``/``.gitignore`` rules and link handling. Image bundles use it for
    their ``app/`` folder, so that code is packaged the same way for runs and images."""
    return [(f.rel, f.path) for f in _collect(Path(source_dir))]


def _collect(source: Path, *, exclude: Path | None = None) -> list[_SourceFile]:
    """The files a snapshot of ``source`` holds, sorted by their path in the zip."""
    root_real = os.path.realpath(source)
    exclude_real = os.path.realpath(exclude) if exclude is not None else None
    found: list[_SourceFile] = []
    _walk(Path(root_real), "", [], root_real, exclude_real, found)
    return sorted(found, key=lambda f: f.rel)


def _walk(
    folder: Path,
    rel_folder: str,
    rules: list[tuple[str, GitIgnoreSpec]],
    root_real: str,
    exclude_real: str | None,
    found: list[_SourceFile],
) -> None:
    rules = rules + _rules_of(folder, rel_folder)
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        rel = f"{rel_folder}/{entry.name}" if rel_folder else entry.name
        read_path = entry.path
        if entry.is_symlink():
            # Links are content only when they stay inside the source; never followed out of it,
            # and links to folders are not followed at all (their files are there already).
            real = os.path.realpath(entry.path)
            if os.path.commonpath([root_real, real]) != root_real or not os.path.isfile(real):
                continue
            is_dir, read_path = False, real
        elif entry.is_dir(follow_symlinks=False):
            is_dir = True
        elif entry.is_file(follow_symlinks=False):
            is_dir = False
        else:
            continue  # sockets, FIFOs, devices
        if _ignored(rel, is_dir, rules):
            continue
        if is_dir:
            _walk(Path(entry.path), rel, rules, root_real, exclude_real, found)
            continue
        if exclude_real is not None and os.path.realpath(entry.path) == exclude_real:
            continue  # the snapshot being written into the source folder
        st = os.stat(read_path)
        found.append(_SourceFile(rel=rel, path=read_path, size=st.st_size, executable=bool(st.st_mode & 0o100)))


def _rules_of(folder: Path, rel_folder: str) -> list[tuple[str, GitIgnoreSpec]]:
    for name in IGNORE_FILES:
        candidate = folder / name
        if candidate.is_file():
            lines = candidate.read_text(encoding="utf-8", errors="replace").splitlines()
            return [(rel_folder, GitIgnoreSpec.from_lines(lines))]
    return []


def _ignored(rel: str, is_dir: bool, rules: list[tuple[str, GitIgnoreSpec]]) -> bool:
    suffix = "/" if is_dir else ""
    if _ALWAYS_IGNORED.match_file(rel + suffix):
        return True
    ignored = False
    # Outer files first, deeper ones last: as in git, the deepest decisive pattern wins.
    for base, spec in rules:
        below = rel[len(base) + 1:] if base else rel
        result = spec.check_file(below + suffix)
        if result.include is not None:
            ignored = result.include
    return ignored


def _too_large_message(source: Path, files: list[_SourceFile], total: int, max_bytes: int) -> str:
    listing = "\n".join(f"  {size:>12}  {name}" for name, size in _largest(files))
    ignore_file = source / ".amlignore"
    note = "" if ignore_file.exists() or not (source / ".gitignore").exists() else (
        " (once .amlignore exists, .gitignore is no longer read: copy what it needs)"
    )
    return (
        f"Snapshot of {str(source)!r} would hold {_human(total)} in {len(files)} files, over the limit "
        f"of {_human(max_bytes)}. The largest files and folders:\n{listing}\n"
        f"Add the ones the run does not need to {str(ignore_file)!r} (gitignore syntax){note}, "
        "or store data in a datastore instead of the source directory."
    )


def _largest(files: list[_SourceFile]) -> list[tuple[str, str]]:
    """The biggest files and folders, as (name, human size); a folder whose size is nearly all
    one child is left out, so a chain like ``data/raw/big.bin`` is shown once, as the file."""
    sizes: dict[str, int] = {f.rel: f.size for f in files}
    folders: set[str] = set()
    for f in files:
        parts = f.rel.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            folders.add(folder)
            sizes[folder] = sizes.get(folder, 0) + f.size
    biggest_child: dict[str, int] = {}
    for name, size in sizes.items():
        if "/" in name:
            parent = name.rsplit("/", 1)[0]
            biggest_child[parent] = max(biggest_child.get(parent, 0), size)
    candidates = [(f.rel, f.size) for f in files]
    candidates += [
        (folder + "/", sizes[folder])
        for folder in folders
        if biggest_child.get(folder, 0) < _DOMINANT_CHILD * sizes[folder]
    ]
    candidates.sort(key=lambda item: (-item[1], item[0]))
    return [(name, _human(size)) for name, size in candidates[:_LARGEST_SHOWN]]


def _human(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------- extract
def safe_extract(
    zip_path: str | Path,
    target_dir: str | Path,
    *,
    max_bytes: int = DEFAULT_MAX_EXTRACT_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> list[str]:
    """Extract ``zip_path`` into ``target_dir`` (absent or empty) and return the files' paths.

    Every entry is checked before anything is written (UnsafeArchiveError naming the entry):
    absolute, drive-letter, ``..`` and backslash paths, links and special files, duplicates,
    encryption, too many entries, a declared size over ``max_bytes``, a compression ratio over
    ``max_ratio`` (of an entry, and of the whole archive). Extraction then goes into a hidden
    folder next to ``target_dir``, counting the bytes really decompressed, and is renamed into
    place at the end; on any failure that folder is removed, so either the whole archive appears
    or nothing does.
    """
    archive = Path(zip_path)
    target = Path(os.path.abspath(target_dir))
    _check_target(target)
    try:
        zf = zipfile.ZipFile(archive)
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise ValidationError(f"Zip archive {str(archive)!r} does not exist or is a folder") from exc
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError) as exc:
        raise UnsafeArchiveError(f"{str(archive)!r} is not a readable zip archive: {exc}") from exc
    with zf:
        plan = _plan(zf, archive, max_bytes=max_bytes, max_entries=max_entries, max_ratio=max_ratio)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.parent / f".{target.name}.aml-extract-{secrets.token_hex(8)}"
        os.mkdir(staging)  # not mkdtemp: the folder keeps the umask's mode once renamed
        try:
            _extract(zf, plan, staging, archive, max_bytes)
            _move_into_place(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return sorted(rel for _, rel, is_dir in plan if not is_dir)


def _check_target(target: Path) -> None:
    if target.is_symlink():
        raise ValidationError(f"Cannot extract into {str(target)!r}: it is a symbolic link")
    if not target.exists():
        return
    if not target.is_dir():
        raise ValidationError(f"Cannot extract into {str(target)!r}: it is a file")
    if any(target.iterdir()):
        raise ValidationError(f"Cannot extract into {str(target)!r}: the folder is not empty")


def _plan(
    zf: zipfile.ZipFile, archive: Path, *, max_bytes: int, max_entries: int, max_ratio: float
) -> list[tuple[zipfile.ZipInfo, str, bool]]:
    """(entry, normalized path, is folder) for every entry, or UnsafeArchiveError."""
    infos = zf.infolist()
    if len(infos) > max_entries:
        raise UnsafeArchiveError(
            f"Archive {str(archive)!r} has {len(infos)} entries, more than the limit of {max_entries}"
        )

    def refuse(info: zipfile.ZipInfo, why: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(f"Archive {str(archive)!r}: entry {info.filename!r} {why}")

    plan: list[tuple[zipfile.ZipInfo, str, bool]] = []
    seen: dict[str, str] = {}
    files: set[str] = set()
    declared = compressed = 0
    for info in infos:
        is_dir = info.filename.endswith("/")
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise refuse(info, "is a symbolic link; links are never extracted")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise refuse(info, f"is a special file (mode {oct(kind)}); only files and folders are extracted")
        if info.flag_bits & 0x1:
            raise refuse(info, "is encrypted")
        try:
            rel = normalize_path(info.filename, allow_empty=True)
        except (PathEscapeError, ValidationError) as exc:
            raise refuse(info, f"has an unsafe path: {exc}") from exc
        if not rel:
            if is_dir:
                continue  # "./": the target folder itself
            raise refuse(info, "has an empty name")
        if rel in seen:
            raise refuse(info, f"is a duplicate of entry {seen[rel]!r}")
        seen[rel] = info.filename
        if not is_dir:
            files.add(rel)
            if info.file_size > max_bytes:
                raise refuse(info, f"declares {_human(info.file_size)}, over the limit of {_human(max_bytes)}")
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size >= RATIO_CHECK_MIN_BYTES and ratio > max_ratio:
                raise refuse(info, f"has a compression ratio of {ratio:.0f}:1, over {max_ratio:.0f}:1 (zip bomb?)")
            declared += info.file_size
            compressed += info.compress_size
            if declared > max_bytes:
                raise refuse(
                    info, f"brings the declared total to {_human(declared)}, over the limit of {_human(max_bytes)}"
                )
        plan.append((info, rel, is_dir))
    # Many entries each just under the per-entry threshold are a bomb too: the ratio of the whole.
    whole_ratio = declared / max(compressed, 1)
    if declared >= RATIO_CHECK_MIN_BYTES and whole_ratio > max_ratio:
        raise UnsafeArchiveError(
            f"Archive {str(archive)!r}: its {len(files)} files declare {_human(declared)} from "
            f"{_human(compressed)} compressed, a ratio of {whole_ratio:.0f}:1, over {max_ratio:.0f}:1 (zip bomb?)"
        )
    for _, rel, _ in plan:
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            ancestor = "/".join(parts[:depth])
            if ancestor in files:
                raise UnsafeArchiveError(
                    f"Archive {str(archive)!r}: entry {seen[rel]!r} is below {seen[ancestor]!r}, which is a file"
                )
    return plan


def _extract(
    zf: zipfile.ZipFile, plan: list[tuple[zipfile.ZipInfo, str, bool]], staging: Path, archive: Path, max_bytes: int
) -> None:
    total = 0
    for info, rel, is_dir in plan:
        dest = staging.joinpath(*rel.split("/"))
        if is_dir:
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        entry_bytes = 0
        try:
            with disk_full_named(f"Extracting {info.filename!r} of {str(archive)!r}", staging), \
                    zf.open(info) as src, open(dest, "xb") as dst:
                # Counted here rather than trusted from the headers, which the archive's author wrote.
                while chunk := src.read(CHUNK_SIZE):
                    entry_bytes += len(chunk)
                    total += len(chunk)
                    if entry_bytes > info.file_size:
                        raise UnsafeArchiveError(
                            f"Archive {str(archive)!r}: entry {info.filename!r} holds more than the "
                            f"{info.file_size} bytes its header declares"
                        )
                    if total > max_bytes:
                        raise UnsafeArchiveError(
                            f"Archive {str(archive)!r}: extracting entry {info.filename!r} passed the "
                            f"limit of {_human(max_bytes)}"
                        )
                    dst.write(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            # CRC mismatch, truncated or lying compressed data, unsupported compression.
            raise UnsafeArchiveError(
                f"Archive {str(archive)!r}: entry {info.filename!r} cannot be extracted: {exc}"
            ) from exc
        if (info.external_attr >> 16) & 0o100:
            mode = dest.stat().st_mode
            dest.chmod(stat.S_IMODE(mode) | ((mode & 0o444) >> 2))  # x wherever r


def _move_into_place(staging: Path, target: Path) -> None:
    try:
        # POSIX rename replaces an empty folder and refuses a non-empty one, atomically.
        os.rename(staging, target)
    except OSError as exc:
        if target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
            target.rmdir()  # platforms whose rename never replaces a folder
            os.rename(staging, target)
            return
        raise ValidationError(
            f"Cannot extract into {str(target)!r}: it appeared or was filled during extraction"
        ) from exc
