"""Python environments for runs: the current interpreter, or a cached virtualenv built with uv.

A ``virtualenv`` spec is built once per content and reused: the folder is
``$AML_HOME/envs/<sha256 of the normalized spec>``. The hash covers the requirement lines (from
``pip`` and the conda file's contents, sorted), the Python request, and the runtime pins below, so
editing any of them builds a new environment and an untouched spec never rebuilds. The building
and caching itself (``ensure_virtualenv``) is shared with image environments
(``airflow_aml.images.local``, cached under ``$AML_HOME/images/envs``).

Conda files are read, not executed by conda: ``python=X`` picks the interpreter, ``pip:`` lines are
installed as they are, and every other conda package is installed **from PyPI under the same name**
(``numpy=1.26`` -> ``numpy==1.26.*``; channels and build strings are ignored). That covers the
usual scientific stack; a conda-only package (``cudatoolkit``) fails the build with uv's message.

How the run's script reaches ``airflow_aml.runtime`` (``Run.get_context()``) inside the venv: the
venv does not see the main environment's site-packages (the script must not silently depend on
Airflow's packages). Instead
- a ``.pth`` file adds ``<env>/aml-runtime`` to ``sys.path``, a folder holding only a symlink
  ``airflow_aml`` -> the package that runs the supervisor. Pointing the ``.pth`` at the package's
  parent folder would expose that whole folder, which for a regular (non-editable) install is the
  main site-packages with binary packages built for another interpreter;
- the runtime's own dependencies are installed into the venv, pinned to the versions the main
  environment uses (the code is known to work with them), unless the user's requirements name the
  same package, in which case the user's line wins and the resolver sees only it.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import airflow_aml
from airflow_aml.config import aml_home
from airflow_aml.exceptions import EnvironmentBuildError, RunConfigurationError
from airflow_aml.runconfig import EnvironmentSpec, validate_requirement

log = logging.getLogger(__name__)

LogFn = Callable[[str], None]

# Bump when the layout of a built environment changes: old caches are then ignored, not reused.
# 3: bytecode compiled at build time (see _build).
_FORMAT = 3
_MARKER = ".aml-env.json"
_RUNTIME_DIR = "aml-runtime"
# Distributions airflow_aml.runtime imports (directly or through the store). Airflow and the CLI
# stack are deliberately absent: a run script never needs them.
_RUNTIME_DISTRIBUTIONS = ("sqlalchemy", "alembic", "pydantic", "pyyaml", "cryptography", "pathspec", "rich")
_OUTPUT_TAIL_LINES = 30


@dataclass(frozen=True)
class CondaSpec:
    python: str | None
    requirements: tuple[str, ...]


# ---------------------------------------------------------------------------------- conda files
_CONDA_SPEC = re.compile(r"^(?:[A-Za-z0-9_.-]+::)?([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$")


def read_conda_file(path: Path) -> CondaSpec:
    """The Python request and pip requirement lines of a conda environment file.

    Raises RunConfigurationError naming the file and the offending entry.
    """
    where = f"conda file {str(path)!r}"
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise RunConfigurationError(f"Cannot read {where}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise RunConfigurationError(f"The {where} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise RunConfigurationError(f"The {where} must hold a mapping with a 'dependencies' list")
    deps = data.get("dependencies") or []
    if not isinstance(deps, list):
        raise RunConfigurationError(f"'dependencies' in the {where} must be a list")
    python: str | None = None
    requirements: list[str] = []
    for dep in deps:
        if isinstance(dep, dict):
            unknown = set(dep) - {"pip"}
            if unknown:
                raise RunConfigurationError(f"Unsupported dependency section(s) {sorted(unknown)} in the {where}")
            pip_lines = dep.get("pip") or []
            if not isinstance(pip_lines, list):
                raise RunConfigurationError(f"The 'pip' section of the {where} must be a list")
            for line in pip_lines:
                requirements.append(_checked(str(line), where))
            continue
        if not isinstance(dep, str | int | float):
            raise RunConfigurationError(f"Dependency {dep!r} in the {where} is not a package spec")
        match = _CONDA_SPEC.match(str(dep).strip())
        if not match:
            raise RunConfigurationError(f"Dependency {dep!r} in the {where} is not a package spec")
        name, version = match.group(1), match.group(2).strip()
        if name.lower() == "pip":
            continue
        if name.lower() == "python":
            python = _conda_python(version, where) if version else None
            continue
        requirements.append(_checked(name + _conda_version(version), where))
    return CondaSpec(python=python, requirements=tuple(requirements))


def _checked(line: str, where: str) -> str:
    try:
        return validate_requirement(line)
    except ValueError as exc:
        raise RunConfigurationError(f"Invalid requirement in the {where}: {exc}") from exc


def _conda_version(version: str) -> str:
    """A conda version constraint as a pip specifier: conda's ``=1.2`` means ``1.2.*``.

    Build strings (``=1.2=py311_0``, ``1.2 py311_0``) are dropped: PyPI has no such thing.
    """
    if not version:
        return ""
    if re.match(r"^[<>=!~]+\s", version):  # ">= 1.2": an operator, a space, the number
        version = version.replace(" ", "")
    version = version.split()[0]
    if version.startswith("=") and not version.startswith("=="):
        version = version[1:]
    if version[0].isdigit():
        number = version.split("=", 1)[0]
        return f"=={number}" if number.endswith("*") else f"=={number}.*"
    if version.startswith("=="):
        return "==" + version[2:].split("=", 1)[0]
    return version


def _conda_python(version: str, where: str) -> str:
    """A uv Python request from a conda ``python`` constraint (``=3.11`` -> ``3.11``)."""
    text = version.replace(" ", "")
    if text.startswith("=") and not text.startswith("=="):
        text = text[1:]
    if text.startswith("==") or text[:1].isdigit():
        text = text.lstrip("=").split("=", 1)[0].removesuffix(".*").removesuffix("*")
    if not re.match(r"^([<>=!~]=?)?[0-9]+(\.[0-9]+)*$", text):
        raise RunConfigurationError(f"Python version {version!r} in the {where} is not understood")
    return text


# ---------------------------------------------------------------------------------- preparing
def prepare_python(
    spec: EnvironmentSpec,
    source_dir: Path,
    *,
    log_fn: LogFn | None = None,
    stop: threading.Event | None = None,
) -> str:
    """The interpreter a run's script is started with, building its virtualenv when needed.

    ``source_dir`` is the run's extracted snapshot (the conda file path is relative to it).
    ``log_fn`` receives progress and uv's output lines, for the run log. Setting ``stop`` (a
    cancel) kills a running uv and makes the call raise EnvironmentBuildError.
    """
    if spec.kind == "current":
        return sys.executable
    emit = log_fn or (lambda line: log.info("%s", line))
    requirements, python = resolve_requirements(spec, Path(source_dir))
    runtime = runtime_requirements(requirements)
    key_doc = {
        "format": _FORMAT,
        "python": python or os.path.realpath(sys.executable),
        "requirements": sorted(set(requirements)),
        "runtime": runtime,
        "package": str(package_dir()),
    }
    return ensure_virtualenv(
        aml_home() / "envs", key_doc, python=python or sys.executable, requirements=requirements,
        runtime=runtime, log_fn=emit, stop=stop,
    )


def ensure_virtualenv(
    envs: Path,
    key_doc: Mapping[str, Any],
    *,
    python: str,
    requirements: Sequence[str],
    runtime: Sequence[str],
    log_fn: LogFn,
    stop: threading.Event | None = None,
) -> str:
    """The interpreter of the virtualenv ``envs/<sha256 of key_doc>``, built with uv when missing.

    Shared by run environments (``$AML_HOME/envs``) and image environments
    (``$AML_HOME/images/envs``): ``key_doc`` must cover everything the environment's content
    depends on, because a folder that exists is reused as it is. ``requirements`` (the user's) and
    ``runtime`` (pins for airflow_aml.runtime, from ``runtime_requirements``) are installed together;
    the venv gets the ``.pth`` shim that exposes this ``airflow_aml`` package. Concurrent callers
    for one key build it once (a file lock); the folder appears with one rename, complete.
    """
    emit = log_fn  # the name the rest of this module uses
    digest = hashlib.sha256(json.dumps(key_doc, sort_keys=True).encode()).hexdigest()
    envs.mkdir(parents=True, exist_ok=True)
    final = envs / digest
    interpreter = final / "bin" / "python"
    if _is_complete(final):
        emit(f"Using cached environment {digest[:12]} ({final})")
        return str(interpreter)
    with _exclusive_lock(envs / f"{digest}.lock", emit, stop):
        # Re-check under the lock: the builder we waited for may have finished it.
        if _is_complete(final):
            emit(f"Using cached environment {digest[:12]} ({final})")
            return str(interpreter)
        if final.exists():  # a half-built leftover (crash mid-rename is impossible, but be safe)
            shutil.rmtree(final, ignore_errors=True)
        wanted = sorted(set(requirements))
        emit(f"Building environment {digest[:12]} with uv: {' '.join(wanted) or '(no packages)'}")
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{digest[:12]}-", dir=envs))
        try:
            _build(tmp, final, python, [*wanted, *runtime], emit, stop)
            (tmp / _MARKER).write_text(json.dumps(dict(key_doc), indent=2, sort_keys=True))
            os.rename(tmp, final)  # atomic: readers see no env or a complete one
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        emit(f"Environment {digest[:12]} ready")
    return str(interpreter)


def resolve_requirements(spec: EnvironmentSpec, source_dir: Path) -> tuple[list[str], str | None]:
    """(requirement lines, python request) of a virtualenv spec, every line validated."""
    requirements = [_checked(line, "run's environment") for line in spec.pip]
    python = spec.python
    if spec.conda_file:
        conda = read_conda_file(source_dir / spec.conda_file)
        requirements.extend(conda.requirements)
        python = python or conda.python
    return requirements, python


def runtime_requirements(user_requirements: Sequence[str], extra: Sequence[str] = ()) -> list[str]:
    """Pinned requirement lines for airflow_aml.runtime, minus packages the user pins.

    ``extra`` names more distributions to install beside the runtime's (an image's scoring server
    needs fastapi and uvicorn); each is pinned to this environment's version when it is installed
    here, and left unpinned otherwise.
    """
    taken = {_canonical(re.split(r"[\[<>=!~;\s]", line, maxsplit=1)[0]) for line in user_requirements}
    names = list(_RUNTIME_DISTRIBUTIONS)
    # The PostgreSQL driver only when this environment has it: a SQLite store does not need it.
    if importlib.util.find_spec("psycopg") is not None:
        names.append("psycopg")
        if _installed_version("psycopg-binary"):
            names.append("psycopg-binary")
    names += [name for name in extra if _canonical(name) not in {_canonical(n) for n in names}]
    lines = []
    for name in names:
        if _canonical(name) in taken:
            continue
        version = _installed_version(name)
        lines.append(f"{name}=={version}" if version else name)
    return lines


def _build(
    tmp: Path, final: Path, python: str, requirements: list[str], emit: LogFn, stop: threading.Event | None
) -> None:
    uv = find_uv()
    # --relocatable: the venv is built in a temp folder and renamed into place.
    _run_uv([uv, "venv", "--relocatable", "--python", python, str(tmp)], emit, cwd=tmp.parent, stop=stop)
    interpreter = tmp / "bin" / "python"
    if requirements:
        # --compile-bytecode: the environment is built once and started from many times (every
        # replica of a deployment, every run). uv does not compile by default, and a process
        # started with PYTHONDONTWRITEBYTECODE (or without write access) never caches it, so each
        # start compiled numpy, scipy and scikit-learn again: 4.2 s vs 1.6 s for
        # `import sklearn.linear_model` on this machine (issue 16: deploy -> first 200).
        _run_uv([uv, "pip", "install", "--compile-bytecode", "--python", str(interpreter), *requirements], emit,
                cwd=tmp.parent, stop=stop)
    site_packages = _site_packages(tmp)
    shim = tmp / _RUNTIME_DIR
    shim.mkdir()
    (shim / "airflow_aml").symlink_to(package_dir() / "airflow_aml", target_is_directory=True)
    # The .pth names the FINAL location: it is read after the rename.
    (site_packages / "_airflow_aml_runtime.pth").write_text(f"{final / _RUNTIME_DIR}\n")
    # Smoke test, with the shim path added by hand (the .pth names the final folder, not there yet).
    # A warning, not an error: a user pin that breaks the runtime (pydantic<2) only matters to
    # scripts that call Run.get_context(), and those fail with this message in the log to explain.
    # The modules Run.get_context() reaches: the runtime imports the rest lazily.
    imports = "import airflow_aml.runtime.run, airflow_aml.workspace, airflow_aml.store.sql.store"
    probe = subprocess.run(
        [str(interpreter), "-c", f"import sys; sys.path.append({str(shim)!r}); {imports}"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp,  # not the caller's folder, which may hold an airflow_aml checkout
    )
    if probe.returncode != 0:
        emit("WARNING: airflow_aml.runtime cannot be imported in this environment, so Run.get_context() "
             "will fail in it:\n" + _tail(probe.stderr.splitlines()))


def _run_uv(cmd: list[str], emit: LogFn, *, cwd: Path, stop: threading.Event | None = None) -> None:
    emit("$ " + " ".join(cmd))
    tail: collections.deque[str] = collections.deque(maxlen=_OUTPUT_TAIL_LINES)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env.setdefault("UV_NO_PROGRESS", "1")  # no spinners in a log
    # Own process group: a cancel must stop uv and the build backends it starts.
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, errors="replace", start_new_session=True,
    )
    finished = threading.Event()

    def kill_on_stop() -> None:
        # A watcher, not a signal handler raising into the reading loop: the loop blocks in
        # readline, and an asynchronous exception could strike while a lock is held.
        while stop is not None and not finished.wait(0.2):
            if stop.is_set():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                return

    watcher = threading.Thread(target=kill_on_stop, name="aml-uv-watch", daemon=True)
    watcher.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            emit(line)
        code = proc.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        finished.set()
        watcher.join()
        if proc.stdout is not None:
            proc.stdout.close()
    if stop is not None and stop.is_set():
        raise EnvironmentBuildError("Building the environment was stopped: the run was canceled")
    if code != 0:
        raise EnvironmentBuildError(
            f"Building the environment failed: '{' '.join(cmd[:3])} ...' exited with code {code}:\n{_tail(tail)}"
        )


@contextlib.contextmanager
def _exclusive_lock(path: Path, emit: LogFn, stop: threading.Event | None = None) -> Iterator[None]:
    with open(path, "a+b") as handle:
        waiting = False
        while True:  # polled rather than blocking, so that a cancel is noticed while waiting
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waiting:
                    emit("Waiting for another process that builds the same environment")
                    waiting = True
                if stop is not None and stop.is_set():
                    raise EnvironmentBuildError(
                        "Waiting for the environment was stopped: the run was canceled"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_complete(env_dir: Path) -> bool:
    return (env_dir / _MARKER).is_file() and (env_dir / "bin" / "python").exists()


def _site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python*/site-packages"))
    if not found:
        raise EnvironmentBuildError(f"No site-packages folder in the new virtualenv {str(venv)!r}")
    return found[0]


def find_uv() -> str:
    if found := shutil.which("uv"):
        return found
    beside = Path(sys.executable).parent / "uv"
    if beside.exists():
        return str(beside)
    try:
        import uv  # type: ignore[import-not-found]

        return str(uv.find_uv_bin())
    except (ImportError, FileNotFoundError):
        raise EnvironmentBuildError(
            "uv is needed to build virtualenv environments but was not found on PATH; install it "
            "(pip install uv)"
        ) from None


def package_dir() -> Path:
    """The folder that contains the ``airflow_aml`` package this process runs."""
    return Path(airflow_aml.__file__).resolve().parent.parent


def _installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _tail(lines: Any) -> str:
    return "\n".join(list(lines)[-_OUTPUT_TAIL_LINES:])
