from __future__ import annotations

import pytest

from airflow_aml.exceptions import InvalidNameError, ValidationError
from airflow_aml.references import Reference


def test_parse() -> None:
    assert Reference.parse("iris", "model") == Reference("iris", None)
    assert Reference.parse(" iris:3 ", "image") == ("iris", 3)
    name, version = Reference.parse("a.b-c:12", "model")
    assert (name, version) == ("a.b-c", 12)
    assert str(Reference("iris", 2)) == "iris:2" and str(Reference("iris")) == "iris"
    assert Reference("iris", 2).id == "iris:2"


@pytest.mark.parametrize("bad", ["iris:", "iris:0", "iris:-1", "iris:x", ":3", "a/b:1", ""])
def test_parse_refuses(bad: str) -> None:
    with pytest.raises(ValidationError, match="image reference"):
        Reference.parse(bad, "image")


@pytest.mark.parametrize("bad", ["iris", "iris:0", "iris:x", ":1"])
def test_parse_id_needs_a_version(bad: str) -> None:
    with pytest.raises(ValidationError, match="must look like 'name:version'"):
        Reference.parse_id(bad, "model")
    with pytest.raises(InvalidNameError):
        Reference.parse_id("a/b:1", "model")
    with pytest.raises(ValidationError, match="names no version"):
        Reference("iris").id  # noqa: B018
