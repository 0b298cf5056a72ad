"""Naming rules, checked once at the SDK boundary before anything is written."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from airflow_aml.exceptions import InvalidMetricError, InvalidNameError, ValidationError

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


# Limits of what users attach to runs, models, images and deployments: MLflow's (a tag key of
# 250 characters, a value of 8,000), so that what MLflow clients log fits, and a display name that
# fits on a line. Control characters are refused in keys and names (they would rewrite a terminal
# that prints them); a value may hold newlines and tabs.
MAX_TAG_KEY_LENGTH = 250
MAX_TAG_VALUE_LENGTH = 8000
MAX_DISPLAY_NAME_LENGTH = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_IN_VALUE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def validate_tags(tags: Mapping[str, str] | None, what: str) -> dict[str, str]:
    """``tags`` as a plain dict of str to str within the limits; ValidationError naming ``what``
    and the offending key otherwise."""
    checked: dict[str, str] = {}
    for key, value in (tags or {}).items():
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_TAG_KEY_LENGTH or _CONTROL.search(key):
            raise ValidationError(
                f"{what}: invalid tag key {str(key)[:80]!r}: "
                f"1-{MAX_TAG_KEY_LENGTH} characters without control characters"
            )
        if not isinstance(value, str):
            raise ValidationError(f"{what}: tag {key!r} must be a string, not {type(value).__name__}")
        if len(value) > MAX_TAG_VALUE_LENGTH:
            raise ValidationError(
                f"{what}: tag {key!r} is {len(value):,} characters long; at most {MAX_TAG_VALUE_LENGTH:,}"
            )
        if _CONTROL_IN_VALUE.search(value):
            raise ValidationError(f"{what}: tag {key!r} holds control characters (only newline and tab are allowed)")
        checked[key] = value
    return checked


def validate_display_name(name: str | None) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str) or len(name) > MAX_DISPLAY_NAME_LENGTH or _CONTROL.search(name):
        shown = str(name)[:80] + ("…" if len(str(name)) > 80 else "")
        raise ValidationError(
            f"Invalid display name {shown!r}: at most {MAX_DISPLAY_NAME_LENGTH} characters, no control characters"
        )
    return name
