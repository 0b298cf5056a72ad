"""``python -m airflow_aml.deployments.supervisor --dir DIR``: one deployment's supervisor process.

The arguments, the deployment's lock (one supervisor per folder), the pid file, the event loop and
the signal handlers; the folder removed last when the deployment was deleted. A create's
replicas are started before the supervisor's machinery is imported (``prestart``).
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from airflow_aml.config import ENV_STORE_URI
from airflow_aml.deployments.paths import PID_FILE, SUPERVISOR_MODULE
from airflow_aml.deployments.supervisor.prestart import prestart_replicas

log = logging.getLogger(__package__)  # the supervisor's one logger, named as before the split

LOCK_FILE = "supervisor.lock"


def _lock(folder: Path) -> Any:
    handle = open(folder / LOCK_FILE, "a+")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=SUPERVISOR_MODULE, description="Supervise one deployment (internal).")
    parser.add_argument("--dir", required=True, help="the deployment's folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    folder = Path(args.dir).resolve()
    lock = _lock(folder)
    if lock is None:
        log.info("Another supervisor runs %s; exiting", folder)
        return 0
    (folder / PID_FILE).write_text(str(os.getpid()))
    # A create's replicas first: their start-up overlaps the imports below and the set-up.
    prestarted = prestart_replicas(folder)
    try:
        from airflow_aml.deployments.supervisor.core import Supervisor
        from airflow_aml.deployments.supervisor.server import _run_loop
        from airflow_aml.store import get_store

        store = get_store(os.environ[ENV_STORE_URI])
        supervisor = Supervisor(folder, store, prestarted)
    except BaseException:
        prestarted.release()
        raise

    async def run() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, supervisor.request_stop, f"got {signal.Signals(sig).name}")
        # Blocked by the starter until the handlers exist (see SupervisorHandle.start).
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        return await supervisor.run()

    try:
        code = _run_loop(run())
    finally:
        lock.close()
    if supervisor.deleted:  # the very last step: the SDK's delete waits for this process to end
        shutil.rmtree(folder, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
