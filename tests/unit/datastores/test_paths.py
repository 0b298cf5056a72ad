from __future__ import annotations

import pytest

from airflow_aml.datastores.paths import join_path, normalize_path
from airflow_aml.exceptions import PathEscapeError, ValidationError


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("a", "a"),
        ("runs/abc/outputs/model.pkl", "runs/abc/outputs/model.pkl"),
        ("a//b", "a/b"),
        ("a/./b/", "a/b"),
        ("./a", "a"),
        ("a/b/.", "a/b"),
        ("..a/b..", "..a/b.."),  # dots inside a name are just characters
        ("a/...", "a/..."),
        ("100%.txt", "100%.txt"),
        ("a%20b", "a%20b"),  # percent signs are kept literally
        ("C/x", "C/x"),
        ("ab:c", "ab:c"),
        ("a/c:d", "a/c:d"),
        ("名前/ファイル.txt", "名前/ファイル.txt"),
    ],
)
def test_normalizes(given: str, expected: str) -> None:
    assert normalize_path(given) == expected


@pytest.mark.parametrize(
    "path",
    [
        "..",
        "../x",
        "a/../../x",
        "a/..",
        "a/../b",  # even when it would stay inside: '..' is never resolved
        "%2e%2e/x",
        "%2E%2e/x",
        "a/%2e%2E/%2e%2e/x",
        "%252e%252e/x",  # double-encoded
        "%25252e%25252e/x",  # triple-encoded
        ".%2e/x",
        "%2e%2e%2fx",
        "a%2f..%2f..%2fx",
        "/etc/passwd",
        "//server/share",
        "%2fetc%2fpasswd",
        "C:\\x",
        "C:/x",
        "c:x",
        "x:y",
        "\\\\server\\share",
        "a\\b",
        "..\\x",
        "a%5c..%5cx",
        "a\x00b",
        "a%00b",
        "%c0%ae%c0%ae/x",  # overlong UTF-8 dots, for decoders that accept them
    ],
)
def test_refuses_escapes(path: str) -> None:
    with pytest.raises(PathEscapeError) as excinfo:
        normalize_path(path)
    assert repr(path) in str(excinfo.value)  # the message names the path as given


def test_refuses_endless_encoding() -> None:
    path = "%2e"
    for _ in range(12):
        path = path.replace("%", "%25")
    with pytest.raises(PathEscapeError, match="too many times"):
        normalize_path(path)


@pytest.mark.parametrize("path", ["", ".", "/", "./", "//"])
def test_empty_path(path: str) -> None:
    if path.startswith("/"):
        with pytest.raises(PathEscapeError):
            normalize_path(path, allow_empty=True)
        return
    with pytest.raises(ValidationError, match="empty"):
        normalize_path(path)
    assert normalize_path(path, allow_empty=True) == ""


def test_path_escape_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        normalize_path("../x")


def test_non_string_is_refused() -> None:
    with pytest.raises(ValidationError, match="must be a string"):
        normalize_path(b"a")  # type: ignore[arg-type]


def test_join_path() -> None:
    assert join_path("", "a/b") == "a/b"
    assert join_path("runs/1/", "outputs", "m.pkl") == "runs/1/outputs/m.pkl"
    assert join_path() == ""
    with pytest.raises(PathEscapeError):
        join_path("runs", "../x")
