"""The ``docker`` deployment target: each replica is a container of the image's Docker image.

A replica container runs the image's scoring server on the host's network (``network_mode="host"``),
bound to ``127.0.0.1:<port>`` like a local replica, so that the supervisor's load-balancing front
and health checks treat both targets alike. Each container gets:

* the deployment's ``config`` folder, bind-mounted read-only at ``/var/aml/config``. The folder,
  not ``scoring.json`` itself: a file bind mount pins the inode, so an atomic replacement of the
  file (write + rename, how keys are rotated) would go unseen; a folder mount sees the new file.
  The container's user (uid 10001) reads it, so the folder must be world-searchable and the file
  world-readable (``start`` adds those bits when missing; the file holds key hashes only);
* labels ``aml.workspace``, ``aml.deployment``, ``aml.generation``, ``aml.replica`` (and
  ``aml.home``), through which ``cleanup`` finds what a killed supervisor left behind;
* the engine's CPU and memory limits from the deployment config, and no restart policy: the
  supervisor restarts replicas itself, so that it always knows what runs.

The container's output is followed by a thread that appends it to the replica's log file, so that
the logs read the same as a local replica's.

Engine access goes through :func:`airflow_aml.images.docker.docker_api_client`, the image
builder's (the Airflow Docker provider's hook when installed, else the docker SDK). Bind mounts
name host paths: the engine must run on this machine.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import signal
import threading
import uuid
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import DockerException, ImageNotFound, NotFound

from airflow_aml.config import aml_home
from airflow_aml.deployments.replicas import register_replica_driver
from airflow_aml.deployments.replicas.base import (
    REPLICA_LOG_LEVEL,
    SCORING_MODULE,
    Replica,
    ReplicaDriver,
    ReplicaSpec,
)
from airflow_aml.entities import ImageRecord
from airflow_aml.exceptions import AmlError, DeploymentError, ValidationError
from airflow_aml.images.docker import BUNDLE_DIR, DockerBuildOptions, docker_api_client, engine_url

log = logging.getLogger(__name__)

KIND = "docker"
CONFIG_FILE = "scoring.json"
CONTAINER_CONFIG_DIR = "/var/aml/config"
LABEL_WORKSPACE = "aml.workspace"
LABEL_DEPLOYMENT = "aml.deployment"
LABEL_GENERATION = "aml.generation"
LABEL_REPLICA = "aml.replica"
# The AML home of the supervisor that started the container: two installations sharing one
# engine may both have a workspace "ws" with a deployment "iris"; neither cleans up the other's.
LABEL_HOME = "aml.home"
# How long ``stop`` waits for the log follower to write the container's last lines.
_LOG_DRAIN_SECONDS = 5.0
_NAME_PART = re.compile(r"[^a-zA-Z0-9_.-]+")

# What a lost or confused engine raises through the docker SDK.
_ENGINE_ERRORS = (DockerException, requests.RequestException, OSError)


class ContainerReplica(Replica):
    """A replica running as the container ``container_id`` (named ``name``)."""

    def __init__(self, spec: ReplicaSpec, driver: ContainerReplicaDriver, container_id: str, name: str) -> None:
        super().__init__(spec)
        self.driver = driver
        self.container_id = container_id
        self.name = name
        self._state: dict[str, Any] | None = None  # the last State seen, for exit_description
        self._removed = False
        self._follower: _LogFollower | None = None

    def alive(self) -> bool:
        """Whether the container runs. False when it is gone, or when the engine does not answer
        (its containers are then as good as dead to the supervisor)."""
        if self._removed:
            return False
        try:
            self._state = self.driver.api().inspect_container(self.container_id)["State"]
        except NotFound:  # removed behind our back: keep the last exit state seen
            self._state = {**(self._state or {}), "Running": False, "Gone": True}
            return False
        except (*_ENGINE_ERRORS, AmlError) as exc:
            log.warning("Replica %s: cannot inspect container %s: %s", self.spec.label, self.name, exc)
            return False
        return bool(self._state.get("Running"))

    def stop(self, timeout: float = 10.0) -> None:
        """``docker stop`` (SIGTERM, SIGKILL after ``timeout``), then remove the container.

        Safe to repeat and never raises: a container already gone is what was wanted, and an engine
        that does not answer is logged (``cleanup`` removes what is left at the next start).
        """
        if self._removed:
            return
        try:
            api = self.driver.api()
        except AmlError as exc:
            log.warning("Replica %s: cannot stop container %s: %s", self.spec.label, self.name, exc)
            return
        try:
            api.stop(self.container_id, timeout=max(0, math.ceil(timeout)))
        except NotFound:
            self._state = self._state or {"Running": False, "Gone": True}
        except _ENGINE_ERRORS as exc:
            log.warning("Replica %s: docker stop %s failed (%s); removing it", self.spec.label, self.name, exc)
        else:
            with contextlib.suppress(*_ENGINE_ERRORS):  # the exit state, for exit_description
                self._state = api.inspect_container(self.container_id)["State"]
        if self._follower is not None:  # the stream ends with the container: let it write the last lines
            self._follower.join(_LOG_DRAIN_SECONDS)
        try:
            api.remove_container(self.container_id, force=True)
        except NotFound:
            pass
        except _ENGINE_ERRORS as exc:
            if "already in progress" not in str(exc):  # a concurrent stop removes it
                log.warning("Replica %s: cannot remove container %s: %s", self.spec.label, self.name, exc)
                return
        self._removed = True

    def describe(self) -> dict[str, Any]:
        return {"container": self.container_id, "name": self.name}

    def exit_description(self) -> str:
        state = self._state
        if state is None or (state.get("Running") and not self._removed):
            self.alive()  # refresh
            state = self._state
        if not state:
            return "its state is unknown (the Docker engine did not answer)"
        if state.get("Gone") and "ExitCode" not in state:
            return f"its container {self.name} is gone (removed outside the supervisor)"
        if state.get("Running"):
            return "it runs"
        code = state.get("ExitCode")
        if state.get("OOMKilled"):
            text = f"it was killed for exceeding its memory limit (OOMKilled, exit code {code})"
        elif isinstance(code, int) and 128 < code < 128 + signal.NSIG:  # the shell's and docker-init's convention
            number = code - 128
            try:
                name = f"{signal.Signals(number).name}, "
            except ValueError:
                name = ""
            text = f"it was killed by signal {number} ({name}exit code {code})"
        else:
            text = f"it exited with code {code}"
        if state.get("Error"):
            text += f": {state['Error']}"
        return text


class ContainerReplicaDriver(ReplicaDriver):
    """Replicas as containers of images built by the ``docker`` image builder."""

    kind = KIND

    def __init__(self, options: DockerBuildOptions | None = None) -> None:
        # The engine address (AML_DOCKER_URL / DOCKER_HOST) and the provider's connection id
        # are the image builder's: the image must be in the engine it was built in.
        self.options = options or DockerBuildOptions.from_env()
        self._api: docker.APIClient | None = None
        self._lock = threading.Lock()

    def api(self) -> docker.APIClient:
        """The engine client, connected on first use (a driver may be made where no engine runs)."""
        with self._lock:
            if self._api is None:
                self._api = docker_api_client(self.options)
            return self._api

    def close(self) -> None:
        with self._lock:
            if self._api is not None:
                self._api.close()
                self._api = None

    # ------------------------------------------------------------------------------- image

    def validate(self, image: ImageRecord) -> None:
        if image.builder != KIND:
            raise ValidationError(
                f"Image '{image.id}' was built by the {image.builder!r} builder; the docker deployment target "
                "serves images of the 'docker' builder (use target='local' for it, or build the image with "
                "builder='docker')"
            )
        if not image.location:
            raise ValidationError(
                f"Image '{image.id}' has no Docker image reference (its build did not finish); build it again"
            )
        try:
            api = self.api()
        except AmlError as exc:
            raise ValidationError(f"The docker deployment target cannot serve image '{image.id}': {exc}") from exc
        image_id = image.properties.get("docker.image_id")
        try:
            if image_id:
                # The id, not the tag: the default tag (aml/<name>:<version>) is shared by the images
                # of that name and version of every workspace, and the last build takes it.
                api.inspect_image(image_id)
            else:
                api.inspect_image(image.location)
        except ImageNotFound:
            which = f"{image.location!r} ({image_id})" if image_id else repr(image.location)
            raise ValidationError(
                f"Docker image {which} of image '{image.id}' is not in the Docker engine at "
                f"{engine_url(self.options)}; build the image again (it was removed, or built by another engine) "
                "or load it into this engine (docker pull / docker load)"
            ) from None
        except _ENGINE_ERRORS as exc:
            raise ValidationError(
                f"Cannot look up Docker image {image.location!r} of image '{image.id}' in the Docker engine at "
                f"{engine_url(self.options)}: {exc}"
            ) from exc

    def image_payload(self, image: ImageRecord) -> dict[str, Any]:
        payload: dict[str, Any] = {"id": image.id, "reference": image.location}
        if image.properties.get("docker.image_id"):
            payload["image_id"] = image.properties["docker.image_id"]
        return payload

    # ------------------------------------------------------------------------------ replicas

    def start(self, spec: ReplicaSpec) -> ContainerReplica:
        config_dir = Path(spec.config_dir).resolve()
        if not (config_dir / CONFIG_FILE).is_file():
            # Docker would create a missing mount source as an empty root-owned folder.
            raise DeploymentError(f"Replica {spec.label}: no {CONFIG_FILE} in {config_dir}", deployment=spec.deployment)
        _make_readable(config_dir)
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        spec.log_path.touch()
        image = str(spec.image.get("image_id") or spec.image["reference"])
        name = container_name(spec)
        command = [
            "python", "-m", SCORING_MODULE, "--bundle", BUNDLE_DIR, "--host", "127.0.0.1", "--port", str(spec.port),
            "--config", f"{CONTAINER_CONFIG_DIR}/{CONFIG_FILE}", "--log-level", REPLICA_LOG_LEVEL,
        ]
        environment = {}
        if spec.cpu_cores:  # the math libraries would start a thread per host core, above the quota
            threads = str(max(1, math.ceil(spec.cpu_cores)))
            environment = {var: threads for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        labels = {
            LABEL_WORKSPACE: spec.workspace,
            LABEL_DEPLOYMENT: spec.deployment,
            LABEL_GENERATION: str(spec.generation),
            LABEL_REPLICA: str(spec.index),
            LABEL_HOME: _home(),
        }
        memory = int(spec.memory_gb * (1 << 30)) if spec.memory_gb else None
        try:
            api = self.api()
            host_config = api.create_host_config(
                network_mode="host",
                binds={str(config_dir): {"bind": CONTAINER_CONFIG_DIR, "mode": "ro"}},
                nano_cpus=int(spec.cpu_cores * 1e9) if spec.cpu_cores else None,
                mem_limit=memory,
                memswap_limit=memory,  # the limit, not the limit plus as much swap
                init=True,  # SIGTERM reaches the server even before it installs its handlers
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
            )
            container = api.create_container(
                image, command=command, name=name, labels=labels, environment=environment or None,
                host_config=host_config,
            )
        except ImageNotFound as exc:
            raise DeploymentError(
                f"Replica {spec.label}: Docker image {image!r} ({spec.image.get('reference')}) of image "
                f"'{spec.image.get('id')}' is not in the Docker engine; build the image again",
                deployment=spec.deployment,
            ) from exc
        except (*_ENGINE_ERRORS, AmlError) as exc:
            raise DeploymentError(
                f"Replica {spec.label}: cannot create its container: {exc}", deployment=spec.deployment
            ) from exc
        container_id = str(container["Id"])
        replica = ContainerReplica(spec, self, container_id, name)
        try:
            api.start(container_id)
        except _ENGINE_ERRORS as exc:
            replica.stop(0)
            raise DeploymentError(
                f"Replica {spec.label}: cannot start container {name}: {exc}", deployment=spec.deployment
            ) from exc
        replica._follower = _LogFollower(self.options, container_id, spec.log_path, name)
        replica._follower.start()
        return replica

    def cleanup(self, workspace: str, deployment: str, runtime: dict[str, Any]) -> None:
        """Remove the containers of ``workspace``/``deployment`` (of this AML home) that a killed
        supervisor left: found by their labels, and by the ids in its last ``runtime``."""
        try:
            api = self.api()
            found = api.containers(
                all=True, quiet=True,
                filters={"label": [f"{LABEL_WORKSPACE}={workspace}", f"{LABEL_DEPLOYMENT}={deployment}",
                                   f"{LABEL_HOME}={_home()}"]},
            )
        except (*_ENGINE_ERRORS, AmlError) as exc:
            log.warning("Cannot clean up the containers of deployment %r: %s", deployment, exc)
            return
        ids = [str(item["Id"]) for item in found]
        for replica in runtime.get("replicas") or []:
            recorded = replica.get("container") if isinstance(replica, dict) else None
            if isinstance(recorded, str) and recorded not in ids:
                with contextlib.suppress(*_ENGINE_ERRORS):
                    labels = api.inspect_container(recorded)["Config"].get("Labels") or {}
                    if (labels.get(LABEL_WORKSPACE), labels.get(LABEL_DEPLOYMENT)) == (workspace, deployment):
                        ids.append(recorded)
        for container_id in ids:
            log.info("Removing container %s left by a previous supervisor of %r", container_id[:12], deployment)
            try:
                api.remove_container(container_id, force=True)
            except NotFound:
                pass
            except _ENGINE_ERRORS as exc:
                log.warning("Cannot remove container %s: %s", container_id[:12], exc)


register_replica_driver(KIND, ContainerReplicaDriver)


# ------------------------------------------------------------------------------------ helpers


def container_name(spec: ReplicaSpec) -> str:
    """``aml-<workspace>-<deployment>-g<generation>-r<index>-<random>``: readable in ``docker ps``,
    and unique, as a container left by a killed supervisor may still hold the same prefix."""

    def part(text: str) -> str:
        return _NAME_PART.sub("-", text).strip("-._")[:40] or "x"

    return f"aml-{part(spec.workspace)}-{part(spec.deployment)}-g{spec.generation}-r{spec.index}-{uuid.uuid4().hex[:6]}"


def _home() -> str:
    return str(aml_home().expanduser().resolve())


def _make_readable(config_dir: Path) -> None:
    """Let the container's user (uid 10001, not the owner) search the folder and read the config:
    pytest's and mkdtemp's folders are 0700, a plain open() makes 0644 only under umask 022."""
    for path, bits in ((config_dir, 0o055), (config_dir / CONFIG_FILE, 0o044)):
        mode = path.stat().st_mode
        if mode & bits != bits:
            try:
                path.chmod(mode | bits)
            except OSError as exc:
                raise DeploymentError(
                    f"{path} must be readable by the container's user (uid 10001): {exc}"
                ) from exc


class _LogFollower(threading.Thread):
    """Appends a container's stdout and stderr to the replica's log file until the container ends.

    It has its own engine client: the stream holds a connection for the container's whole life.
    """

    def __init__(self, options: DockerBuildOptions, container_id: str, path: Path, name: str) -> None:
        super().__init__(name=f"aml-logs-{name}", daemon=True)
        self.options = options
        self.container_id = container_id
        self.path = path

    def run(self) -> None:
        try:
            api = docker_api_client(self.options)
        except Exception as exc:  # a thread has no caller to raise to
            log.warning("Cannot follow the logs of container %s: %s", self.container_id[:12], exc)
            return
        try:
            with open(self.path, "ab") as out:
                for chunk in api.logs(self.container_id, stdout=True, stderr=True, stream=True, follow=True):
                    out.write(chunk)
                    out.flush()
        except NotFound:
            pass  # removed before the stream started
        except Exception as exc:
            log.warning("Stopped following the logs of container %s: %s", self.container_id[:12], exc)
        finally:
            with contextlib.suppress(Exception):
                api.close()
