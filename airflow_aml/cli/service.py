"""``airflow-aml service``: the workspace service on uvicorn, standalone.

uvicorn's worker processes each import the app anew, so the app is built by a factory
(``airflow_aml.service.app:app_from_environment``) that reads the store URI from
``$AML_SERVICE_STORE_URI``, set here before uvicorn starts.

Without ``--ssl-certfile`` the service speaks plain HTTP: bearer tokens cross the wire as they
are. So it then binds to loopback unless ``--allow-remote`` says that a TLS-terminating proxy
stands in front of it.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated

import typer

from airflow_aml.cli._common import info, redact, state
from airflow_aml.exceptions import ValidationError

FACTORY = "airflow_aml.service.app:app_from_environment"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _service_store_uri(store_uri: str | None) -> str:
    """The SQL store the service owns: --store-uri, else the CLI's store ($AML_STORE_URI or the
    embedded SQLite under $AML_HOME). Opened here once, so that the schema is migrated before the
    workers start (several workers would otherwise race to migrate one SQLite file)."""
    from airflow_aml import config
    from airflow_aml.store import get_store
    from airflow_aml.store.sql.store import SqlStore

    uri = config.absolute_store_uri(store_uri) if store_uri else state().store_uri
    if uri.split(":", 1)[0].lower() in ("http", "https"):
        raise ValidationError(
            f"The workspace service serves a SQL database (sqlite:// or postgresql://), not another service "
            f"({redact(uri)}): pass --store-uri with the database's URI"
        )
    store = get_store(uri)
    if not isinstance(store, SqlStore):
        raise ValidationError(f"The workspace service serves a SQL store, not {redact(uri)!r}")
    return uri


def service(
    host: Annotated[str, typer.Option("--host", metavar="HOST", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="PORT", min=1, max=65535, help="Port to listen on.")] = 8765,
    workers: Annotated[
        int, typer.Option("--workers", metavar="N", min=1, max=64, help="uvicorn worker processes.")
    ] = 1,
    store_uri: Annotated[
        str | None,
        typer.Option(
            "--store-uri",
            metavar="URI",
            help="The SQL database to serve (default: $AML_STORE_URI, else the SQLite under $AML_HOME).",
        ),
    ] = None,
    allow_remote: Annotated[
        bool,
        typer.Option("--allow-remote", help="Listen on a non-loopback address (put a TLS proxy in front)."),
    ] = False,
    log_level: Annotated[str, typer.Option("--log-level", metavar="LEVEL", help="uvicorn's log level.")] = "info",
    ssl_certfile: Annotated[
        Path | None,
        typer.Option("--ssl-certfile", metavar="PEM", exists=True, dir_okay=False,
                     help="Serve HTTPS with this certificate (chain) file."),
    ] = None,
    ssl_keyfile: Annotated[
        Path | None,
        typer.Option("--ssl-keyfile", metavar="PEM", exists=True, dir_okay=False,
                     help="The certificate's private key (default: in the certificate file)."),
    ] = None,
) -> None:
    """Serve the workspace over HTTP (REST API under /api/v1, OpenAPI at /openapi.json)."""
    import uvicorn

    from airflow_aml.service.app import ENV_SERVICE_STORE_URI

    if ssl_keyfile is not None and ssl_certfile is None:
        raise ValidationError("--ssl-keyfile needs --ssl-certfile")
    tls = ssl_certfile is not None
    if not is_loopback(host) and not allow_remote and not tls:
        raise ValidationError(
            f"Refusing to listen on {host!r}: without --ssl-certfile the service speaks plain HTTP and tokens "
            "would cross the network in clear. Pass --ssl-certfile (and --ssl-keyfile), or serve it behind a "
            "TLS-terminating proxy and pass --allow-remote"
        )
    uri = _service_store_uri(store_uri)
    os.environ[ENV_SERVICE_STORE_URI] = uri  # read by the factory in every worker
    shown_host = f"[{host}]" if ":" in host else host
    plural = "s" if workers != 1 else ""
    scheme = "https" if tls else "http"
    typer.echo(f"Workspace service on {scheme}://{shown_host}:{port} ({workers} worker{plural}), store {redact(uri)}")
    if not is_loopback(host) and not tls:
        info(
            "Warning: a shared workspace must be reached over TLS only (a reverse proxy in front of this port); "
            "keep the database and secret.key readable only by the service's user."
        )
    uvicorn.run(
        FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        lifespan="off",
        server_header=False,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
    )
