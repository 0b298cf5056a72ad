"""Naming rules, checked once at the SDK boundary before anything is written."""

from __future__ import annotations

import re
from collections.abc import Iterable

from airflow_aml.exceptions import InvalidMetricError, InvalidNameError

# Azure ML allows letters, digits, '-', '_' and '.' for most names; we keep one rule for every
# kind so that names are safe in paths, URLs and container/image tags.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
_METRIC = re.compile(r"^[^\x00-\x1f]{1,255}$")


def validate_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise InvalidNameError(
            f"Invalid {kind} name {name!r}: use 1-255 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit"
        )
    return name


def validate_metric_name(name: object) -> str:
    if not isinstance(name, str) or not _METRIC.match(name) or name.strip() != name:
        raise InvalidMetricError(
            f"Invalid metric name {name!r}: 1-255 printable characters without surrounding spaces"
        )
    return name


# A web service's two keys are kept, encrypted, among the workspace's secrets under these names:
# whoever may deploy (a Contributor) writes them, whoever may read secrets reads them. The names
# are reserved: ``Workspace.set_secret`` refuses them.
_DEPLOYMENT_KEY = re.compile(r"^deployment-.+-(primary|secondary)-key$")


def deployment_key_secret_name(deployment: str, which: str) -> str:
    return f"deployment-{deployment}-{which}-key"


def is_deployment_key_secret_name(name: str) -> bool:
    return bool(_DEPLOYMENT_KEY.match(name))


def validate_secret_name(name: object) -> str:
    """A name a user may set a secret under: a valid name that is not a web service key's."""
    validate_name("secret", name)
    if is_deployment_key_secret_name(name):  # type: ignore[arg-type]
        raise InvalidNameError(f"Secret name {name!r} is reserved for the keys of a web service")
    return name  # type: ignore[return-value]


def available(
    names: Iterable[str] | Iterable[int], *, label: str = "available", limit: int = 10, none: str = "there are none yet"
) -> str:
    """The tail of a not-found message: ``"; available: a, b, c"`` (the first ``limit`` names, then
    ``"and N more"``), so that a typo or a wrong name is fixed without another command.

    Sorted here (names as strings, versions as numbers), not by the database, whose collation
    differs between SQLite and PostgreSQL."""
    listed = [str(name) for name in sorted(set(names))]  # type: ignore[type-var]
    if not listed:
        return f"; {none}"
    shown = ", ".join(listed[:limit])
    more = f" and {len(listed) - limit} more" if len(listed) > limit else ""
    return f"; {label}: {shown}{more}"
