"""A Spark standalone cluster on 127.0.0.1 for tests: one master and one worker (1 core, 1g).

The pyspark package has no ``sbin/start-master.sh``; its ``bin/spark-class`` starts the daemons'
main classes directly. Both run in sessions of their own and are killed (by process group) when
the ``with`` block ends, whatever happened inside it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from airflow_aml.compute.spark.supervisor import spark_home
from tests.unit.service.served import free_port


@dataclass(frozen=True)
class Cluster:
    master_url: str  # spark://127.0.0.1:PORT
    web_url: str  # the master's web UI; /json/ is its state

    def state(self) -> dict:
        with urllib.request.urlopen(self.web_url + "/json/", timeout=5) as answer:
            return json.loads(answer.read())


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([str(spark_home() / "bin" / "spark-class"), *args], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)


@contextmanager
def standalone_cluster(folder: Path, *, timeout: float = 120.0) -> Iterator[Cluster]:
    folder.mkdir(parents=True, exist_ok=True)
    port, web_port, worker_web_port = free_port(), free_port(), free_port()
    env = {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_WORKER_DIR": str(folder / "work")}
    cluster = Cluster(master_url=f"spark://127.0.0.1:{port}", web_url=f"http://127.0.0.1:{web_port}")
    procs = [_start(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                     "--webui-port", str(web_port)], folder / "master.log", env)]
    try:
        procs.append(_start(["org.apache.spark.deploy.worker.Worker", cluster.master_url, "--host", "127.0.0.1",
                             "--cores", "1", "--memory", "1g", "--webui-port", str(worker_web_port)],
                            folder / "worker.log", env))
        deadline = time.monotonic() + timeout
        while True:
            with suppress(OSError, ValueError):
                if any(w.get("state") == "ALIVE" for w in cluster.state().get("workers", [])):
                    break
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                logs = "\n".join((folder / f"{n}.log").read_text()[-2000:] for n in ("master", "worker")
                                 if (folder / f"{n}.log").exists())
                raise RuntimeError(f"the standalone Spark cluster did not come up:\n{logs}")
            time.sleep(0.5)
        yield cluster
    finally:
        for proc in reversed(procs):
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
