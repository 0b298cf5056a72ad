"""Run creation and run search: airflow-aml against MLflow, same work, same machine, one process.

Each contender creates and completes N runs in one experiment, every run with 3 metrics, 2 params
and 1 tag (ours through the SDK: ``start_logging``, ``log``, ``log_params``, ``tag``, ``complete``;
MLflow through ``MlflowClient`` with one ``log_batch`` per run), on a SQLite file in a fresh
temporary folder. Then both search the experiment:

* a metric filter that matches about half the runs (``acc > 0.5``), every page for MLflow;
* the top 10 runs by that metric.

Searches are repeated and the median is reported. Sizes default to 2,000 and 20,000 runs
(``--quick``: 2,000 only). The last line is ``ratio: <x>x``: MLflow's filter time over ours at the
largest size.

    python benchmarks/search.py [--quick] [--sizes 2000 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path


def _median_ms(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    times, found = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        found = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, found


def _values(n: int) -> list[tuple[float, float, float]]:
    rng = random.Random(16)
    return [(rng.random(), rng.random(), rng.random()) for _ in range(n)]


def bench_ours(root: Path, n: int, repeat: int) -> dict[str, float]:
    os.environ["AML_HOME"] = str(root / "aml-home")
    from airflow_aml.workspace import Workspace

    ws = Workspace.create(f"bench{n}", store_uri=f"sqlite:///{root / f'aml-{n}.db'}", datastore_root=root / "ds")
    exp = ws.experiment("search")
    start = time.perf_counter()
    for i, (acc, loss, f1) in enumerate(_values(n)):
        run = exp.start_logging()
        run.log("acc", acc)
        run.log("loss", loss)
        run.log("f1", f1)
        run.log_params({"lr": "0.01", "seed": str(i)})
        run.tag("kind", "bench")
        run.complete()
    create_s = time.perf_counter() - start
    filter_ms, found = _median_ms(lambda: len(exp.search_runs(metrics=["acc > 0.5"])), repeat)
    top_ms, top = _median_ms(lambda: len(exp.search_runs(order_by="acc", max_results=10)), repeat)
    assert top == 10
    return {"create_s": create_s, "filter_ms": filter_ms, "found": found, "top_ms": top_ms}


def bench_mlflow(root: Path, n: int, repeat: int) -> dict[str, float]:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / f'mlflow-{n}.db'}")
    experiment_id = client.create_experiment(f"search-{n}")
    start = time.perf_counter()
    for i, (acc, loss, f1) in enumerate(_values(n)):
        run_id = client.create_run(experiment_id).info.run_id
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric("acc", acc, now, 0), Metric("loss", loss, now, 0), Metric("f1", f1, now, 0)],
            params=[Param("lr", "0.01"), Param("seed", str(i))],
            tags=[RunTag("kind", "bench")],
        )
        client.set_terminated(run_id)
    create_s = time.perf_counter() - start

    def all_pages() -> int:
        found, token = 0, None
        while True:
            page = client.search_runs([experiment_id], "metrics.acc > 0.5", max_results=1000, page_token=token)
            found += len(page)
            token = page.token
            if not token:
                return found

    filter_ms, found = _median_ms(all_pages, repeat)
    top_ms, top = _median_ms(
        lambda: len(client.search_runs([experiment_id], order_by=["metrics.acc DESC"], max_results=10)), repeat
    )
    assert top == 10
    return {"create_s": create_s, "filter_ms": filter_ms, "found": found, "top_ms": top_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000, 20_000], help="runs per experiment")
    parser.add_argument("--repeat", type=int, default=5, help="searches per measurement (median)")
    parser.add_argument("--quick", action="store_true", help="2,000 runs only, 3 repeats")
    args = parser.parse_args()
    sizes, repeat = ([2_000], 3) if args.quick else (args.sizes, args.repeat)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    ratio = 0.0
    ours_top: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="aml-bench-") as tmp:
        for n in sizes:
            ours = bench_ours(Path(tmp), n, repeat)
            theirs = bench_mlflow(Path(tmp), n, repeat)
            assert ours["found"] == theirs["found"], (ours["found"], theirs["found"])
            ours_top[n] = ours["top_ms"]
            print(f"[{n:,} runs] create+complete (3 metrics, 2 params, 1 tag each): "
                  f"ours {ours['create_s']:.2f} s, MLflow {theirs['create_s']:.2f} s, "
                  f"{theirs['create_s'] / ours['create_s']:.1f}x")
            print(f"[{n:,} runs] filter acc > 0.5 ({ours['found']:,} runs): ours {ours['filter_ms']:.1f} ms, "
                  f"MLflow {theirs['filter_ms']:.1f} ms (all pages), {theirs['filter_ms'] / ours['filter_ms']:.1f}x")
            print(f"[{n:,} runs] top 10 by acc: ours {ours['top_ms']:.2f} ms, MLflow {theirs['top_ms']:.1f} ms, "
                  f"{theirs['top_ms'] / ours['top_ms']:.1f}x")
            ratio = theirs["filter_ms"] / ours["filter_ms"]
    if len(ours_top) > 1:
        small, large = min(ours_top), max(ours_top)
        print(f"ours top 10 at {large:,} vs {small:,} runs: {ours_top[large] / ours_top[small]:.2f}x the time")
    print(f"ratio: {ratio:.1f}x")


if __name__ == "__main__":
    main()
