"""Serving throughput with ``wrk`` as the load generator: ours (adaptive batching on and off) against
``mlflow models serve`` and a bare FastAPI floor, at several connection counts.

The Python load generator of ``serving.py`` uses a large share of this machine's two cores
itself; ``wrk`` (C, one thread, Debian's package) costs a fraction of that, so the servers get the
CPU. The same scikit-learn model (LogisticRegression on iris, the built-in sklearn scorer, which
answers predictions and probabilities; the floor does the same; MLflow predicts only) is served:

- ``ours``: a real local deployment (front + 1 replica, key auth and telemetry on), defaults:
  adaptive batching on;
- ``ours direct``: the deployment's image on the scoring server alone (no front), batching on;
- ``ours direct, no batching``: the same with ``max_batch_size: 1`` (the server as it was);
- ``mlflow``: ``mlflow models serve --env-manager local``;
- ``fastapi floor``: a bare FastAPI endpoint doing the same predict in a worker thread.

One server is under load at a time. Every server's answer to the request wrk sends is checked
first (status 200 and the model's prediction); during the load wrk counts non-2xx answers,
which are printed and left out of the rates (2xx answers per second). Each server's processes'
CPU time per request is printed beside (for ours: the front, i.e. the supervisor, and the
replicas). Each point is ``--seconds`` of load after a short warm-up, bounded by wrk's own duration.

    python benchmarks/serving_wrk.py [--connections 4,16,64] [--seconds 5]

The last line is ``ratio: <ours/MLflow requests/s at 16 connections (or the middle count)>x``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving as base  # the servers, the workspace and the deployment of serving.py

ROW = [5.1, 3.5, 1.4, 0.2]
LUA = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{auth}
"""


@dataclass
class Point:
    rate: float  # 2xx answers per second: a fast 429 is not throughput
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    cpu_us: dict[str, float] = field(default_factory=dict)  # CPU microseconds per request, by part


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def _wrk(url: str, script: Path, connections: int, seconds: float) -> Point:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "10s",
               "-s", str(script), url]
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    latency = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)", output, re.M))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    requests, refused = int(total.group(1)), int(non_2xx.group(1)) if non_2xx else 0  # type: ignore[union-attr]
    took = _ms(total.group(2) + total.group(3)) / 1000.0  # type: ignore[union-attr]
    return Point(
        rate=(requests - refused) / took, p50_ms=_ms(latency["50"]), p99_ms=_ms(latency["99"]),
        requests=requests, non_2xx=refused,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


def _script(root: Path, name: str, endpoint: base.Endpoint) -> Path:
    body = json.dumps(endpoint.make_body(ROW))
    auth = "\n".join(f'wrk.headers["{key}"] = "{value}"' for key, value in endpoint.headers.items())
    path = root / f"{name.replace(' ', '-').replace(',', '')}.lua"
    path.write_text(LUA.format(body=json.dumps(body), auth=auth))
    return path


def _check(endpoint: base.Endpoint, expected: int) -> None:
    response = httpx.post(endpoint.url, json=endpoint.make_body(ROW), headers=endpoint.headers, timeout=30)
    response.raise_for_status()
    body = response.json()
    predictions = body["predictions"] if isinstance(body, dict) else body
    if predictions != [expected]:
        raise SystemExit(f"{endpoint.name} answered {body!r}, not the prediction {expected}")


def _direct(root: Path, image: object, key: str, name: str, extra: dict[str, object]) -> base.Target:
    target = base._direct_target(root, image, key)
    config = root / f"{name.replace(' ', '-').replace(',', '')}.json"
    from airflow_aml.runtime.scoring import hash_key

    config.write_text(json.dumps({"primary_key_hash": hash_key(key), **extra}))
    command = list(target.command)
    command[command.index("--config") + 1] = str(config)
    return base.Target(name, command, target.env, port=target.port, ready_path=target.ready_path,
                       score_path=target.score_path, make_body=target.make_body, headers=target.headers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", default="4,16,64", help="comma-separated connection counts")
    parser.add_argument("--seconds", type=float, default=5.0, help="of load per server and connection count")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of untimed load before each point")
    args = parser.parse_args()
    counts = [int(c) for c in args.connections.split(",")]
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")

    import warnings

    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    warnings.filterwarnings("ignore")
    features, target = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(features, target)
    expected = int(model.predict([ROW])[0])

    results: dict[str, dict[int, Point]] = {}
    with tempfile.TemporaryDirectory(prefix="aml-serving-wrk-") as tmp, ExitStack() as servers:
        root = Path(tmp)
        ws, image = base._workspace_image(root, model, builtin=True)
        deployment = servers.enter_context(base._deployment(ws, image, 1, True))
        key = deployment.get_keys()[0]
        endpoints = [base._deployment_endpoint(deployment)]
        targets = [
            _direct(root, image, key, "ours direct", {}),
            _direct(root, image, key, "ours direct, no batching", {"max_batch_size": 1}),
            *base._other_targets(root, model, builtin=True),
        ]
        for target_ in targets:
            log = root / f"{target_.name.replace(' ', '-').replace(',', '')}.log"
            endpoints.append(servers.enter_context(base._server(target_, log)))
        for endpoint in endpoints:
            _check(endpoint, expected)
            script = _script(root, endpoint.name, endpoint)
            groups = endpoint.groups()
            for count in counts:
                _wrk(endpoint.url, script, count, args.warmup)
                before = base._cpu_seconds(groups)
                point = _wrk(endpoint.url, script, count, args.seconds)
                after = base._cpu_seconds(groups)
                # CPU time per answer (any status) of each part: moves far less with the machine's
                # other load than the rates do.
                point.cpu_us = {part: (after[part] - before[part]) * 1e6 / max(1, point.requests) for part in groups}
                results.setdefault(endpoint.name, {})[count] = point
                cpu = "  ".join(f"{part} {us:.0f}" for part, us in point.cpu_us.items())
                print(f"{endpoint.name:26} c={count:<3} {point.rate:9.0f} req/s  p50 {point.p50_ms:7.2f} ms  "
                      f"p99 {point.p99_ms:7.2f} ms  non-2xx {point.non_2xx}  socket errors {point.socket_errors}  "
                      f"CPU us/request: {cpu}", file=sys.stderr, flush=True)

    print(f"\nrequests/s (p99 ms) with wrk -t1, single-row requests, {args.seconds:g} s per point, "
          f"{os.cpu_count()} cores")
    print(f"{'server':26}" + "".join(f"{f'c={c}':>18}" for c in counts))
    for name, points in results.items():
        print(f"{name:26}" + "".join(f"{f'{points[c].rate:.0f} ({points[c].p99_ms:.1f})':>18}" for c in counts))
    failed = {name: sum(p.non_2xx for p in points.values()) for name, points in results.items()}
    # Past a server's admission limit (ours: 4 running + 16 queued per replica) the answer is a
    # 429 at once, by design: counted here, left out of the rates.
    print("non-2xx answers (429s past the admission limit): " + ", ".join(f"{name} {n}" for name, n in failed.items()))
    print("CPU us/request of ours' parts: " + ", ".join(
        f"c={c} " + " + ".join(f"{part} {us:.0f}" for part, us in results["ours"][c].cpu_us.items()) for c in counts))
    middle = 16 if 16 in counts else counts[len(counts) // 2]
    ours, mlflow, floor = results["ours"][middle], results["mlflow"][middle], results["fastapi floor"][middle]
    direct, unbatched = results["ours direct"][middle], results["ours direct, no batching"][middle]
    print(f"at c={middle}: ours/MLflow {ours.rate / mlflow.rate:.2f}x, ours/floor {ours.rate / floor.rate:.2f}x, "
          f"direct/floor {direct.rate / floor.rate:.2f}x, batching on/off (direct) {direct.rate / unbatched.rate:.2f}x")
    if any(p.socket_errors for points in results.values() for p in points.values()):
        print("socket errors happened: see the lines above", file=sys.stderr)
    print(f"ratio: {ours.rate / mlflow.rate:.2f}x")


if __name__ == "__main__":
    main()
