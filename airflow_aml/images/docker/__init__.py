"""``DockerImageBuilder``: an image bundle turned into a Docker image by a Docker engine.

The bundle (written by the image registry) is a folder::

    image.json          name, version, entry_script | builtin_scorer, models, schemas, python
    requirements.txt    the scoring code's dependencies
    app/                the scoring script and its helpers
    models/<name>/<version>/...

The builder writes a Dockerfile and a build context into a temporary folder and sends both to the
engine through the docker SDK. Layers go from the least to the most often changing, so that a new
model version with the same dependencies rebuilds only the last, cheap layers::

    FROM <base image>                         local/python-base:bookworm (docker/build-base-image.sh)
    1. venv at /opt/aml/venv, CA bundle, pip index settings, runtime environment
    2. requirements.txt + the scoring server's own dependencies -> pip install   (the slow layer)
    3. the airflow_aml package as plain files on PYTHONPATH, and a check that the runtime imports
       (and that Airflow is not in the image: the runtime must not need it)
    4. app/
    5. image.json (and any other top-level bundle file)
    6. models/

The container runs ``python -m airflow_aml.runtime.scoring --bundle /var/aml/bundle`` on
``$AML_HOST:$AML_PORT`` (default 127.0.0.1:5001), with ``--config $AML_SCORING_CONFIG`` when set,
as an unprivileged user (uid 10001).

The image is named after the ``ImageRecord`` being built (``aml/<name>:<version>``), as a bundle
is shared by image versions with identical content; its labels record workspace, name, version
and bundle digest. ``BuildResult.digest`` is the image id.

Engine access is in one function, :func:`docker_api_client`: the Airflow Docker provider's
``DockerHook`` when that provider is installed, else the docker SDK's ``docker.from_env()``.

One module a job, each importing only the ones before it::

    options.py      DockerBuildOptions (AML_DOCKER_* variables), defaults, label checks
    dockerfile.py   the Dockerfile's text and the paths inside the image
    context.py      the build context: the bundle laid out, the image's tag and labels, the tar
    engine.py       the engine client (also the Docker deployment target's), base image, removal
    build.py        sending the context and following the build log
    builder.py      DockerImageBuilder and its registration as the ``docker`` kind

Importing this package registers the ``docker`` kind (``airflow_aml.images.builders`` imports it
by name for that). The errors are in :mod:`airflow_aml.exceptions`, under ``ImageBuildError``.
"""

from airflow_aml.exceptions import (
    BaseImageMissingError,
    DockerBuildError,
    DockerEngineUnavailableError,
    DockerImageError,
)
from airflow_aml.images.docker.builder import DockerImageBuilder
from airflow_aml.images.docker.context import BuildContext, image_reference, prepare_context
from airflow_aml.images.docker.dockerfile import BUNDLE_DIR
from airflow_aml.images.docker.engine import docker_api_client, engine_url, remove_image
from airflow_aml.images.docker.options import DEFAULT_BASE_IMAGE, DockerBuildOptions

__all__ = [
    "BUNDLE_DIR",
    "DEFAULT_BASE_IMAGE",
    "BaseImageMissingError",
    "BuildContext",
    "DockerBuildError",
    "DockerBuildOptions",
    "DockerEngineUnavailableError",
    "DockerImageBuilder",
    "DockerImageError",
    "docker_api_client",
    "engine_url",
    "image_reference",
    "prepare_context",
    "remove_image",
]
