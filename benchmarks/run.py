"""The benchmark suite: every benchmark against its peer, in one run, into ``benchmarks/results.md``.

    python benchmarks/run.py [--quick] [--only tracking,serving] [--output benchmarks/results.md]

Each entry runs one script of this folder as a subprocess (its own interpreter: no state shared
between benchmarks), keeps its whole output in ``benchmarks/logs/<script>.log`` (not committed) and
reads the headline figure from the script's last line, ``ratio: <x>x`` (or, for an entry that
reads another line of a shared script's output, that line's). The table lists ours / the
peer / the ratio / the goal and whether it is met; a failed script is a row that says so, the rest
still run. The serving entry's per-connection table also becomes ``benchmarks/serving.png``
(throughput and p99 against connections, matplotlib). ``--quick`` runs smaller sizes (about ten
minutes on a 2-core machine) and says so at the top of the file.

Needs what the scripts need: Azurite for the Blob entry (``source scripts/services.sh``; the entry
is reported as not run without it), ``wrk`` for serving (Debian: ``apt-get install wrk``; not run
without it).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
RATIO = re.compile(r"^ratio: ([0-9.]+)x\s*$")


@dataclass(frozen=True)
class Entry:
    name: str
    work: str  # what is measured, for the table
    peer: str
    args: list[str]
    quick_args: list[str]
    goal: float | None  # the ratio the issues ask for (None: none set)
    goal_text: str
    # ours / the peer's figure, read from the script's output, for the table.
    ours: Callable[[str], str]
    theirs: Callable[[str], str]
    needs_env: str | None = None
    needs_command: str | None = None  # a program the script runs (wrk)
    # The headline ratio; default the script's last line. Entries with the same args share one run.
    ratio: Callable[[str], float | None] | None = None
    lower_is_better: bool = False  # a time ratio (ours / the peer's)


def _last(pattern: str) -> Callable[[str], str]:
    """The last match's first group (the largest size of a script that runs several)."""
    compiled = re.compile(pattern, re.MULTILINE)

    def find(output: str) -> str:
        found = compiled.findall(output)
        if not found:
            return "?"
        last = found[-1]
        return (last[0] if isinstance(last, tuple) else last).strip()

    return find


def _last_ratio(pattern: str) -> Callable[[str], float | None]:
    find = _last(pattern)

    def ratio(output: str) -> float | None:
        value = find(output)
        return None if value == "?" else float(value)

    return ratio


SEARCH, SEARCH_QUICK = ["search.py"], ["search.py", "--quick"]
SUITE = [
    Entry("tracking", "log 10,000 metrics one call at a time (SQLite)", "MLflow `log_metric`",
          ["tracking.py", "--n", "10000"], ["tracking.py", "--n", "2000"], 1.0, ">= 1x",
          _last(r"^airflow-aml run\.log.*?: ([0-9,]+ metrics/s)"),
          _last(r"^MLflow log_metric.*?: ([0-9,]+ metrics/s)")),
    Entry("tracking_mlflow_client", "the `mlflow` client logging 10,000 metrics, one call each",
          "`mlflow server` (SQLite)", ["tracking.py", "--mlflow-client", "--n", "10000"],
          ["tracking.py", "--mlflow-client", "--n", "2000"], 1.0, ">= 1x",
          _last(r"to our service, .*?: ([0-9,]+ calls/s)"), _last(r"to mlflow server, .*?: ([0-9,]+ calls/s)")),
    Entry("registry", "register 200 versions of one model, p50 per call", "`mlflow.register_model`",
          ["registry.py", "--n", "200"], ["registry.py", "--n", "50"], 10.0, ">= 10x, <= 2 ms p50",
          _last(r"ours: register_model\(path=\).*?p50\s+([0-9.]+ ms)"),
          _last(r"MLflow: mlflow\.register_model.*?p50\s+([0-9.]+ ms)")),
    Entry("run_creation", "create + complete runs with 3 metrics, 2 params, 1 tag (largest size)",
          "MLflow client, `log_batch` per run", SEARCH, SEARCH_QUICK, 5.0, ">= 5x",
          _last(r"create\+complete.*?ours ([0-9.]+ s)"), _last(r"create\+complete.*?MLflow ([0-9.]+ s)"),
          ratio=_last_ratio(r"create\+complete.*?, ([0-9.]+)x$")),
    Entry("search_filter", "metric filter returning half the runs (largest size)", "MLflow `search_runs`, all pages",
          SEARCH, SEARCH_QUICK, 10.0, ">= 10x",
          _last(r"filter acc.*?ours ([0-9.]+ ms)"), _last(r"filter acc.*?MLflow ([0-9.]+ ms)")),
    Entry("search_top10", "top 10 runs by a metric (largest size)", "MLflow `search_runs`",
          SEARCH, SEARCH_QUICK, None, "20,000 within 1.5x of 2,000",
          _last(r"top 10 by acc: ours ([0-9.]+ ms)"), _last(r"top 10 by acc: .*?MLflow ([0-9.]+ ms)"),
          ratio=_last_ratio(r"top 10 by acc: .*?, ([0-9.]+)x$")),
    Entry("ui_runs_table", "the UI's runs page at 20,000 runs: search + latest metrics of 50, slowest p50",
          "the 1 s goal (issue 13)", ["ui_runs_table.py"], ["ui_runs_table.py", "--runs", "2000"], 1.0, "< 1 s",
          _last(r"^slowest p50 ([0-9.]+ ms)"), lambda output: "1000 ms"),
    Entry("serving", "requests/s (p99 ms) at 16 connections through the deployment's URI (wrk)",
          "`mlflow models serve`", ["serving_wrk.py", "--connections", "4,16,64", "--seconds", "5"],
          ["serving_wrk.py", "--connections", "4,16,64", "--seconds", "2"], 5.0, ">= 5x, p99 <= 10 ms",
          _last(r"^ours\s+\S+ \(\S+\)\s+(\S+ \(\S+\))"), _last(r"^mlflow\s+\S+ \(\S+\)\s+(\S+ \(\S+\))"),
          needs_command="wrk"),
    Entry("deploy_cold_start", "deploy -> first 200 OK, cached environment, median", "`mlflow models serve` start",
          ["deploy_cold_start.py", "--rounds", "3"], ["deploy_cold_start.py", "--rounds", "2"], None,
          "ours <= 3 s", _last(r"ours \(local deployment.*?\) ([0-9.]+ s)"),
          _last(r"mlflow models serve ([0-9.]+ s)$")),
    Entry("example_dag", "the example DAG end to end, retraining round (train -> register -> image -> deploy)",
          "the same with MLflow: a script + `mlflow models serve`", ["example_dag.py", "--rounds", "2"],
          ["example_dag.py", "--rounds", "2"], None, "-",
          _last(r"^example DAG, last round: ours ([0-9.]+ s)"),
          _last(r"^example DAG, last round: .*?MLflow ([0-9.]+ s)")),
    Entry("blob_transfer", "200 MB up + down to Azurite, best round (time ratio: below 1 = ours faster)",
          "`upload_blob`/`download_blob` defaults", ["blob_transfer.py", "--mb", "200"],
          ["blob_transfer.py", "--mb", "50", "--rounds", "1"], 1.2, "<= 1.2x",
          _last(r"ours ([0-9.]+ s)$"), _last(r"sdk ([0-9.]+ s),"),
          needs_env="AML_TEST_AZURITE_CONNECTION_STRING", lower_is_better=True),
]


@dataclass
class Outcome:
    entry: Entry
    ratio: float | None
    ours: str
    theirs: str
    seconds: float
    error: str | None = None

    @property
    def met(self) -> str:
        if self.error or self.ratio is None:
            return "-"
        if self.entry.name == "deploy_cold_start":
            seconds = float(self.ours.split()[0]) if self.ours[:1].isdigit() else float("inf")
            return "yes" if seconds <= 3.0 else "no"
        if self.entry.goal is None:
            return "-"
        if self.entry.lower_is_better:
            return "yes" if self.ratio <= self.entry.goal else "no"
        return "yes" if self.ratio >= self.entry.goal else "no"


def run_script(args: list[str], log: Path) -> tuple[int, str, float]:
    """Run ``benchmarks/<args[0]>``: (exit code, stdout, seconds); stderr and stdout kept in ``log``."""
    started = time.monotonic()
    print(f"python benchmarks/{' '.join(args)}", flush=True)
    with log.open("w") as handle:
        result = subprocess.run([sys.executable, str(HERE / args[0]), *args[1:]], stdout=subprocess.PIPE,
                                stderr=handle, text=True, cwd=HERE.parent, timeout=3600)
    with log.open("a") as handle:
        handle.write("\n--- stdout ---\n" + result.stdout)
    return result.returncode, result.stdout, time.monotonic() - started


def run_entry(entry: Entry, quick: bool, logs: Path, done: dict[tuple[str, ...], tuple[int, str, float]]) -> Outcome:
    if entry.needs_env and not os.environ.get(entry.needs_env):
        return Outcome(entry, None, "-", "-", 0.0, error=f"not run: {entry.needs_env} unset")
    if entry.needs_command and shutil.which(entry.needs_command) is None:
        return Outcome(entry, None, "-", "-", 0.0, error=f"not run: {entry.needs_command} not installed")
    args = entry.quick_args if quick else entry.args
    key = tuple(args)
    if key not in done:  # entries reading the same script's output share its run
        done[key] = run_script(args, logs / f"{Path(args[0]).stem}.log")
    code, output, seconds = done[key]
    lines = [line for line in output.strip().splitlines() if line.strip()]
    match = RATIO.match(lines[-1]) if lines else None
    ratio = entry.ratio(output) if entry.ratio else (float(match.group(1)) if match else None)
    if code != 0 or match is None or ratio is None:
        return Outcome(entry, None, "-", "-", seconds,
                       error=f"failed (exit {code}; see benchmarks/logs/{Path(args[0]).stem}.log)")
    print(f"  {entry.name}: ratio {ratio:g}x ({seconds:.0f} s)", flush=True)
    return Outcome(entry, ratio, entry.ours(output), entry.theirs(output), seconds)


def serving_plot(log: Path, png: Path) -> bool:
    """Throughput and p99 against connections from the serving entry's table (False: no table)."""
    text = log.read_text() if log.is_file() else ""
    header = re.search(r"^server\s+((?:\s*c=\d+)+)\s*$", text, re.MULTILINE)
    if header is None:
        return False
    counts = [int(c) for c in re.findall(r"c=(\d+)", header.group(1))]
    rows: dict[str, list[tuple[float, float]]] = {}
    for line in text[header.end():].splitlines()[1:]:
        cells = re.findall(r"(\d+) \(([0-9.]+)\)", line)
        if len(cells) != len(counts):
            break
        rows[line[:26].strip()] = [(float(rate), float(p99)) for rate, p99 in cells]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, points in rows.items():
        left.plot(counts, [p[0] for p in points], marker="o", label=name)
        right.plot(counts, [p[1] for p in points], marker="o", label=name)
    left.set(xlabel="connections (wrk)", ylabel="requests/s", title="throughput", xscale="log")
    right.set(xlabel="connections (wrk)", ylabel="p99 latency (ms)", title="p99", xscale="log", yscale="log")
    from matplotlib.ticker import NullLocator

    for axis in (left, right):
        axis.xaxis.set_minor_locator(NullLocator())  # log-scale minor ticks would be labelled too
        axis.set_xticks(counts, [str(c) for c in counts])
        axis.grid(True, alpha=0.3)
    left.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(png, dpi=110)
    plt.close(figure)
    return True


def write_results(outcomes: list[Outcome], quick: bool, output: Path, plotted: bool, note: str = "") -> None:
    lines = [
        "# Benchmark results",
        "",
        f"`python benchmarks/run.py{' --quick' if quick else ''}` on {platform.node() or 'this machine'} "
        f"({os.cpu_count()} CPUs, Python {platform.python_version()}), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."
        + (" Quick sizes: smaller than the goals are stated for." if quick else ""),
        *([f"Conditions: {note}"] if note else []),
        "Each row ran ours and the peer in the same run. A ratio is how many times better ours is (throughput: "
        "ours / the peer's; time: the peer's / ours), but for blob_transfer: ours / the SDK's time.",
        "",
        "| benchmark | work | ours | peer | peer's figure | ratio | goal | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        ratio = f"{o.ratio:g}x" if o.ratio is not None else (o.error or "-")
        lines.append(f"| {o.entry.name} | {o.entry.work} | {o.ours} | {o.entry.peer} | {o.theirs} | {ratio} | "
                     f"{o.entry.goal_text} | {o.met} |")
    if plotted:
        lines += ["", "![serving throughput and p99 against connections](serving.png)"]
    lines += ["", "Whole outputs: `benchmarks/logs/<script>.log` of the run (not committed).", ""]
    output.write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (about ten minutes)")
    parser.add_argument("--only", default="", help="comma-separated entry names: " + ", ".join(e.name for e in SUITE))
    parser.add_argument("--output", type=Path, default=HERE / "results.md")
    parser.add_argument("--note", default="", help="what else ran on the machine meanwhile, for the file")
    args = parser.parse_args()
    chosen = [e for e in SUITE if not args.only or e.name in args.only.split(",")]
    unknown = set(filter(None, args.only.split(","))) - {e.name for e in SUITE}
    if unknown:
        parser.error(f"unknown entries {sorted(unknown)}")
    logs = HERE / "logs"
    logs.mkdir(exist_ok=True)
    done: dict[tuple[str, ...], tuple[int, str, float]] = {}
    outcomes = [run_entry(entry, args.quick, logs, done) for entry in chosen]
    plotted = serving_plot(logs / "serving_wrk.log", HERE / "serving.png") if any(
        o.entry.name == "serving" and o.error is None for o in outcomes) else False
    write_results(outcomes, args.quick, args.output, plotted, args.note)
    print(f"wrote {args.output}" + (" and benchmarks/serving.png" if plotted else ""))
    return 0 if all(o.error is None or o.error.startswith("not run") for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
