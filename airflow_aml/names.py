"""Naming rules, checked once at the SDK boundary before anything is written."""

from __future__ import annotations

import re

from airflow_aml.exceptions import InvalidNameError

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
        from airflow_aml.exceptions import InvalidMetricError

        raise InvalidMetricError(
            f"Invalid metric name {name!r}: 1-255 printable characters without surrounding spaces"
        )
    return name
