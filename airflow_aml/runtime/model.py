"""``get_model_path``: where a scoring script finds the model files baked into its image.

Azure ML's ``Model.get_model_path(name)``, called from a scoring script's ``init()``:

    from airflow_aml.runtime.model import get_model_path
    model = joblib.load(get_model_path("iris"))

The scoring server sets ``AML_BUNDLE_DIR`` to the image bundle before it imports the script; the
bundle's ``image.json`` lists the model versions it carries and where (``models/<name>/<version>``).
Imports no Airflow: it runs inside images.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from airflow_aml.exceptions import ModelNotFoundError, ValidationError

ENV_BUNDLE_DIR = "AML_BUNDLE_DIR"
MANIFEST_NAME = "image.json"


def get_model_path(model_name: str, version: int | None = None, *, bundle_dir: str | Path | None = None) -> str:
    """The folder of ``model_name`` (``version``, or the latest one in the bundle) in the image bundle.

    A version folder that holds a single file resolves to that file, as in Azure ML, so that
    ``joblib.load(get_model_path("iris"))`` works for one-file models.
    """
    bundle = _bundle(bundle_dir)
    versions = _versions(bundle, model_name)
    if not versions:
        known = ", ".join(sorted({name for name, _, _ in _all_models(bundle)})) or "none"
        raise ModelNotFoundError(
            f"Model {model_name!r} is not in the image bundle {str(bundle)!r} (models in it: {known})"
        )
    if version is None:
        version = max(versions)
    elif version not in versions:
        available = ", ".join(str(v) for v in sorted(versions))
        raise ModelNotFoundError(
            f"Model {model_name!r} version {version} is not in the image bundle {str(bundle)!r} "
            f"(versions available: {available})"
        )
    path = versions[version]
    if not path.exists():
        raise ModelNotFoundError(f"Model {model_name!r} version {version}: {str(path)!r} is missing from the bundle")
    if path.is_dir():
        entries = list(path.iterdir())
        if len(entries) == 1 and entries[0].is_file():
            return str(entries[0])
    return str(path)


class Model:
    """The Azure ML spelling, for scripts ported from it: ``Model.get_model_path("iris")``."""

    get_model_path = staticmethod(get_model_path)


def _bundle(bundle_dir: str | Path | None) -> Path:
    value = bundle_dir if bundle_dir is not None else os.environ.get(ENV_BUNDLE_DIR)
    if not value:
        raise ValidationError(
            f"get_model_path: ${ENV_BUNDLE_DIR} is not set; it is set by the scoring server inside an image"
        )
    return Path(value).resolve()


def _all_models(bundle: Path) -> list[tuple[str, int, Path]]:
    """(name, version, folder) for every model version in the bundle, from ``image.json``.

    Without a manifest (a bundle assembled by hand) the ``models/<name>/<version>`` folders are
    the listing.
    """
    manifest = bundle / MANIFEST_NAME
    if manifest.is_file():
        try:
            entries = json.loads(manifest.read_text(encoding="utf-8")).get("models") or []
            listed = [(str(e["name"]), int(e["version"]), str(e["path"])) for e in entries]
        except (OSError, ValueError, AttributeError, KeyError, TypeError) as exc:  # unreadable or malformed
            raise ValidationError(f"Image bundle {str(bundle)!r}: cannot read {MANIFEST_NAME}: {exc!r}") from exc
        return [(name, version, _inside(bundle, path)) for name, version, path in listed]
    root = bundle / "models"
    if not root.is_dir():
        return []
    return [
        (model.name, int(folder.name), folder)
        for model in root.iterdir() if model.is_dir()
        for folder in model.iterdir() if folder.is_dir() and folder.name.isdigit()
    ]


def _versions(bundle: Path, model_name: str) -> dict[int, Path]:
    return {version: path for name, version, path in _all_models(bundle) if name == model_name}


def _inside(bundle: Path, relative: str) -> Path:
    # image.json is written by our builders, but a path that leaves the bundle is refused anyway.
    path = (bundle / relative).resolve()
    if not path.is_relative_to(bundle):
        raise ValidationError(f"Image bundle {str(bundle)!r}: model path {relative!r} leaves the bundle")
    return path
