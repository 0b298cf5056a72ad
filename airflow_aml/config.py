"""Where the embedded default keeps its files, and which settings come from the environment.

Everything lives under one folder, ``$AML_HOME`` (default ``$AIRFLOW_HOME/aml``, else
``~/airflow/aml``): the SQLite metadata store, local datastores, run working folders, cached
environments, and the key that encrypts secrets.
"""

from __future__ import annotations

import getpass
import os
import re
import secrets
from pathlib import Path

ENV_HOME = "AML_HOME"
ENV_STORE_URI = "AML_STORE_URI"
ENV_SECRET_KEY = "AML_SECRET_KEY"
ENV_PRINCIPAL = "AML_PRINCIPAL"
# What a compute target puts in a script's environment so that ``Run.get_context()`` finds its run
# (with ENV_STORE_URI, ENV_PRINCIPAL and ENV_HOME above). One spelling for launchers and runtime.
ENV_RUN_ID = "AML_RUN_ID"
ENV_WORKSPACE = "AML_WORKSPACE"
ENV_PARENT_RUN_ID = "AML_PARENT_RUN_ID"  # set on a sweep's child processes, for scripts that want it
# Tokens of the workspace service: a personal access token, and the run token a compute target
# hands a run's processes (scoped to that run; see airflow_aml/service/access.py).
ENV_TOKEN = "AML_TOKEN"
ENV_RUN_TOKEN = "AML_RUN_TOKEN"

# Who a process acts as, and for which run: never inherited by a process started for someone else.
# The tokens are in it too: a run's processes get a run token of their own, never the submitter's
# personal token, and a run token must not outlive its run in a process started for another one.
IDENTITY_VARIABLES = (ENV_RUN_ID, ENV_WORKSPACE, ENV_STORE_URI, ENV_PRINCIPAL, ENV_HOME, ENV_PARENT_RUN_ID,
                      ENV_TOKEN, ENV_RUN_TOKEN)

# The MLflow tracking API of a workspace on the service (airflow_aml.service.mlflow serves it), and
# what a run launched on a served workspace gets so that the mlflow client logs into that run.
MLFLOW_API_PATH = "/api/v1/workspaces/{workspace}/mlflow"
MLFLOW_RUN_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME")


def mlflow_environment(service_url: str, *, workspace: str, experiment: str, run_id: str,
                       run_token: str) -> dict[str, str]:
    """``mlflow.start_run()`` in the run's script then resumes our run, with the run token."""
    from urllib.parse import quote

    uri = service_url.rstrip("/") + MLFLOW_API_PATH.format(workspace=quote(workspace, safe=""))
    values = (uri, run_token, run_id, experiment)
    return dict(zip(MLFLOW_RUN_VARIABLES, values, strict=True))


_RESOLVED_HOMES: dict[str, Path] = {}


ENV_RUN_HEARTBEAT = "AML_RUN_HEARTBEAT_SECONDS"
ENV_RUN_LOST_AFTER = "AML_RUN_LOST_AFTER_SECONDS"
DEFAULT_RUN_HEARTBEAT_SECONDS = 10.0
# Nine missed beats: a supervisor is its own process (a busy training script does not delay its
# beats), so only a dead or frozen one, or a store unreachable that long, goes this quiet.
DEFAULT_RUN_LOST_AFTER_SECONDS = 90.0


def _positive_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"${name} must be a number of seconds, not {raw!r}") from None
    if not value > 0:
        raise ValueError(f"${name} must be > 0, not {raw!r}")
    return value


def run_heartbeat_seconds() -> float:
    """How often a run's supervisor stamps its heartbeat (``$AML_RUN_HEARTBEAT_SECONDS``)."""
    return _positive_seconds(ENV_RUN_HEARTBEAT, DEFAULT_RUN_HEARTBEAT_SECONDS)


def run_lost_after_seconds() -> float:
    """How long a run's heartbeat may be silent before the run has lost its compute
    (``$AML_RUN_LOST_AFTER_SECONDS``)."""
    return _positive_seconds(ENV_RUN_LOST_AFTER, DEFAULT_RUN_LOST_AFTER_SECONDS)


def aml_home() -> Path:
    """The absolute home folder. A relative ``$AML_HOME`` (``AML_HOME=.demo/aml``) is resolved once,
    against the working folder of the first call: detached workers start in folders of their own
    and are handed this absolute path, so they never resolve it a second time elsewhere."""
    value = os.environ.get(ENV_HOME)
    if not value:
        airflow_home = os.environ.get("AIRFLOW_HOME") or os.path.join("~", "airflow")
        value = os.path.join(airflow_home, "aml")
    resolved = _RESOLVED_HOMES.get(value)
    if resolved is None:
        resolved = _RESOLVED_HOMES[value] = Path(os.path.abspath(os.path.expanduser(value)))
    return resolved


def default_store_uri() -> str:
    if value := os.environ.get(ENV_STORE_URI):
        return absolute_store_uri(value)
    return f"sqlite:///{aml_home() / 'aml.db'}"


def absolute_store_uri(uri: str) -> str:
    """``uri`` with a relative SQLite file made absolute (``sqlite:///.demo/aml.db``): the URI is
    handed to detached workers that run in folders of their own."""
    scheme, sep, rest = uri.partition(":///")
    if not sep or not scheme.lower().startswith("sqlite") or not rest or rest.startswith(("/", ":memory:")):
        return uri
    path, query_sep, query = rest.partition("?")
    return f"{scheme}:///{os.path.abspath(os.path.expanduser(path))}{query_sep}{query}"


def default_datastore_root(workspace: str, datastore: str = "workspaceblobstore") -> Path:
    return aml_home() / "datastores" / workspace / datastore


def current_principal() -> str:
    """Who is acting: ``$AML_PRINCIPAL`` (set by compute targets and the API later), else the OS user."""
    if value := os.environ.get(ENV_PRINCIPAL):
        return value
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # containers without a passwd entry for the uid
        return f"uid-{os.getuid()}"


def secret_key() -> bytes:
    """The Fernet key that encrypts workspace secrets.

    ``$AML_SECRET_KEY`` when set (what a multi-machine deployment must do: every machine needs the
    same key); otherwise a key generated once into ``$AML_HOME/secret.key`` with mode 0600.
    """
    if value := os.environ.get(ENV_SECRET_KEY):
        return value.encode()
    path = aml_home() / "secret.key"
    if not path.exists():
        from cryptography.fernet import Fernet

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".secret.key.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key())
        try:
            # Link, not rename: if another process created the key meanwhile, keep theirs.
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes().strip()


_URI_PASSWORD = re.compile(r"(://[^\s:/@'\"]*:)[^\s'\"]+@")
# Tokens of the workspace service (aml_pat_..., aml_run_...), wherever they appear.
_SERVICE_TOKEN = re.compile(r"\b(aml_(?:pat|run)_)[A-Za-z0-9_-]+")


def redact(text: str) -> str:
    """Hide the passwords of URIs anywhere in ``text`` (``postgresql://u:secret@h`` -> ``u:***@h``)."""
    return _SERVICE_TOKEN.sub(r"\1***", _URI_PASSWORD.sub(r"\1***@", text))
