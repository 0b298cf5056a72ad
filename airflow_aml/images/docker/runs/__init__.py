"""The ``docker`` compute target: a run's script in a container built from the run's environment.

It lives beside the image builder because it is built from it (the Dockerfile pieces, the build
loop, the engine client); ``airflow_aml.compute`` imports this package by name the first time a
``docker`` target is used, which registers the kind. One module a job::

    config.py       DockerComputeConfig: the target's settings and their checks
    image.py        the environment image and the run image, cached by content hash
    container.py    the run's container: labels, logs, outputs, removal
    supervisor.py   DockerSupervisor: the local supervisor with the script in a container
    target.py       DockerComputeTarget and its registration as the ``docker`` kind

The docker SDK is imported only when an engine is used: importing this package needs pydantic only.
"""

from airflow_aml.images.docker.runs.config import DockerComputeConfig, parse_memory
from airflow_aml.images.docker.runs.target import DockerComputeTarget

__all__ = ["DockerComputeConfig", "DockerComputeTarget", "parse_memory"]
