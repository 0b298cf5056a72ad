"""``ScoringConfig``, and the watcher that re-reads its file so that key rotation needs no restart.

The file is JSON (``config.json`` next to the bundle, written by the deployment). The server asks
the watcher for the config on every request, so the watcher must be nearly free: it looks at the
file's ``stat`` at most every ``check_interval`` seconds and parses it only when that changed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airflow_aml.exceptions import ValidationError

log = logging.getLogger(__name__)

DEFAULT_CHECK_INTERVAL = 0.5
# A file changed this recently may be changed again within the same mtime tick with the same
# size (a key swap keeps the size), which a stat comparison cannot see: such a file is re-read at
# every check until it is older than this, as git does with "racily clean" index entries.
_RACY_SECONDS = 2.0


class ScoringConfig(BaseModel):
    """How one scoring service behaves. Keys are stored only as SHA-256 hashes (``hash_key``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    auth_enabled: bool = True
    primary_key_hash: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    secondary_key_hash: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    max_request_bytes: int = Field(1 << 20, gt=0)
    request_timeout_seconds: float = Field(30.0, gt=0)
    max_concurrent_requests: int = Field(16, ge=1)
    # Requests admitted beyond max_concurrent_requests wait for a worker thread; past both, 429.
    max_queued_requests: int = Field(0, ge=0)
    # Adaptive batching, for scorers that take several inputs in one call (the built-in ones; a
    # script that defines run_batch): the requests waiting for a worker are scored together, up to
    # max_batch_size a call (1 turns batching off). A worker waits at most max_latency_ms after the
    # oldest waiting request arrived for more to join it; 0 never waits, so a lone request is
    # answered as fast as without batching and batches form only when requests queue up.
    max_batch_size: int = Field(32, ge=1, le=4096)
    max_latency_ms: float = Field(0.0, ge=0.0, le=1000.0)
    telemetry_path: str | None = None
    # The share of requests whose input and output are kept in the telemetry (data collection).
    sample_rate: float = Field(0.0, ge=0.0, le=1.0)

    @field_validator("primary_key_hash", "secondary_key_hash", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


def load_config(path: str | Path) -> ScoringConfig:
    """Read a config file; a relative ``telemetry_path`` is taken relative to the file's folder."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        config = ScoringConfig.model_validate(data)
    except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise ValidationError(f"Scoring config {str(path)!r}: {exc}") from exc
    if config.telemetry_path and not Path(config.telemetry_path).is_absolute():
        config = config.model_copy(update={"telemetry_path": str(path.parent.resolve() / config.telemetry_path)})
    return config


class ConfigWatcher:
    """The current config: the one given, or the file's latest valid content.

    ``current()`` is called on the request path. A file that cannot be read or parsed keeps the
    last good config (a half-written file must not take the service down) and is retried at the
    next check; writers that want no such window replace the file atomically (write + rename).
    """

    def __init__(
        self, config: ScoringConfig, path: str | Path | None = None, *,
        check_interval: float = DEFAULT_CHECK_INTERVAL,
    ) -> None:
        self._config = config
        self._path = Path(path) if path is not None else None
        self._interval = check_interval
        self._next_check = time.monotonic() + check_interval
        self._seen = _settled(self._stat())
        self._failed: tuple[int, int, int] | None = None
        self._lock = threading.Lock()  # one reader of the file at a time, should threads ask

    @classmethod
    def from_file(cls, path: str | Path, *, check_interval: float = DEFAULT_CHECK_INTERVAL) -> ConfigWatcher:
        return cls(load_config(path), path, check_interval=check_interval)

    def current(self) -> ScoringConfig:
        if self._path is None or time.monotonic() < self._next_check:
            return self._config
        with self._lock:
            now = time.monotonic()
            if now >= self._next_check:
                self._next_check = now + self._interval
                self._refresh()
        return self._config

    def _stat(self) -> tuple[int, int, int] | None:
        if self._path is None:
            return None
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _refresh(self) -> None:
        seen = self._stat()
        if seen is None or seen == self._seen:
            return
        try:
            config = load_config(self._path)  # type: ignore[arg-type]
        except ValidationError as exc:
            if seen != self._failed:  # one warning per broken version, not one per check
                log.warning("Keeping the previous scoring config: %s", exc)
                self._failed = seen
            return
        if config != self._config:
            _warn_fixed_fields(self._config, config)
            log.info("Scoring config reloaded from %s", self._path)
        self._config = config
        self._seen = _settled(seen)


def _settled(seen: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
    """``seen``, or None (read again at the next check) while the file may still change unseen."""
    if seen is None or time.time() - seen[0] / 1e9 < _RACY_SECONDS:
        return None
    return seen


# Read once at startup: the worker pool and the telemetry file are built from them.
_FIXED_FIELDS = ("max_concurrent_requests", "max_queued_requests", "max_batch_size", "max_latency_ms", "telemetry_path")


def _warn_fixed_fields(old: ScoringConfig, new: ScoringConfig) -> None:
    for name in _FIXED_FIELDS:
        if getattr(old, name) != getattr(new, name):
            log.warning("Scoring config: a change of %s takes effect at the next restart", name)
