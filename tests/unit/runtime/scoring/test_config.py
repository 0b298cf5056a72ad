from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from airflow_aml.exceptions import ValidationError
from airflow_aml.runtime.scoring import ConfigWatcher, ScoringConfig, generate_key, hash_key, load_config
from airflow_aml.runtime.scoring.auth import check_authorization
from airflow_aml.runtime.scoring.errors import HttpError


def test_keys_and_hashes() -> None:
    key = generate_key()
    assert len(key) >= 43 and key != generate_key()
    assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()


def test_config_defaults_and_refusals() -> None:
    config = ScoringConfig()
    assert config.auth_enabled and config.max_request_bytes == 1 << 20
    assert config.request_timeout_seconds == 30 and config.max_concurrent_requests == 16
    assert ScoringConfig(primary_key_hash=hash_key("k").upper()).primary_key_hash == hash_key("k")
    for bad in ({"primary_key": "k"}, {"primary_key_hash": "not-a-hash"}, {"sample_rate": 2}, {"max_request_bytes": 0}):
        with pytest.raises(ValueError):
            ScoringConfig(**bad)


def test_load_config_makes_telemetry_path_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps({"telemetry_path": "logs/t.jsonl"}))
    assert load_config(tmp_path / "c.json").telemetry_path == str(tmp_path.resolve() / "logs/t.jsonl")
    (tmp_path / "bad.json").write_text(json.dumps({"unknown": 1}))
    with pytest.raises(ValidationError, match=r"(?s)bad.json.*unknown.*Extra inputs"):
        load_config(tmp_path / "bad.json")


def test_check_authorization() -> None:
    config = ScoringConfig(primary_key_hash=hash_key("one"), secondary_key_hash=hash_key("two"))
    check_authorization("Bearer one", config)
    check_authorization("bearer two", config)
    for header in (None, "", "Bearer", "Bearer three", "one", "Token one"):
        with pytest.raises(HttpError) as caught:
            check_authorization(header, config)
        assert caught.value.status == 401 and caught.value.headers == {"WWW-Authenticate": "Bearer"}
    check_authorization(None, ScoringConfig(auth_enabled=False))


def test_watcher_rechecks_only_after_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"primary_key_hash": hash_key("a")}))
    watcher = ConfigWatcher.from_file(path, check_interval=0.2)
    path.write_text(json.dumps({"primary_key_hash": hash_key("b")}))
    assert watcher.current().primary_key_hash == hash_key("a")  # not looked at yet: no stat per request
    time.sleep(0.25)
    assert watcher.current().primary_key_hash == hash_key("b")


def test_watcher_sees_a_same_size_rewrite_within_one_mtime_tick(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"primary_key_hash": hash_key("a")}))
    watcher = ConfigWatcher.from_file(path, check_interval=0.05)
    stat = path.stat()
    path.write_text(json.dumps({"primary_key_hash": hash_key("b")}))  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and, as on a coarse clock, the same mtime
    time.sleep(0.1)
    assert watcher.current().primary_key_hash == hash_key("b")


def test_watcher_without_file_is_fixed() -> None:
    config = ScoringConfig(auth_enabled=False)
    assert ConfigWatcher(config).current() is config
