"""How Docker images are built: :class:`DockerBuildOptions`, its defaults, and the label checks.

The options are the one place where the builder's settings come in, from code or from the
``AML_DOCKER_*`` variables (:meth:`DockerBuildOptions.from_env`); every other module of the
package reads them and none sets them. The label checks live here because the options' own
``labels`` are checked with them when the options are made, and the builder's labels with the
same rules when the build context is written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airflow_aml.exceptions import ValidationError

KIND = "docker"
DEFAULT_BASE_IMAGE = "local/python-base:bookworm"
DEFAULT_TAG = "aml/{name}:{version}"
DEFAULT_USER = "10001:10001"
DEFAULT_BUILD_TIMEOUT = 1800.0

# The builder's own labels (workspace, name, version, bundle digest ...) carry this prefix.
LABEL_PREFIX = "airflow-aml."
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


class DockerBuildOptions(BaseModel):
    """How images are built. ``DockerBuildOptions.from_env()`` reads the ``AML_DOCKER_*`` variables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_image: str = DEFAULT_BASE_IMAGE
    # PEM file added to the image's CA certificates for pip (and for the scoring code at run time):
    # the corporate proxy's CA. The base image's own bundle is kept.
    extra_ca_bundle: Path | None = None
    pip_index_url: str | None = None
    pip_extra_index_urls: list[str] = Field(default_factory=list)
    pip_trusted_hosts: list[str] = Field(default_factory=list)
    # Network of the build's RUN steps; "host" reaches a proxy on the host and needs no bridge.
    network_mode: str | None = "host"
    # A template: {name}, {version} and {workspace} are the image's (made Docker-safe).
    tag: str = DEFAULT_TAG
    labels: dict[str, str] = Field(default_factory=dict)
    build_timeout: float = Field(DEFAULT_BUILD_TIMEOUT, gt=0)
    # Who the container runs as; None keeps the base image's user (root for the default base).
    user: str | None = DEFAULT_USER
    no_cache: bool = False
    # Engine address (unix:///var/run/docker.sock, tcp://host:2376); None: $DOCKER_HOST or the default socket.
    docker_url: str | None = None
    # Airflow Docker connection used by the provider's hook to log in to a registry (provider path only).
    docker_conn_id: str | None = None

    @field_validator("base_image", "user", "network_mode", "pip_index_url", "docker_url")
    @classmethod
    def _one_word(cls, value: str | None) -> str | None:
        # These end up in a Dockerfile line or a space-separated pip setting.
        if value is not None and (not value or any(c.isspace() for c in value)):
            raise ValueError(f"{value!r} must be one word without spaces")
        return value

    @field_validator("pip_extra_index_urls", "pip_trusted_hosts")
    @classmethod
    def _words(cls, value: list[str]) -> list[str]:
        for item in value:
            cls._one_word(item)
        return value

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            _check_label(key, text)
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> DockerBuildOptions:
        """Options from the environment; ``overrides`` win.

        ``AML_DOCKER_BASE_IMAGE``, ``AML_DOCKER_TAG``, ``AML_DOCKER_BUILD_TIMEOUT``, ``AML_DOCKER_USER``
        (``root``/``none`` keep the base image's), ``AML_DOCKER_URL``, ``AML_DOCKER_NETWORK``
        (``default``: the engine's default network), and for pip ``AML_DOCKER_CA_BUNDLE``,
        ``AML_DOCKER_PIP_INDEX_URL``, ``AML_DOCKER_PIP_EXTRA_INDEX_URLS`` and
        ``AML_DOCKER_PIP_TRUSTED_HOSTS`` (space- or comma-separated). Unset pip settings fall back
        to this machine's own pip settings (``PIP_CERT``, ``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``,
        ``PIP_TRUSTED_HOST``): pip in the image trusts and uses what pip here does, which is what a
        machine behind a TLS-intercepting proxy needs. ``none`` turns a pip setting off.
        """
        env = os.environ if environ is None else environ

        def get(name: str, fallback: str | None = None) -> str | None:
            value = env.get(name) or (env.get(fallback) if fallback else None)
            value = value.strip() if value else None
            return None if not value or value.lower() == "none" else value

        def words(value: str | None) -> list[str] | None:
            return [part for part in re.split(r"[\s,]+", value) if part] if value else None

        values: dict[str, Any] = {
            "base_image": get("AML_DOCKER_BASE_IMAGE"),
            "tag": get("AML_DOCKER_TAG"),
            "build_timeout": get("AML_DOCKER_BUILD_TIMEOUT"),
            "docker_url": get("AML_DOCKER_URL"),
            "extra_ca_bundle": get("AML_DOCKER_CA_BUNDLE", "PIP_CERT"),
            "pip_index_url": get("AML_DOCKER_PIP_INDEX_URL", "PIP_INDEX_URL"),
            "pip_extra_index_urls": words(get("AML_DOCKER_PIP_EXTRA_INDEX_URLS", "PIP_EXTRA_INDEX_URL")),
            "pip_trusted_hosts": words(get("AML_DOCKER_PIP_TRUSTED_HOSTS", "PIP_TRUSTED_HOST")),
        }
        values = {key: value for key, value in values.items() if value is not None}
        if "AML_DOCKER_USER" in env:
            user = env["AML_DOCKER_USER"].strip()
            values["user"] = None if user.lower() in ("", "none", "root") else user
        if "AML_DOCKER_NETWORK" in env:
            network = env["AML_DOCKER_NETWORK"].strip()
            values["network_mode"] = None if network.lower() in ("", "default") else network
        values.update(overrides)
        return cls.model_validate(values)


def _check_label(key: str, value: str) -> None:
    if not _LABEL_KEY.match(key):
        raise ValidationError(f"Docker label key {key!r}: use letters, digits, '.', '-', '_' and '/'")
    if any(c in value for c in "\n\r\0"):
        raise ValidationError(f"Docker label {key!r}: the value must be one line")
