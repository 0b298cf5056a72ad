"""A datastore handle for a principal who may read but not write (a workspace Reader)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import IO

from airflow_aml.datastores.base import AbstractDatastore, ObjectInfo
from airflow_aml.exceptions import AuthorizationError


class ReadOnlyDatastore(AbstractDatastore):
    """Reads go to ``inner``; every write (and so every upload convenience) is refused."""

    def __init__(self, inner: AbstractDatastore, refusal: str) -> None:
        self.inner = inner
        self.name = inner.name
        self._refusal = refusal

    def open_read(self, path: str) -> AbstractContextManager[IO[bytes]]:
        return self.inner.open_read(path)

    def info(self, path: str) -> ObjectInfo:
        return self.inner.info(path)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def open_write(self, path: str) -> AbstractContextManager[IO[bytes]]:
        raise AuthorizationError(f"{self._refusal} (writing {path!r} to datastore {self.name!r})")

    def delete(self, path: str) -> None:
        raise AuthorizationError(f"{self._refusal} (deleting {path!r} from datastore {self.name!r})")
