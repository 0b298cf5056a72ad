"""The fixed cost of one run on a compute target: submit -> Running -> Completed for a trivial script.

    AML_HOME=$(mktemp -d) .venv/bin/python -m tests.system.measure_run_cost --kind docker --runs 5

Serves a fresh workspace on 127.0.0.1 (SQLite, as the tests do), registers a target of ``--kind``,
submits one warm-up run (it builds what the kind caches: the docker target's images) and then
``--runs`` runs of ``print('hi')``, timing each from the submit call: submit returned, Running seen,
Completed seen (the status is polled every 20 ms). Prints one line per run and the medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from airflow_aml.entities import RunStatus
from airflow_aml.runconfig import EnvironmentSpec, RunConfiguration
from airflow_aml.workspace import Workspace
from tests.unit.service.served import serve


def measure(ws: Workspace, src: Path, target: str, environment: EnvironmentSpec) -> dict[str, float]:
    started = time.monotonic()
    config = RunConfiguration(script="hi.py", target=target, environment=environment)
    run = ws.experiment("cost").submit(src, config)
    times = {"submit": time.monotonic() - started}
    while True:
        status = ws.store.get_run(run.id).status
        if "running" not in times and status in (RunStatus.RUNNING, RunStatus.FINALIZING, RunStatus.COMPLETED):
            times["running"] = time.monotonic() - started
        if status.is_terminal:
            times["completed"] = time.monotonic() - started
            if status is not RunStatus.COMPLETED:
                raise SystemExit(f"run {run.id} ended {status}:\n{run.get_log_text()}")
            return times
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="docker")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--config", type=json.loads, default={},
                        help='the target\'s config as JSON, e.g. \'{"master": "local[1]"}\' for --kind spark')
    parser.add_argument("--pip", action="append", default=[],
                        help="a requirement of a virtualenv environment (repeatable; default: kind current). "
                             "A new one, e.g. 'six!=0.0.<random>', makes the warm-up a cold build")
    args = parser.parse_args()
    environment = EnvironmentSpec(kind="virtualenv", pip=tuple(args.pip)) if args.pip else EnvironmentSpec()
    with tempfile.TemporaryDirectory(prefix="aml-cost-") as tmp, serve(f"sqlite:///{tmp}/service.db") as served:
        ws = Workspace.create("cost", store_uri=served.uri_for("bench"), datastore_root=Path(tmp) / "datastore")
        target = f"{args.kind}-bench"
        ws.register_compute_target(target, kind=args.kind, config=args.config)
        src = Path(tmp) / "src"
        src.mkdir()
        (src / "hi.py").write_text("print('hi')\n")
        warm = measure(ws, src, target, environment)
        print(f"warm-up (builds caches): {json.dumps({k: round(v, 2) for k, v in warm.items()})}")
        results = [measure(ws, src, target, environment) for _ in range(args.runs)]
        for i, result in enumerate(results, 1):
            print(f"run {i}: {json.dumps({k: round(v, 2) for k, v in result.items()})}")
        medians = {key: round(statistics.median(r[key] for r in results), 2) for key in results[0]}
        print(f"median of {args.runs} ({args.kind}): {json.dumps(medians)}")


if __name__ == "__main__":
    main()
