"""Images: model versions + scoring code + an environment that serves them.

    from airflow_aml.images import Image, ImageSpec
    image = Image.create(ws, "iris-scorer", ImageSpec(models=["iris"], builtin_scorer="sklearn"))

Builders (``local`` by default, ``docker``) are chosen by kind; see ``builders.py``. The bundle
layout shared with the scoring server and the Docker builder is described in ``bundle.py``.
"""

from airflow_aml.images.builders import (
    AbstractImageBuilder,
    BuildResult,
    build_image_builder,
    image_builder_kinds,
    register_image_builder,
)
from airflow_aml.images.image import Image
from airflow_aml.images.spec import ImageSpec

__all__ = [
    "AbstractImageBuilder",
    "BuildResult",
    "Image",
    "ImageSpec",
    "build_image_builder",
    "image_builder_kinds",
    "register_image_builder",
]
