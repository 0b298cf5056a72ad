"""The Docker engine client: how the builder (and the Docker deployment target) reach an engine.

Engine access is in one function, :func:`docker_api_client`: the Airflow Docker provider's
``DockerHook`` when that provider is installed (it adds registry login), else the docker SDK's
``docker.from_env()``. The rest are the few engine calls around a build: the base image check,
removing an image, removing the layers a failed build left.

The docker SDK, ``requests`` and the provider's hook are imported when first needed, not with
this module: ``airflow_aml.images.docker`` is imported to register the builder kind, also where
the ``docker`` extra is not installed.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterable
from importlib import metadata
from typing import TYPE_CHECKING, Any

from airflow_aml.exceptions import BaseImageMissingError, DockerEngineUnavailableError, DockerImageError
from airflow_aml.images.docker.options import DEFAULT_BASE_IMAGE, DockerBuildOptions

if TYPE_CHECKING:
    import docker

    from airflow_aml.images.builders import LogFn as Log

BASE_IMAGE_SCRIPT = "docker/build-base-image.sh"
_HOOK_MODULE = "airflow.providers.docker.hooks.docker"


def docker_api_client(options: DockerBuildOptions | None = None, *, timeout: float = 60) -> docker.APIClient:
    """A connected low-level ``docker.APIClient``.

    The Airflow Docker provider's ``DockerHook`` when a ``docker_conn_id`` is configured (registry
    login from that connection), else the docker SDK from the environment (``DOCKER_HOST`` ...).
    Raises :class:`DockerEngineUnavailableError` when no engine answers.
    """
    options = options or DockerBuildOptions()
    url = engine_url(options)
    try:
        import docker
    except ImportError as exc:
        raise DockerImageError(
            "The docker Python package is not installed: pip install 'airflow-aml[docker]'"
        ) from exc
    import requests

    # The provider's hook only for a configured Airflow connection (registry login from it): without
    # one the SDK does the same, and the worker processes need not import Airflow (seconds).
    hook_class = _docker_hook_class() if options.docker_conn_id else None
    if options.docker_conn_id and hook_class is None:
        raise DockerImageError(
            f"docker_conn_id {options.docker_conn_id!r} needs the Airflow Docker provider: "
            "pip install 'airflow-aml[docker]'"
        )
    try:
        if hook_class is not None:
            try:
                hook = hook_class(docker_conn_id=options.docker_conn_id, base_url=url, timeout=int(timeout))
                return hook.api_client
            except docker.errors.APIError as exc:
                # The engine answered: only the registry login of the connection failed (the hook
                # re-raises the engine's /auth error as it is).
                reason = exc.explanation or exc
                raise DockerImageError(
                    f"Registry login with Airflow connection {options.docker_conn_id!r} failed: {reason}"
                ) from exc
            except Exception as exc:  # Airflow's exceptions, by name: importable only with Airflow
                if type(exc).__name__ == "AirflowNotFoundException":  # no such connection, no host/login
                    raise DockerImageError(f"docker_conn_id {options.docker_conn_id!r}: {exc}") from exc
                if type(exc).__name__ != "AirflowException":  # the hook's "no engine answered"
                    raise
                raise docker.errors.DockerException(str(exc)) from exc
        if options.docker_url:
            client = docker.APIClient(base_url=options.docker_url, timeout=int(timeout))
        else:
            client = docker.from_env(timeout=int(timeout)).api
        client.ping()
        return client
    except (docker.errors.DockerException, OSError, requests.RequestException) as exc:
        raise DockerEngineUnavailableError(
            f"Docker engine not reachable at {url}; start dockerd (as root, scripts/docker-service.sh "
            f"installs and starts it) or point DOCKER_HOST / AML_DOCKER_URL at a running engine ({exc})"
        ) from exc


def _docker_hook_class() -> Any:
    """The Airflow Docker provider's ``DockerHook`` when that provider is installed, else None.

    Asks the package metadata first: importing ``airflow`` only to find the provider missing
    would cost seconds.
    """
    module = sys.modules.get(_HOOK_MODULE)
    if module is None:
        try:
            metadata.distribution("apache-airflow-providers-docker")
        except metadata.PackageNotFoundError:
            return None
        try:
            module = importlib.import_module(_HOOK_MODULE)
        except ImportError:
            return None
    return getattr(module, "DockerHook", None)


def engine_url(options: DockerBuildOptions | None = None) -> str:
    """The engine address the builder uses, for messages."""
    if options is not None and options.docker_url:
        return options.docker_url
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def remove_image(ref: str, *, force: bool = False, options: DockerBuildOptions | None = None) -> bool:
    """Remove the image ``ref`` (and its now-unused layers); False when there was no such image."""
    from docker.errors import ImageNotFound

    api = docker_api_client(options)
    try:
        api.remove_image(ref, force=force)
    except ImageNotFound:
        return False
    finally:
        api.close()
    return True


def _ensure_base_image(api: docker.APIClient, base_image: str, log: Log) -> None:
    # The build runs with pull=False (a registry may not be reachable): the FROM image is checked
    # here first, so that a missing one fails with how to make it rather than a pull error.
    from docker.errors import DockerException, ImageNotFound

    try:
        api.inspect_image(base_image)
        return
    except ImageNotFound:
        pass
    script = BASE_IMAGE_SCRIPT
    if base_image != DEFAULT_BASE_IMAGE:
        script = f"AML_BASE_IMAGE={base_image} {script}"
    hint = (
        f"Base image {base_image!r} is not in the Docker engine. Make it with {script} "
        f"(debootstrap + docker import, no registry needed), or set DockerBuildOptions.base_image / "
        f"AML_DOCKER_BASE_IMAGE to an image the engine has or can pull"
    )
    # local/... images are made on this machine (docker/build-base-image.sh): no registry has them.
    if base_image.startswith("local/"):
        raise BaseImageMissingError(hint)
    log(f"Base image {base_image} not present: pulling it")
    try:
        api.pull(base_image)
        api.inspect_image(base_image)
    except DockerException as exc:
        raise BaseImageMissingError(f"{hint} (pull failed: {exc})") from exc


def _remove_quietly(api: docker.APIClient, image_ids: Iterable[str]) -> None:
    """Remove images, children first, leaving any that another image or container still uses."""
    from docker.errors import DockerException

    for image_id in image_ids:
        with contextlib.suppress(DockerException):
            api.remove_image(image_id, noprune=True)
