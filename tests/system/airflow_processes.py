"""Airflow's real processes for system tests: api-server, scheduler, dag-processor, triggerer.

What a user runs, on 127.0.0.1 only: the LocalExecutor and a SQLite metadata database by default
(or another executor and database: ``executor=``, ``database_uri=``; ``start_celery_worker`` starts
``airflow celery worker`` processes for the CeleryExecutor), the simple
auth manager (every user an admin: the test gets its token from ``GET /auth/token``), and
``--skip-serve-logs`` for the scheduler and the triggerer (their log servers would listen on
0.0.0.0:8793/8794). Task logs are read from the files under ``$AIRFLOW_HOME/logs`` instead.

Each process runs in a session of its own and is stopped by its process group id (it starts
children: the LocalExecutor's workers, the triggerer's runner, the api-server's workers).
Every wait here is bounded in time.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

TERMINAL_RUN_STATES = {"success", "failed"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, check: Callable[[], Any], *, timeout: float, interval: float = 0.5) -> Any:
    """``check()``'s first truthy value; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (httpx.HTTPError, OSError) as exc:  # a process still starting
            last_error, value = exc, None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:g} s (last error: {last_error})")


class AirflowProcesses:
    """One Airflow installation in ``home``, its processes started and stopped one by one."""

    PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")

    def __init__(
        self,
        home: Path,
        *,
        dags_folder: Path,
        env: Mapping[str, str] | None = None,
        executor: str = "LocalExecutor",
        database_uri: str | None = None,
    ) -> None:
        self.home = home
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        base = {
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_uri or f"sqlite:///{home / 'airflow.db'}",
        }
        self.env = self._environment(dags_folder, {**base, **(env or {})})
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._token: str | None = None

    def _environment(self, dags_folder: Path, extra: Mapping[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__PARALLELISM": "8",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__WORKERS": "1",
                # One secret for every process: the api-server checks the tokens the workers present.
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra)
        return env

    # ------------------------------------------------------------------ processes
    def airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "airflow", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise AssertionError(f"airflow {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-3000:]}")
        return done

    def start(self, *names: str, env: Mapping[str, str] | None = None) -> None:
        """Start ``names`` (default: all four) with ``env`` on top of the installation's."""
        for name in names or self.PROCESSES:
            assert name not in self.procs, f"{name} already runs"
            args = {"scheduler": ["--skip-serve-logs"], "triggerer": ["--skip-serve-logs"]}.get(name, [])
            log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it from here
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "airflow", name, *args],
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            log.close()
        if "api-server" in (names or self.PROCESSES):
            wait_for("api-server healthy", self._healthy, timeout=120)

    def start_celery_worker(self, name: str, *, concurrency: int = 2, env: Mapping[str, str] | None = None) -> None:
        """``airflow celery worker`` as ``celery@<name>``, stopped by ``stop()`` like the others.

        ``--skip-serve-logs``: its log server would listen on 0.0.0.0:8793 (and two workers on one
        machine would clash on it); task logs are read from the files instead."""
        key = f"celery-worker-{name}"
        assert key not in self.procs, f"{key} already runs"
        log = open(self.home / f"{key}.log", "ab")  # noqa: SIM115 - the child owns it from here
        self.procs[key] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "airflow",
                "celery",
                "worker",
                "--celery-hostname",
                f"{name}@%h",
                "--concurrency",
                str(concurrency),
                "--skip-serve-logs",
                "--without-mingle",
                "--without-gossip",
            ],
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def stop(self, *names: str, timeout: float = 60) -> None:
        workers = tuple(name for name in self.procs if name.startswith("celery-worker-"))
        for name in names or (*workers, *reversed(self.PROCESSES)):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            pgid = os.getpgid(proc.pid)
            os.killpg(pgid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(pgid, signal.SIGKILL)
                proc.wait(timeout=10)
            # Children that outlived their parent (a LocalExecutor worker): same group, same end.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)

    def check_alive(self) -> None:
        dead = {name: proc.returncode for name, proc in self.procs.items() if proc.poll() is not None}
        assert not dead, f"Airflow processes exited: {dead}; logs in {self.home}"

    def pids(self) -> set[int]:
        """Every live process of the groups this object started (the processes and their children)."""
        groups = {os.getpgid(p.pid) for p in self.procs.values() if p.poll() is None}
        found = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.getpgid(int(entry.name)) in groups:
                        found.add(int(entry.name))
        return found

    def listening(self) -> set[str]:
        """``host:port`` of every TCP socket the Airflow processes listen on (from /proc)."""
        inodes = set()
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        target = os.readlink(fd)
                        if target.startswith("socket:["):
                            inodes.add(target[8:-1])
        found = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError):
                for line in Path(table).read_text().splitlines()[1:]:
                    fields = line.split()
                    if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                        found.add(_address(fields[1]))
        return found

    def log_text(self, name: str) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ------------------------------------------------------------------ REST API
    def _healthy(self) -> bool:
        self.check_alive()
        response = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5)
        return response.status_code == 200

    @property
    def token(self) -> str:
        if self._token is None:
            response = httpx.get(f"{self.base_url}/auth/token", timeout=10)
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(
            method,
            f"{self.base_url}/api/v2{path}",
            timeout=30,
            headers={"Authorization": f"Bearer {self.token}"},
            **kwargs,
        )
        if response.status_code >= 400:
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text[:1000]}")
        return response.json() if response.content else None

    def wait_for_dags(self, dag_ids: Iterable[str], *, timeout: float = 180) -> None:
        def parsed() -> bool:
            self.check_alive()
            known = {d["dag_id"] for d in self.api("GET", "/dags", params={"limit": 100})["dags"]}
            return set(dag_ids) <= known

        wait_for(f"DAGs {sorted(dag_ids)} parsed", parsed, timeout=timeout, interval=2)

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any], *, run_id: str) -> str:
        body = {"dag_run_id": run_id, "logical_date": None, "conf": dict(conf)}
        return self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def wait_for_runs(self, runs: Iterable[tuple[str, str]], *, timeout: float) -> dict[tuple[str, str], str]:
        """{(dag_id, run_id): final state} once every run ended (bounded by ``timeout``)."""
        pending = set(runs)
        states: dict[tuple[str, str], str] = {}

        def all_ended() -> bool:
            self.check_alive()
            for key in list(pending):
                state = self.dag_run(*key)["state"]
                if state in TERMINAL_RUN_STATES:
                    states[key] = state
                    pending.discard(key)
            return not pending

        wait_for(f"DAG runs {sorted(pending)} ended", all_ended, timeout=timeout, interval=2)
        return states

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})[
            "task_instances"
        ]

    def events(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The audit log of a DAG run (``running``, ``deferred``, ``state mismatch`` ...)."""
        return self.api("GET", "/eventLogs", params={"dag_id": dag_id, "run_id": run_id, "limit": 1000})["event_logs"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """The task's log file, every line's event text (the files are JSON lines)."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        lines = []
        for path in sorted(folder.glob(f"attempt={try_number}*.log")):
            for raw in path.read_text(errors="replace").splitlines():
                try:
                    lines.append(str(json.loads(raw).get("event", "")))
                except ValueError:
                    lines.append(raw)
        return "\n".join(lines)


def _address(hex_address: str) -> str:
    """``0100007F:1F91`` (as /proc/net/tcp writes it) -> ``127.0.0.1:8081``; IPv6 as ``[...]:port``."""
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return f"{socket.inet_ntop(socket.AF_INET, raw[::-1])}:{int(port, 16)}"
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return f"[{socket.inet_ntop(socket.AF_INET6, words)}]:{int(port, 16)}"
