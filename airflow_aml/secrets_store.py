"""Workspace secrets, encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256).

The metadata store only ever sees ciphertext; values are decrypted on demand and never appear in
listings or reprs. ``cryptography`` is the well-kept library Airflow itself uses for its own
connection passwords, so no new dependency comes with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from cryptography.fernet import Fernet, InvalidToken

from airflow_aml.exceptions import AmlError, ValidationError
from airflow_aml.store.base import AbstractStore

# Called with every secret value this process decrypts or stores: the Airflow layer registers its
# secrets masker here (hooks/workspace.py), so that a value read by a task (a secret, a web
# service's key) shows as *** in task logs, rendered fields and XComs. The SDK imports no Airflow.
_REVEAL_LISTENERS: list[Callable[[str], None]] = []


def on_reveal(listener: Callable[[str], None]) -> None:
    """Call ``listener(value)`` for every secret value this process handles from now on."""
    if listener not in _REVEAL_LISTENERS:
        _REVEAL_LISTENERS.append(listener)


def _revealed(value: str) -> str:
    for listener in _REVEAL_LISTENERS:
        with contextlib.suppress(Exception):  # masking must never break the read itself
            listener(value)
    return value


class SecretsVault:
    def __init__(self, store: AbstractStore, workspace: str, key: bytes) -> None:
        self._store = store
        self._workspace = workspace
        try:
            self._fernet = Fernet(key)
        except ValueError as exc:
            raise ValidationError(
                "AML_SECRET_KEY is not a valid Fernet key (32 url-safe base64-encoded bytes)"
            ) from exc

    def set(self, name: str, value: str) -> None:
        if not isinstance(value, str):
            raise ValidationError(f"Secret {name!r} must be a string, not {type(value).__name__}")
        self._store.put_secret(self._workspace, name, self._fernet.encrypt(_revealed(value).encode()))

    def get(self, name: str) -> str:
        ciphertext = self._store.get_secret(self._workspace, name)
        try:
            return _revealed(self._fernet.decrypt(ciphertext).decode())
        except InvalidToken as exc:
            raise AmlError(
                f"Secret {name!r} of workspace {self._workspace!r} cannot be decrypted: the secret key "
                "differs from the one it was written with (AML_SECRET_KEY / $AML_HOME/secret.key)"
            ) from exc

    def names(self) -> list[str]:
        return self._store.list_secret_names(self._workspace)

    def delete(self, name: str) -> None:
        self._store.delete_secret(self._workspace, name)


class ServiceVault:
    """The secrets of a served workspace: the service encrypts, decrypts and authorizes; this
    process never holds the key (``HttpStore.get_secret_value``)."""

    def __init__(self, store: AbstractStore, workspace: str) -> None:
        self._store = store
        self._workspace = workspace

    def set(self, name: str, value: str) -> None:
        if not isinstance(value, str):
            raise ValidationError(f"Secret {name!r} must be a string, not {type(value).__name__}")
        self._store.set_secret_value(self._workspace, name, _revealed(value))  # type: ignore[attr-defined]

    def get(self, name: str) -> str:
        return _revealed(self._store.get_secret_value(self._workspace, name))  # type: ignore[attr-defined]

    def names(self) -> list[str]:
        return self._store.list_secret_names(self._workspace)

    def delete(self, name: str) -> None:
        self._store.delete_secret(self._workspace, name)
