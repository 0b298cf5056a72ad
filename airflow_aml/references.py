"""``name[:version]``: how models and images are referred to, parsed in one place.

    Reference.parse("iris", "model")        # Reference(name='iris', version=None): the latest version
    Reference.parse("iris:3", "model")      # Reference(name='iris', version=3)
    Reference.parse_id("scorer:2", "image") # an exact version is required (what records store)

A reference is a named tuple, so ``name, version = Reference.parse(...)`` reads naturally. Errors
are ``ValidationError`` (a ``ValueError``) naming the kind and the text that was given.
"""

from __future__ import annotations

from typing import NamedTuple

from airflow_aml.exceptions import InvalidNameError, ValidationError
from airflow_aml.names import validate_name


class Reference(NamedTuple):
    name: str
    version: int | None = None

    @classmethod
    def parse(cls, value: object, kind: str) -> Reference:
        """``"name"`` (the latest version) or ``"name:version"`` (version >= 1) of a ``kind``."""
        if isinstance(value, Reference):
            return value
        text = str(value).strip()
        name, sep, version = text.rpartition(":")
        if not sep:
            name, version = text, ""
        try:
            validate_name(kind, name)
        except InvalidNameError as exc:
            raise ValidationError(f"{kind} reference {text!r}: {exc}") from None
        if not sep:
            return cls(name, None)
        if not version.isdigit() or int(version) < 1:
            raise ValidationError(f"{kind} reference {text!r} must be 'name' or 'name:version' with a version >= 1")
        return cls(name, int(version))

    @classmethod
    def parse_id(cls, value: object, kind: str) -> Reference:
        """An exact ``"name:version"`` (the id records carry); ValidationError for anything else."""
        text = str(value).strip()
        name, sep, version = text.rpartition(":")
        if not sep or not name or not version.isdigit() or int(version) < 1:
            raise ValidationError(f"{kind.capitalize()} id {text!r} must look like 'name:version' (e.g. 'iris:3')")
        return cls(validate_name(kind, name), int(version))

    @property
    def id(self) -> str:
        """``"name:version"``; only for an exact reference."""
        if self.version is None:
            raise ValidationError(f"{self.name!r} names no version")
        return f"{self.name}:{self.version}"

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"
