"""DockerImageBuilder: the generated Dockerfile and build context (no engine), then real builds.

The engine tests need a Docker engine and the registry-less base image; ``source
scripts/docker-service.sh`` (as root) provides both. Without them the tests FAIL under CI=true or
AML_TEST_DOCKER=1 and are skipped (with the reason) elsewhere.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
import types
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_aml.exceptions import DockerImageError, ImageBuildError, ValidationError
from airflow_aml.images import docker as docker_builder
from airflow_aml.images.builders import BuildResult, build_image_builder
from airflow_aml.images.docker import (
    BaseImageMissingError,
    DockerBuildError,
    DockerBuildOptions,
    DockerEngineUnavailableError,
    DockerImageBuilder,
    docker_api_client,
    image_reference,
    prepare_context,
    remove_image,
)
from airflow_aml.images.docker.context import _write_context_tar
from tests.unit.docker_engine import engine_or_fail

HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]  # a setosa: class 0


# ------------------------------------------------------------------------------------ helpers


def make_bundle(
    root: Path,
    *,
    name: str = "iris-svc",
    version: int = 1,
    c: float = 1.0,
    requirements: str = "",
    python: str | None = "3.11",
    extra_manifest: dict[str, Any] | None = None,
) -> Path:
    """A bundle as the image registry writes it: a pickled LogisticRegression served by the
    built-in sklearn scorer. ``c`` changes the model file and nothing else."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    bundle = root / f"bundle-{name}-{version}-{c}"
    model_dir = bundle / "models" / "iris" / "1"
    model_dir.mkdir(parents=True)
    (bundle / "app").mkdir()
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(C=c, max_iter=1000).fit(x, y)
    (model_dir / "model.pkl").write_bytes(pickle.dumps(model))
    manifest = {
        "name": name,
        "version": version,
        "entry_script": None,
        "builtin_scorer": "sklearn",
        "models": [{"name": "iris", "version": 1, "path": "models/iris/1"}],
        "input_schema": None,
        "output_schema": None,
        "requirements": [line for line in requirements.splitlines() if line.strip()],
        "python": python,
        **(extra_manifest or {}),
    }
    (bundle / "image.json").write_text(json.dumps(manifest, indent=2))
    (bundle / "requirements.txt").write_text(requirements)
    return bundle


def record(name: str = "iris-svc", version: int = 1, *, workspace: str = "ws", **kw: Any) -> SimpleNamespace:
    """The fields of an ImageRecord the builder reads."""
    return SimpleNamespace(workspace=workspace, name=name, version=version, digest=kw.pop("digest", None), **kw)


def step_block(log: list[str], marker: str) -> list[str]:
    """The log lines of the Dockerfile step whose instruction contains ``marker``."""
    for index, line in enumerate(log):
        if line.startswith("Step ") and marker in line:
            block = [line]
            for following in log[index + 1:]:
                if following.startswith("Step "):
                    break
                block.append(following)
            return block
    raise AssertionError(f"no step with {marker!r} in the build log")


def package_digest() -> str:
    """What the package layer is built from (the tree may be edited while the tests run)."""
    import hashlib

    import airflow_aml

    root = Path(airflow_aml.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_in_image(api: Any, image: str, command: list[str], *, user: str | None = None) -> tuple[int, str]:
    """Run ``command`` in a throw-away container without network; (exit code, output)."""
    container = api.create_container(
        image, command=command, user=user or "", host_config=api.create_host_config(network_mode="none")
    )
    try:
        api.start(container)
        code = api.wait(container, timeout=120)["StatusCode"]
        return code, api.logs(container).decode(errors="replace")
    finally:
        api.remove_container(container, force=True)


# ------------------------------------------------------------------------ context (no engine)


@pytest.fixture
def sk_bundle(tmp_path: Path) -> Path:
    return make_bundle(tmp_path)


def _context(bundle: Path, tmp_path: Path, **options: Any) -> docker_builder.BuildContext:
    return prepare_context(bundle, DockerBuildOptions(**options), tmp_path / "ctx", record=record())


def test_dockerfile_layers_go_from_stable_to_volatile(sk_bundle: Path, tmp_path: Path) -> None:
    ctx = _context(sk_bundle, tmp_path, extra_ca_bundle=HOST_CA if HOST_CA.is_file() else None)
    text = ctx.dockerfile
    order = [
        "FROM local/python-base:bookworm",
        "venv.create('/opt/aml/venv'",
        "COPY bundle/requirements.txt",
        "RUN pip install -r /var/aml/bundle/requirements.txt -r /opt/aml/runtime-requirements.txt",
        "COPY aml/src/ /opt/aml/src/",
        "COPY bundle/app/ /var/aml/bundle/app/",
        "COPY bundle/meta/ /var/aml/bundle/",
        "COPY bundle/models/ /var/aml/bundle/models/",
        "CMD exec python -m airflow_aml.runtime.scoring --bundle /var/aml/bundle",
        "LABEL ",
    ]
    positions = [text.index(marker) for marker in order]
    assert positions == sorted(positions), text
    if HOST_CA.is_file():
        assert text.index("COPY aml/certs/extra-ca.pem") < text.index("COPY bundle/requirements.txt")
    assert "ENV AML_BUNDLE_DIR=/var/aml/bundle" in text
    assert "PYTHONPATH=/opt/aml/src" in text
    assert '--port "${AML_PORT:-5001}"' in text and '--host "${AML_HOST:-127.0.0.1}"' in text
    assert "USER 10001:10001" in text
    # The context holds what the Dockerfile copies, and image.json sits alone in its layer.
    assert (ctx.path / "Dockerfile").read_text() == text
    assert sorted(p.name for p in (ctx.path / "bundle" / "meta").iterdir()) == ["image.json"]
    assert (ctx.path / "bundle" / "models" / "iris" / "1" / "model.pkl").is_file()
    assert ctx.tag == "aml/iris-svc:1"


def test_ca_bundle_and_index_settings_only_when_set(sk_bundle: Path, tmp_path: Path) -> None:
    plain = prepare_context(sk_bundle, DockerBuildOptions(), tmp_path / "plain")
    for absent in ("PIP_CERT", "extra-ca.pem", "ARG PIP_INDEX_URL", "ARG PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST"):
        assert absent not in plain.dockerfile
    assert plain.buildargs == {}
    assert not (plain.path / "aml" / "certs").exists()

    ca = tmp_path / "corp-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    index = "https://user:s3cret@pypi.corp.example/simple"
    options = DockerBuildOptions(
        extra_ca_bundle=ca,
        pip_index_url=index,
        pip_extra_index_urls=["https://a.example/simple", "https://b.example/simple"],
        pip_trusted_hosts=["pypi.corp.example"],
    )
    ctx = prepare_context(sk_bundle, options, tmp_path / "set")
    text = ctx.dockerfile
    assert "COPY aml/certs/extra-ca.pem /opt/aml/certs/extra-ca.pem" in text
    assert "PIP_CERT=/opt/aml/certs/ca-bundle.pem" in text
    assert (ctx.path / "aml" / "certs" / "extra-ca.pem").read_text() == ca.read_text()
    for arg in ("ARG PIP_INDEX_URL", "ARG PIP_EXTRA_INDEX_URL", "ARG PIP_TRUSTED_HOST"):
        assert text.index(arg) < text.index("RUN pip install")
    assert ctx.buildargs == {
        "PIP_INDEX_URL": index,
        "PIP_EXTRA_INDEX_URL": "https://a.example/simple https://b.example/simple",
        "PIP_TRUSTED_HOST": "pypi.corp.example",
    }
    # Index URLs may carry credentials: they are build arguments, never written into the context.
    for path in ctx.path.rglob("*"):
        if path.is_file() and path.suffix in ("", ".txt", ".json"):
            assert "s3cret" not in path.read_text(errors="replace"), path

    with pytest.raises(ValidationError, match="extra_ca_bundle"):
        prepare_context(sk_bundle, DockerBuildOptions(extra_ca_bundle=tmp_path / "missing.pem"), tmp_path / "bad")


def test_labels_name_the_record_and_the_bundle(sk_bundle: Path, tmp_path: Path) -> None:
    # The bundle's image.json names the first image version with that content; the record wins.
    rec = record("iris-svc", 7, workspace="team-a", digest="abc123")
    options = DockerBuildOptions(labels={"com.example.owner": 'ml "team" $HOME'})
    ctx = prepare_context(sk_bundle, options, tmp_path / "ctx", record=rec)
    assert ctx.tag == "aml/iris-svc:7"
    assert ctx.labels["airflow-aml.workspace"] == "team-a"
    assert ctx.labels["airflow-aml.name"] == "iris-svc"
    assert ctx.labels["airflow-aml.version"] == "7"
    assert ctx.labels["airflow-aml.bundle-digest"] == "abc123"
    assert ctx.labels["airflow-aml.models"] == "iris:1"
    assert ctx.labels["airflow-aml.builder"] == "docker"
    assert '"airflow-aml.workspace"="team-a"' in ctx.dockerfile
    # Quotes and $ are escaped: the label reaches the image as written.
    assert '"com.example.owner"="ml \\"team\\" \\$HOME"' in ctx.dockerfile
    baked = json.loads((ctx.path / "bundle" / "meta" / "image.json").read_text())
    assert (baked["name"], baked["version"]) == ("iris-svc", 7)

    # Without a record: identity from image.json, digest computed from the bundle.
    from airflow_aml.images.bundle import bundle_digest

    bare = prepare_context(sk_bundle, DockerBuildOptions(), tmp_path / "bare")
    assert bare.labels["airflow-aml.bundle-digest"] == bundle_digest(sk_bundle)
    assert "airflow-aml.workspace" not in bare.labels

    with pytest.raises(ValueError, match="one line"):
        DockerBuildOptions(labels={"a": "two\nlines"})
    with pytest.raises(ValueError, match="label key"):
        DockerBuildOptions(labels={"bad key": "x"})
    with pytest.raises(ValueError, match="one word"):
        DockerBuildOptions(base_image="python:3.11\nRUN rm -rf /")
    with pytest.raises(ValueError, match="one word"):
        DockerBuildOptions(pip_extra_index_urls=["https://a/simple https://b/simple"])


def test_no_airflow_in_the_build_context(tmp_path: Path) -> None:
    bundle = make_bundle(
        tmp_path,
        requirements="requests>=2\napache-airflow==3.1.0\napache_airflow.providers-docker\nairflow-aml\n",
    )
    logged: list[str] = []
    ctx = prepare_context(bundle, DockerBuildOptions(), tmp_path / "ctx", record=record(), log=logged.append)
    assert ctx.dropped_requirements == ["apache-airflow==3.1.0", "apache_airflow.providers-docker", "airflow-aml"]
    assert any("apache-airflow==3.1.0" in line and "without Airflow" in line for line in logged)
    assert (ctx.path / "bundle" / "requirements.txt").read_text() == "requests>=2\n"
    for req_file in (ctx.path / "bundle" / "requirements.txt", ctx.path / "aml" / "runtime-requirements.txt"):
        for line in req_file.read_text().splitlines():
            assert "airflow" not in line.lower(), (req_file, line)
    runtime = (ctx.path / "aml" / "runtime-requirements.txt").read_text()
    for dist in ("fastapi", "uvicorn", "pydantic", "scikit-learn", "numpy"):
        assert f"\n{dist}" in f"\n{runtime}", runtime
    # The scikit-learn that unpickles the model is the one that pickled it.
    import sklearn

    assert f"scikit-learn=={sklearn.__version__}" in runtime
    # Only our package goes in, as files: no Airflow package, no bytecode.
    src = ctx.path / "aml" / "src"
    assert [p.name for p in src.iterdir()] == ["airflow_aml"]
    assert (src / "airflow_aml" / "runtime" / "__init__.py").is_file()
    assert not list(src.rglob("__pycache__")) and not list(src.rglob("*.pyc"))
    assert not [p for p in ctx.path.rglob("*") if p.is_dir() and p.name == "airflow"]
    assert not list(ctx.path.rglob("apache_airflow*"))


def test_copied_runtime_imports_without_airflow(sk_bundle: Path, tmp_path: Path) -> None:
    """The package copied into the context serves without Airflow: any import of it fails here."""
    ctx = prepare_context(sk_bundle, DockerBuildOptions(), tmp_path / "ctx")
    src = ctx.path / "aml" / "src"
    modules = ["airflow_aml.runtime", "airflow_aml.runtime.model"]
    if (src / "airflow_aml" / "runtime" / "scoring" / "__main__.py").is_file():
        modules += ["airflow_aml.runtime.scoring", "airflow_aml.runtime.scoring.__main__"]
    script = textwrap.dedent(f"""
        import importlib, sys
        class NoAirflow:
            def find_spec(self, name, path=None, target=None):
                if name == "airflow" or name.startswith("airflow."):
                    raise ImportError("Airflow is not in the image: " + name)
        sys.meta_path.insert(0, NoAirflow())
        for name in {modules!r}:
            module = importlib.import_module(name)
            assert module.__file__.startswith({str(src)!r}), module.__file__
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # The same check runs inside the image, as a build step after the package layer.
    assert "RUN [\"python\", \"-c\", \"import importlib" in ctx.dockerfile
    assert "apache-airflow is installed in the image" in ctx.dockerfile


def test_image_reference_template() -> None:
    assert image_reference("aml/{name}:{version}", name="Iris_Model", version=3) == "aml/iris_model:3"
    assert image_reference("reg.example:5000/{workspace}/{name}:v{version}", name="a b", version=1,
                           workspace="Team A") == "reg.example:5000/team-a/a-b:v1"
    with pytest.raises(ValidationError, match="template"):
        image_reference("aml/{nope}:1", name="x", version=1)
    with pytest.raises(ValidationError, match="not a valid Docker image reference"):
        image_reference("AML/{name}:{version}", name="x", version=1)


def test_record_spec_base_image_wins(sk_bundle: Path, tmp_path: Path) -> None:
    rec = record(spec={"base_image": "python:3.11-slim"})
    ctx = prepare_context(sk_bundle, DockerBuildOptions(), tmp_path / "ctx", record=rec)
    assert ctx.base_image == "python:3.11-slim"
    assert ctx.dockerfile.count("FROM python:3.11-slim\n") == 1


def test_context_tar_is_world_readable_and_root_owned(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "d").mkdir(parents=True)
    secret = ctx / "d" / "model.bin"
    secret.write_bytes(b"x" * 10)
    secret.chmod(0o600)
    script = ctx / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o700)
    tar_path = tmp_path / "ctx.tar"
    _write_context_tar(ctx, tar_path)
    with tarfile.open(tar_path) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["d"].isdir() and members["d"].mode == 0o755
    assert members["d/model.bin"].mode == 0o644 and members["d/model.bin"].size == 10
    assert members["run.sh"].mode == 0o755
    assert {m.uid for m in members.values()} == {0}
    assert secret.stat().st_mode & 0o777 == 0o600  # the bundle itself is left alone


def test_options_from_env(tmp_path: Path) -> None:
    options = DockerBuildOptions.from_env({
        "AML_DOCKER_BASE_IMAGE": "python:3.11-slim",
        "AML_DOCKER_CA_BUNDLE": str(tmp_path / "ca.pem"),
        "AML_DOCKER_PIP_INDEX_URL": "https://mirror/simple",
        "AML_DOCKER_PIP_EXTRA_INDEX_URLS": "https://a/simple, https://b/simple",
        "AML_DOCKER_NETWORK": "default",
        "AML_DOCKER_BUILD_TIMEOUT": "60",
        "AML_DOCKER_USER": "root",
        "PIP_CERT": "/ignored/when/AML_DOCKER_CA_BUNDLE/is/set.pem",
    }, tag="x/{name}:{version}")
    assert options.base_image == "python:3.11-slim"
    assert options.extra_ca_bundle == tmp_path / "ca.pem"
    assert options.pip_index_url == "https://mirror/simple"
    assert options.pip_extra_index_urls == ["https://a/simple", "https://b/simple"]
    assert options.network_mode is None and options.build_timeout == 60 and options.tag == "x/{name}:{version}"
    assert options.user is None

    defaults = DockerBuildOptions.from_env({})
    assert defaults == DockerBuildOptions() and defaults.network_mode == "host" and defaults.user == "10001:10001"
    # pip in the image trusts and uses what pip on this machine does, unless told otherwise.
    host_pip = {"PIP_CERT": "/etc/corp-ca.pem", "PIP_INDEX_URL": "https://corp/simple", "PIP_TRUSTED_HOST": "corp"}
    inherited = DockerBuildOptions.from_env(host_pip)
    assert inherited.extra_ca_bundle == Path("/etc/corp-ca.pem") and inherited.pip_index_url == "https://corp/simple"
    assert inherited.pip_trusted_hosts == ["corp"]
    off = DockerBuildOptions.from_env({**host_pip, "AML_DOCKER_CA_BUNDLE": "none", "AML_DOCKER_PIP_INDEX_URL": "none"})
    assert off.extra_ca_bundle is None and off.pip_index_url is None


def test_registered_as_the_docker_kind() -> None:
    workspace = SimpleNamespace(name="ws")
    builder = build_image_builder("docker", workspace)
    assert isinstance(builder, DockerImageBuilder)
    assert builder.workspace is workspace
    assert builder.options.base_image == docker_builder.DEFAULT_BASE_IMAGE


def test_unreachable_engine_is_a_clear_error(tmp_path: Path) -> None:
    options = DockerBuildOptions(docker_url=f"unix://{tmp_path}/no-docker.sock")
    expected = r"Docker engine not reachable at unix://.*no-docker\.sock.*start dockerd"
    with pytest.raises(DockerEngineUnavailableError, match=expected):
        docker_api_client(options, timeout=5)
    with pytest.raises(ImageBuildError):  # what the image registry records as the failure
        DockerImageBuilder(None, options).build(make_bundle(tmp_path), record(), lambda f, m: None, lambda line: None)


def test_provider_hook_only_for_a_configured_connection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def no_hook(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("DockerHook used without a docker_conn_id")

    module = types.ModuleType("airflow.providers.docker.hooks.docker")
    module.DockerHook = no_hook  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "airflow.providers.docker.hooks.docker", module)
    with pytest.raises(DockerEngineUnavailableError):  # the SDK tried the socket, not the hook
        docker_api_client(DockerBuildOptions(docker_url=f"unix://{tmp_path}/no-docker.sock"), timeout=5)
    module.DockerHook = None  # type: ignore[attr-defined]  # as if the provider were missing
    with pytest.raises(DockerImageError, match=r"docker_conn_id 'registry' needs the Airflow Docker provider"):
        docker_api_client(DockerBuildOptions(docker_conn_id="registry"), timeout=5)


def test_provider_hook_is_used_for_a_docker_conn_id(monkeypatch: pytest.MonkeyPatch) -> None:
    created: dict[str, Any] = {}

    class FakeHook:
        def __init__(self, docker_conn_id: str | None, base_url: str, timeout: int) -> None:
            created.update(conn_id=docker_conn_id, base_url=base_url, timeout=timeout)
            self.api_client = "hook-client"

    module = types.ModuleType("airflow.providers.docker.hooks.docker")
    module.DockerHook = FakeHook  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "airflow.providers.docker.hooks.docker", module)
    options = DockerBuildOptions(docker_url="tcp://docker.example:2376", docker_conn_id="registry")
    assert docker_api_client(options, timeout=7) == "hook-client"
    assert created == {"conn_id": "registry", "base_url": "tcp://docker.example:2376", "timeout": 7}


class _FakeApi:
    def __init__(self, chunks: list[dict[str, Any]]) -> None:
        self.chunks = chunks
        self.kwargs: dict[str, Any] = {}
        self.removed: list[str] = []

    def build(self, **kwargs: Any) -> list[dict[str, Any]]:
        self.kwargs = kwargs
        return self.chunks

    def remove_image(self, image: str, noprune: bool = False) -> None:
        assert noprune  # only the layers the failed build made, not their cached parents
        self.removed.append(image)


def test_build_stream_progress_log_and_failure(sk_bundle: Path, tmp_path: Path) -> None:
    ctx = prepare_context(sk_bundle, DockerBuildOptions(pip_index_url="https://m/simple"), tmp_path / "ctx")
    tar_path = tmp_path / "ctx.tar"
    _write_context_tar(ctx.path, tar_path)
    builder = DockerImageBuilder(None, DockerBuildOptions(pip_index_url="https://m/simple"))
    ok = [
        {"stream": "Step 1/4 : FROM base\n"}, {"stream": " ---> abc\n"},
        {"stream": "Step 2/4 : RUN pip"}, {"stream": " install x\n ---> Using cache\n"},  # split line
        {"stream": "Step 3/4 : COPY a b\n"}, {"stream": "Step 4/4 : LABEL x=y\n"},
        {"aux": {"ID": "sha256:feed"}}, {"stream": "Successfully built feed\n"},
    ]
    events: list[tuple[float, str]] = []
    lines: list[str] = []
    api = _FakeApi(ok)
    assert builder._run_build(api, ctx, tar_path, lambda f, m: events.append((f, m)), lines.append) == "sha256:feed"
    assert lines[:4] == ["Step 1/4 : FROM base", " ---> abc", "Step 2/4 : RUN pip install x", " ---> Using cache"]
    fractions = [f for f, _ in events]
    assert fractions == sorted(fractions) and len(fractions) == 4 and 0 < fractions[0] < fractions[-1] < 1
    assert events[1][1].startswith("Step 2/4: RUN pip install x")
    assert api.kwargs["network_mode"] == "host" and api.kwargs["buildargs"] == {"PIP_INDEX_URL": "https://m/simple"}
    assert api.kwargs["tag"] == ctx.tag and api.kwargs["pull"] is False

    failing = [
        {"stream": "Step 1/5 : FROM base\n"}, {"stream": " ---> 0123456789ab\n"},
        {"stream": "Step 2/5 : COPY ca /ca\n"}, {"stream": " ---> Using cache\n ---> aaaaaaaaaaaa\n"},
        {"stream": "Step 3/5 : COPY req /req\n"}, {"stream": " ---> bbbbbbbbbbbb\n"},
        {"stream": "Step 4/5 : RUN pip install nope\n"}, {"stream": " ---> Running in cccccccccccc\n"},
        {"stream": "ERROR: No matching distribution found for nope\n"},
        {"errorDetail": {"code": 1, "message": "The command '/bin/sh -c pip install nope' returned a non-zero code: 1"},
         "error": "The command ... returned a non-zero code: 1"},
    ]
    api = _FakeApi(failing)
    with pytest.raises(DockerBuildError) as info:
        builder._run_build(api, ctx, tar_path, lambda f, m: None, lambda line: None)
    assert api.removed == ["bbbbbbbbbbbb"]  # the base and the cached layer stay
    message = str(info.value)
    assert "failed at Step 4/5 : RUN pip install nope" in message
    assert "returned a non-zero code: 1" in message
    assert "No matching distribution found for nope" in message
    assert "bbbbbbbbbbbb" not in message  # only the failing step's lines
    assert info.value.step == "Step 4/5 : RUN pip install nope"


# ------------------------------------------------------------------------- real Docker engine



@pytest.fixture(scope="module")
def docker_api() -> Any:
    """The engine (`docker info`) and the base image: FAIL under CI / AML_TEST_DOCKER=1, skip elsewhere."""
    api = engine_or_fail(docker_builder.DEFAULT_BASE_IMAGE)
    yield api
    api.close()


def _test_env_overrides() -> dict[str, Any]:
    """pip in the test images reaches PyPI the way pip on this machine does (CA bundle, index)."""
    overrides: dict[str, Any] = {}
    if HOST_CA.is_file() and not (os.environ.get("AML_DOCKER_CA_BUNDLE") or os.environ.get("PIP_CERT")):
        overrides["extra_ca_bundle"] = HOST_CA
    return overrides


@pytest.fixture(scope="module")
def docker_options() -> DockerBuildOptions:
    """Test images get a repository of their own (parallel runs do not collide)."""
    tag = f"aml-test-{uuid.uuid4().hex[:8]}/{{name}}:{{version}}"
    return DockerBuildOptions.from_env(tag=tag, **_test_env_overrides())


class Built(SimpleNamespace):
    result: BuildResult
    log: list[str]
    events: list[tuple[float, str]]
    seconds: float
    package: str  # package_digest() when the build started


def _build(options: DockerBuildOptions, bundle: Path, rec: Any) -> Built:
    log: list[str] = []
    events: list[tuple[float, str]] = []
    package = package_digest()
    started = time.monotonic()
    result = DockerImageBuilder(None, options).build(bundle, rec, lambda f, m: events.append((f, m)), log.append)
    return Built(result=result, log=log, events=events, seconds=time.monotonic() - started, package=package)


@pytest.fixture(scope="module")
def iris_image(docker_api: Any, docker_options: DockerBuildOptions, tmp_path_factory: pytest.TempPathFactory) -> Any:
    bundle = make_bundle(tmp_path_factory.mktemp("iris"))
    built = _build(docker_options, bundle, record("iris-svc", 1, workspace="ws-test"))
    print(f"\nfirst build of {built.result.location}: {built.seconds:.1f} s")
    yield built
    remove_image(built.result.location, force=True)


def serve_and_score(api: Any, image: str, tmp_path: Path) -> tuple[int, dict[str, Any], int]:
    """Run ``image`` on host networking at a free 127.0.0.1 port with key auth; POST /score once
    with the key and once without: (status, body, status without key)."""
    from airflow_aml.runtime.scoring import generate_key, hash_key

    key = generate_key()
    config_dir = tmp_path / "scoring-config"
    config_dir.mkdir()
    (config_dir / "config.json").write_text(json.dumps({"primary_key_hash": hash_key(key)}))
    config_dir.chmod(0o755)  # the container's user (uid 10001) reads it
    port = free_port()
    container = api.create_container(
        image,
        environment={"AML_PORT": str(port), "AML_SCORING_CONFIG": "/etc/aml/config.json"},
        host_config=api.create_host_config(
            network_mode="host", binds={str(config_dir): {"bind": "/etc/aml", "mode": "ro"}}
        ),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        api.start(container)
        deadline = time.monotonic() + 90
        while True:
            state = api.inspect_container(container)["State"]
            assert state["Running"], f"container exited: {api.logs(container).decode(errors='replace')}"
            try:
                with urllib.request.urlopen(f"{base}/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, api.logs(container).decode(errors="replace")
            time.sleep(0.5)

        def score(headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
            request = urllib.request.Request(
                f"{base}/score", data=json.dumps({"data": [IRIS_ROW]}).encode(), method="POST",
                headers={"Content-Type": "application/json", **headers},
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read() or b"{}")

        status, body = score({"Authorization": f"Bearer {key}"})
        return status, body, score({})[0]
    finally:
        api.remove_container(container, force=True)


def test_built_image_runs_the_runtime_without_airflow(docker_api: Any, iris_image: Built) -> None:
    result = iris_image.result
    assert result.location.endswith("/iris-svc:1")
    assert result.digest.startswith("sha256:") and result.properties["docker.image_id"] == result.digest
    info = docker_api.inspect_image(result.location)
    assert info["Id"] == result.digest
    labels = info["Config"]["Labels"]
    assert labels["airflow-aml.workspace"] == "ws-test"
    assert labels["airflow-aml.name"] == "iris-svc" and labels["airflow-aml.version"] == "1"
    assert labels["airflow-aml.bundle-digest"]
    assert info["Config"]["User"] == "10001:10001"
    # The build reported its steps in order and ended at 1.0.
    fractions = [f for f, _ in iris_image.events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(m.startswith("Step ") for _, m in iris_image.events)
    assert any(line.startswith("Runtime imports OK") for line in iris_image.log)

    code, output = run_in_image(docker_api, result.location, [
        "python", "-c",
        "import importlib.metadata as md, importlib.util, os\n"
        "import airflow_aml.runtime, airflow_aml.runtime.model, fastapi, uvicorn, sklearn\n"
        "assert importlib.util.find_spec('airflow') is None, 'airflow importable'\n"
        "dists = sorted(d.metadata['Name'].lower() for d in md.distributions())\n"
        "assert not [d for d in dists if 'airflow' in d], dists\n"
        "from airflow_aml.runtime.model import get_model_path\n"
        "print('uid', os.getuid(), get_model_path('iris'))\n",
    ])
    assert code == 0, output
    assert "uid 10001 /var/aml/bundle/models/iris/1/model.pkl" in output


def test_container_scores_over_http(docker_api: Any, iris_image: Built, tmp_path: Path) -> None:
    status, body, without_key = serve_and_score(docker_api, iris_image.result.location, tmp_path)
    assert status == 200, body
    assert body["predictions"] == [0]
    assert without_key == 401


def test_new_model_rebuilds_only_the_top_layers(
    docker_api: Any, docker_options: DockerBuildOptions, iris_image: Built, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path, c=0.05)  # same requirements, another model file
    built = _build(docker_options, bundle, record("iris-svc", 2, workspace="ws-test"))
    try:
        print(f"\nfirst build {iris_image.seconds:.1f} s, rebuild with a new model {built.seconds:.1f} s")
        assert any("Using cache" in line for line in step_block(built.log, "RUN pip install"))
        if built.package == iris_image.package:  # else someone edited airflow_aml in between
            assert any("Using cache" in line for line in step_block(built.log, "COPY aml/src/"))
        assert not any("Using cache" in line for line in step_block(built.log, "COPY bundle/models/"))
        assert built.result.digest != iris_image.result.digest
        assert built.seconds < iris_image.seconds or built.seconds < 30
    finally:
        remove_image(built.result.location, force=True)
    assert remove_image(built.result.location) is False  # gone


def test_workspace_image_built_by_docker_scores(
    docker_api: Any, iris_image: Built, workspace: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: a registered model, Image.create(builder="docker"), the container serves it."""
    from airflow_aml.images import Image

    model_file = tmp_path / "iris-model" / "model.pkl"
    model_file.parent.mkdir()
    model_file.write_bytes((make_bundle(tmp_path) / "models" / "iris" / "1" / "model.pkl").read_bytes())
    workspace.register_model("iris", path=model_file)
    # The builder is made by the registry as DockerImageBuilder(workspace): options from the environment.
    monkeypatch.setenv("AML_DOCKER_TAG", f"aml-test-{uuid.uuid4().hex[:8]}/{{workspace}}-{{name}}:{{version}}")
    for key, value in _test_env_overrides().items():
        monkeypatch.setenv({"extra_ca_bundle": "AML_DOCKER_CA_BUNDLE"}[key], str(value))
    image = Image.create(workspace, "iris-scorer", {"models": ["iris"], "builtin_scorer": "sklearn"}, builder="docker")
    try:
        assert image.location is not None and image.location.endswith("/ws-iris-scorer:1")
        assert image.properties["docker.image_id"].startswith("sha256:")
        labels = docker_api.inspect_image(image.location)["Config"]["Labels"]
        assert (labels["airflow-aml.workspace"], labels["airflow-aml.name"]) == ("ws", "iris-scorer")
        assert labels["airflow-aml.bundle-digest"] == image.digest
        assert "Step " in image.get_build_log()
        status, body, _ = serve_and_score(docker_api, image.location, tmp_path)
        assert status == 200, body
        assert body["predictions"] == [0]
    finally:
        if image.location:
            remove_image(image.location, force=True)


def test_missing_base_image_is_a_clear_error(
    docker_api: Any, docker_options: DockerBuildOptions, sk_bundle: Path
) -> None:
    missing = docker_options.model_copy(update={"base_image": "local/no-such-base:none"})
    with pytest.raises(BaseImageMissingError, match=r"'local/no-such-base:none'.*docker/build-base-image\.sh"):
        DockerImageBuilder(None, missing).build(sk_bundle, record(), lambda f, m: None, lambda line: None)


def test_failed_step_is_named_with_its_log(
    docker_api: Any, docker_options: DockerBuildOptions, tmp_path: Path
) -> None:
    builder = DockerImageBuilder(None, docker_options)
    # pip refuses the line before it asks any index.
    bad = make_bundle(tmp_path, requirements="this is not a requirement ===\n")
    with pytest.raises(DockerBuildError) as info:
        builder.build(bad, record("bad", 1), lambda f, m: None, lambda line: None)
    message = str(info.value)
    assert "RUN pip install" in (info.value.step or "") and "non-zero code" in message
    assert "Last log lines" in message and "Invalid requirement" in message

    other_python = make_bundle(tmp_path, name="py", python="3.99")
    with pytest.raises(DockerBuildError, match=r"base image has Python 3\.11 but the bundle needs Python 3\.99"):
        builder.build(other_python, record("py", 1), lambda f, m: None, lambda line: None)
