"""Deploy to first 200 OK: a local deployment against ``mlflow models serve``, same model, one run.

The image is built once first (the local builder: its environment cached, as on any second
deploy of a model); then each round measures, for ours, ``Deployment.create(..., wait=False)``
until the scoring URI answers a keyed request with 200 (supervisor, front and one replica started,
the model loaded), the deployment deleted after; for MLflow, starting ``mlflow models serve
--env-manager local`` until ``/invocations`` answers 200, the server stopped after. The median of
the rounds is reported, beside the issue's goal (at most 3 s for ours).

    python benchmarks/deploy_cold_start.py [--rounds 3]

The last line is ``ratio: <x>x``: MLflow's median over ours (above 1: ours is up sooner).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving as base
from cold_start_phases import LogTimeline

ROW = [5.1, 3.5, 1.4, 0.2]
TIMEOUT = 180.0
GOAL_S = 3.0


def _first_200(url: str, body: dict[str, Any], headers: dict[str, str], started: float) -> float:
    with httpx.Client(timeout=5) as client:
        while time.monotonic() - started < TIMEOUT:
            try:
                if client.post(url, json=body, headers=headers).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.02)
    raise RuntimeError(f"{url} gave no 200 within {TIMEOUT} s")


def ours_once(ws: Any, image: Any, phases: bool = False) -> float:
    from airflow_aml.deployments import Deployment
    from airflow_aml.deployments.paths import deployment_dir

    Deployment.delete_if_exists(ws, base.DEPLOYMENT, timeout=120)
    timeline = LogTimeline(deployment_dir(ws.name, base.DEPLOYMENT), time.monotonic()) if phases else None
    if timeline is not None:
        timeline.__enter__()
    started = timeline.started if timeline is not None else time.monotonic()
    try:
        deployment = Deployment.create(ws, base.DEPLOYMENT, image, config={"replicas": 1}, wait=False)
        spawned = time.monotonic() - started
        key = deployment.keys[0]
        took = _first_200(str(deployment.scoring_uri), {"data": [ROW]}, {"Authorization": f"Bearer {key}"}, started)
        if timeline is not None:
            time.sleep(0.05)  # the last lines reach the tail
            print(f"  phases (s since create): {timeline.line(spawned, took)}", file=sys.stderr, flush=True)
        return took
    finally:
        if timeline is not None:
            timeline.__exit__(None, None, None)
        Deployment.delete_if_exists(ws, base.DEPLOYMENT, timeout=120)


def mlflow_once(target: base.Target, log: Path) -> float:
    started = time.monotonic()
    with log.open("wb") as handle:
        process = subprocess.Popen(target.command, env=target.env, stdout=handle, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        return _first_200(f"http://{base.HOST}:{target.port}{target.score_path}", base._inputs_body(ROW), {},
                          started)
    finally:
        base._stop(process)


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--phases", action="store_true", help="print each of our rounds' phase timeline")
    parser.add_argument("--ours-only", action="store_true", help="skip MLflow (a phase study; prints no ratio)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, target = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(features, target)
    with tempfile.TemporaryDirectory(prefix="aml-cold-start-") as tmp:
        root = Path(tmp)
        ws, image = base._workspace_image(root, model, builtin=True)
        [mlflow_target] = [t for t in base._other_targets(root, model, builtin=True) if t.name == "mlflow"]
        ours, theirs = [], []
        for round_ in range(args.rounds):  # interleaved: a load change hits both alike
            ours.append(ours_once(ws, image, args.phases))
            if args.ours_only:
                print(f"round {round_ + 1}: ours {ours[-1]:.2f} s ({_load()})", file=sys.stderr, flush=True)
                continue
            theirs.append(mlflow_once(mlflow_target, root / f"mlflow-{round_}.log"))
            print(f"round {round_ + 1}: ours {ours[-1]:.2f} s, mlflow {theirs[-1]:.2f} s ({_load()})",
                  file=sys.stderr, flush=True)
    if args.ours_only:
        print(f"deploy -> first 200, median of {args.rounds}: ours {statistics.median(ours):.2f} s (MLflow not run)")
        return
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    print(f"deploy -> first 200, median of {args.rounds}: ours (local deployment, 1 replica, key auth) "
          f"{ours_s:.2f} s (goal <= {GOAL_S:g} s: {'met' if ours_s <= GOAL_S else 'NOT met'}); "
          f"mlflow models serve {theirs_s:.2f} s")
    print(f"ratio: {theirs_s / ours_s:.2f}x")


if __name__ == "__main__":
    main()
