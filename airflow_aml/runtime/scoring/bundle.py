"""The image bundle the server serves: ``image.json``, ``models/<name>/<version>/``, ``app/``.

This is the contract with the image builders: they write the folder, the server reads it. Only
the manifest is read here; models are loaded by the scorer during ``init()``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from airflow_aml.exceptions import ValidationError as AmlValidationError
from airflow_aml.runtime.model import MANIFEST_NAME

APP_DIR = "app"


class BundleModel(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    version: int
    path: str


class ImageManifest(BaseModel):
    """``image.json``. Unknown fields are ignored so that builders may add to it."""

    model_config = ConfigDict(extra="ignore")

    name: str
    version: int
    entry_script: str | None = None
    builtin_scorer: Literal["sklearn", "onnx"] | None = None
    models: list[BundleModel] = []
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None

    @field_validator("entry_script")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is not None and (Path(value).is_absolute() or ".." in Path(value).parts):
            raise ValueError(f"entry_script {value!r} must be a path inside app/")
        return value


def read_manifest(bundle_dir: str | Path) -> ImageManifest:
    """Read and check ``image.json``: exactly one of entry_script / builtin_scorer, paths inside."""
    bundle = Path(bundle_dir)
    path = bundle / MANIFEST_NAME
    try:
        manifest = ImageManifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise AmlValidationError(f"Image bundle {str(bundle)!r}: cannot use {MANIFEST_NAME}: {exc}") from exc
    if (manifest.entry_script is None) == (manifest.builtin_scorer is None):
        raise AmlValidationError(
            f"Image bundle {str(bundle)!r}: {MANIFEST_NAME} must set exactly one of entry_script and builtin_scorer"
        )
    if manifest.builtin_scorer is not None and len(manifest.models) != 1:
        raise AmlValidationError(
            f"Image bundle {str(bundle)!r}: the built-in {manifest.builtin_scorer!r} scorer serves exactly one "
            f"model, but {MANIFEST_NAME} lists {len(manifest.models)}"
        )
    return manifest
