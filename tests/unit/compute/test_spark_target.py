"""The ``spark`` compute target: real ``spark-submit`` runs (pyspark's, Java from the machine).

Config checks need no JVM. The slow tests start one JVM each (``local[1]``): a PySpark script
that logs metrics through ``Run.get_context()`` over HTTP with its run token (a served workspace),
ships its helper module to the Python workers through ``--py-files`` and writes ``outputs/``;
and a cancel that must kill the spark-submit process group (driver JVM and Python driver).
They do not skip: a missing Java or pyspark is a failure.
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_aml.compute import build_compute_target, check_compute_config
from airflow_aml.compute.spark import SparkComputeConfig, SparkComputeTarget
from airflow_aml.entities import RunStatus
from airflow_aml.exceptions import ValidationError
from airflow_aml.runconfig import RunConfiguration, SweepSpec
from airflow_aml.workspace import Workspace
from tests.unit.compute.spark_cluster import standalone_cluster
from tests.unit.compute.test_local_e2e import alive, wait_for, wait_for_log
from tests.unit.service.served import Served, serve

TARGET = "spark-local"
TIMEOUT = 180.0  # a JVM start is 10-30 s on these machines; two cores shared


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, code in files.items():
        (folder / name).write_text(textwrap.dedent(code))
    return folder


# ------------------------------------------------------------------------------ config (no JVM)
@pytest.mark.parametrize("config", [
    {"master": "local"}, {"master": "local[2]"}, {"master": "local[*]"}, {"master": "local[4,2]"},
    {"master": "spark://127.0.0.1:7077", "executor_memory": "2g", "driver_memory": "512m",
     "conf": {"spark.executor.cores": "1"}, "stop_timeout": 3},
    {"master": "spark://m1:7077,m2:7077"},
])
def test_good_configs_are_accepted(config: dict[str, object]) -> None:
    check_compute_config("spark", config)
    options = SparkComputeConfig.parse(config).submit_options()
    assert options[:4] == ["--master", config["master"], "--deploy-mode", "client"]


@pytest.mark.parametrize(("config", "reason"), [
    ({}, "give master (local[N] or spark://host:port) or spark_conn_id"),
    ({"master": "local", "spark_conn_id": "spark_default"}, "one of them"),
    ({"master": "yarn"}, "must be local, local[N], local[*] or spark://host:port"),
    ({"master": "local[0]"}, "must be local"),
    ({"master": "spark://host"}, "must be local"),
    ({"master": "local", "driver_memory": "lots"}, "not a JVM size"),
    ({"master": "local", "executor_memory": "1.5g"}, "not a JVM size"),
    ({"master": "local", "conf": {"executor.cores": "1"}}, "must be a Spark property"),
    ({"master": "local", "conf": {"spark.master": "local[2]"}}, "set by the target's own fields"),
    ({"master": "local", "conf": {"spark.x": 1}}, "conf.spark.x"),
    ({"master": "local", "cores": 2}, "cores: unknown key"),
])
def test_bad_configs_are_refused(config: dict[str, object], reason: str) -> None:
    with pytest.raises(ValidationError, match="Invalid config for spark compute target") as caught:
        check_compute_config("spark", config)
    assert reason in str(caught.value)


def test_registering_a_bad_target_is_refused(workspace: Workspace) -> None:
    with pytest.raises(ValidationError, match="master"):
        workspace.register_compute_target("bad", kind="spark", config={"master": "yarn"})
    workspace.register_compute_target(TARGET, kind="spark", config={"master": "local[1]"})
    assert isinstance(build_compute_target(workspace, TARGET), SparkComputeTarget)


# ------------------------------------------------------------------------------ real runs
TRAIN = {
    "helper.py": """
        def square(x):
            return x * x
    """,
    "train.py": """
        import json, os, sys
        from pyspark.sql import SparkSession
        from airflow_aml.runtime.run import Run
        import helper

        run = Run.get_context()
        spark = SparkSession.builder.appName("aml-test").getOrCreate()
        sc = spark.sparkContext
        # The lambda calls helper in the Python workers: it imports there from --py-files.
        total = sc.parallelize(range(10), 2).map(lambda x: helper.square(x)).sum()
        workers = sc.parallelize(range(2), 2).map(lambda _: __import__("sys").executable).distinct().collect()
        for epoch in range(3):
            run.log("loss", 1.0 / (epoch + 1))
        run.log("sum_of_squares", float(total))
        os.makedirs("outputs", exist_ok=True)
        with open("outputs/result.json", "w") as f:
            json.dump({"total": total, "master": sc.master}, f)
        print(json.dumps({"workers": workers, "driver": sys.executable,
                          **{k: os.environ.get(k) for k in ("AML_STORE_URI", "AML_RUN_TOKEN", "AML_TOKEN")}}))
        spark.stop()
    """,
}


@pytest.fixture
def served(aml_home: Path, tmp_path: Path) -> Iterator[Served]:
    with serve(f"sqlite:///{tmp_path / 'service.db'}") as running:
        yield running


@pytest.mark.slow
def test_a_pyspark_script_logs_metrics_and_outputs_over_http(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AML_PRINCIPAL", raising=False)  # the token says who we are
    ws = Workspace.create("demo", store_uri=served.uri_for("alice"), datastore_root=tmp_path / "datastore")
    ws.register_compute_target(TARGET, kind="spark", config={"master": "local[1]", "driver_memory": "512m"})
    src = write(tmp_path / "src", TRAIN)
    started = time.monotonic()
    run = ws.experiment("spark").submit(src, RunConfiguration(script="train.py", target=TARGET))
    record = wait_for(run, timeout=TIMEOUT)
    elapsed = time.monotonic() - started
    assert record.status is RunStatus.COMPLETED, f"{record.error}\n{run.get_log_text()}"
    print(f"spark local[1] run: submit -> Completed in {elapsed:.1f}s")

    metrics = run.get_metrics()
    assert metrics["loss"] == [1.0, 0.5, 1 / 3]
    assert metrics["sum_of_squares"] == 285.0
    result = json.loads(ws.get_default_datastore().read_bytes(f"runs/{run.id}/outputs/result.json"))
    assert result == {"total": 285, "master": "local[1]"}

    stdout = wait_for_log(run, "AML_STORE_URI")
    seen = json.loads(next(line for line in stdout.splitlines() if "AML_STORE_URI" in line))
    # The driver and the Python workers run the run's interpreter (PYSPARK_PYTHON).
    assert seen["workers"] == [seen["driver"]]
    # The service URI and a run token: the submitter's personal token stays with the submitter.
    assert seen["AML_STORE_URI"].startswith("http://127.0.0.1:") and "@" not in seen["AML_STORE_URI"]
    assert seen["AML_RUN_TOKEN"].startswith("aml_run_") and seen["AML_TOKEN"] is None
    control = "".join(c.text for c in run.read_log() if c.stream == "control")
    assert "Starting spark-submit: --master local[1] --deploy-mode client --driver-memory 512m" in control
    assert "--py-files" in control and "Run Completed" in control
    stderr = "".join(c.text for c in run.read_log() if c.stream == "stderr")
    assert "SparkContext" in stderr  # Spark's own log lines reach the run too


SLEEPER = {
    "sleep.py": """
        import os, time
        from pyspark.sql import SparkSession
        spark = SparkSession.builder.appName("aml-sleeper").getOrCreate()
        # The Python driver's parent is the spark-submit JVM (the driver JVM in client mode).
        print("started", os.getpid(), os.getppid(), flush=True)
        time.sleep(600)
    """,
}


@pytest.mark.slow
def test_cancel_kills_the_driver_jvm_and_the_python_driver(workspace: Workspace, tmp_path: Path) -> None:
    workspace.register_compute_target(TARGET, kind="spark", config={"master": "local[1]", "stop_timeout": 2})
    src = write(tmp_path / "src", SLEEPER)
    run = workspace.experiment("spark").submit(src, RunConfiguration(script="sleep.py", target=TARGET))
    stdout = wait_for_log(run, "started", timeout=TIMEOUT)
    python_pid, jvm_pid = (int(p) for p in stdout.split("started", 1)[1].split()[:2])
    assert alive(python_pid) and alive(jvm_pid)
    requested = time.monotonic()
    run.cancel()
    record = wait_for(run, timeout=60)
    assert record.status is RunStatus.CANCELED, run.get_log_text()
    assert time.monotonic() - requested < 30
    assert not alive(python_pid) and not alive(jvm_pid)


TRAIN_ML = {
    "train_ml.py": """
        import argparse, csv, json, os
        from pyspark.ml.classification import LogisticRegression
        from pyspark.ml.feature import VectorAssembler
        from pyspark.sql import SparkSession
        from airflow_aml.runtime.run import Run

        parser = argparse.ArgumentParser()
        parser.add_argument("--reg", type=float, default=0.0)  # a sweep passes --reg <value>
        reg = parser.parse_args().reg
        run = Run.get_context()
        spark = SparkSession.builder.appName("aml-train-ml").getOrCreate()
        with open("data.csv") as f:
            rows = [(float(r["x1"]), float(r["x2"]), float(r["label"])) for r in csv.DictReader(f)]
        frame = VectorAssembler(inputCols=["x1", "x2"], outputCol="features").transform(
            spark.createDataFrame(rows, ["x1", "x2", "label"]))
        train, test = frame.randomSplit([0.75, 0.25], seed=7)
        model = LogisticRegression(maxIter=20, regParam=reg).fit(train)
        for step, loss in enumerate(model.summary.objectiveHistory):
            run.log("objective", loss, step=step)
        accuracy = model.evaluate(test).accuracy
        run.log("accuracy", accuracy)
        # An absolute path: the executors (on this machine's worker) write the model's parts there.
        model.write().overwrite().save(os.path.abspath("outputs/model"))
        with open("outputs/summary.json", "w") as f:
            json.dump({"accuracy": accuracy, "reg": reg, "master": spark.sparkContext.master}, f)
        spark.stop()
    """,
}


def two_blobs(rows: int = 200) -> str:
    """A separable dataset: label 1 when x1 + x2 > 1 (deterministic, no numpy needed)."""
    lines = ["x1,x2,label"]
    for i in range(rows):
        x1, x2 = (i * 37 % 100) / 100, (i * 61 % 100) / 100
        lines.append(f"{x1},{x2},{int(x1 + x2 > 1)}")
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_a_pyspark_ml_sweep_on_a_standalone_cluster_registers_the_best_model(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Master and worker started here (two JVMs), the executors on the worker: the slow one. The
    cluster is reached through an Airflow Spark connection (SparkSubmitHook resolves it); a sweep
    of two child runs, each a pyspark.ml application on the cluster."""
    with standalone_cluster(tmp_path / "cluster") as cluster:
        host, port = cluster.master_url.rsplit(":", 1)
        monkeypatch.setenv("AIRFLOW_CONN_SPARK_TEST_CLUSTER", json.dumps(
            {"conn_type": "spark", "host": host, "port": int(port), "extra": {"deploy-mode": "client"}}))
        workspace.register_compute_target("spark-cluster", kind="spark", config={
            "spark_conn_id": "spark_test_cluster", "executor_memory": "512m", "conf": {"spark.cores.max": "1"}})
        src = write(tmp_path / "src", {**TRAIN_ML, "data.csv": two_blobs()})
        started = time.monotonic()
        parent = workspace.experiment("spark").submit(src, RunConfiguration(
            script="train_ml.py", target="spark-cluster", sweep=SweepSpec(grid={"reg": (0.0, 0.05)})))
        record = wait_for(parent, timeout=2 * TIMEOUT)
        elapsed = time.monotonic() - started
        assert record.status is RunStatus.COMPLETED, f"{record.error}\n{parent.get_log_text()}"
        print(f"spark standalone sweep of 2 (pyspark.ml): submit -> Completed in {elapsed:.1f}s")
        # The master ran both applications (their executors on our worker) and saw them finish.
        apps = cluster.state()["completedapps"]
        assert sorted((app["name"], app["state"]) for app in apps) == [("aml-train-ml", "FINISHED")] * 2
    children = sorted(parent.get_children(), key=lambda child: child.get_metrics()["accuracy"])
    assert len(children) == 2
    datastore = workspace.get_default_datastore()
    regs = set()
    for child in children:
        assert child.record.status is RunStatus.COMPLETED
        metrics = child.get_metrics()
        assert metrics["accuracy"] >= 0.9
        assert len(metrics["objective"]) >= 2 and metrics["objective"][-1] < metrics["objective"][0]
        summary = json.loads(datastore.read_bytes(f"runs/{child.id}/outputs/summary.json"))
        assert summary["master"] == cluster.master_url
        regs.add(summary["reg"])
        names = child.get_file_names()
        assert "outputs/model/metadata/_SUCCESS" in names, names
        assert any(n.startswith("outputs/model/data/") and n.endswith(".parquet") for n in names), names
        control = "".join(c.text for c in child.read_log() if c.stream == "control")
        assert f"Starting spark-submit: --master {cluster.master_url} --conf spark.cores.max=1" in control, control
    assert regs == {0.0, 0.05}
    best = children[-1]
    model = workspace.register_model("spark-logreg", run_id=best.id, run_path="outputs/model")
    assert model.version == 1 and model.record.run_id == best.id


@pytest.mark.slow
def test_max_duration_stops_spark_submit_and_fails_the_run(workspace: Workspace, tmp_path: Path) -> None:
    # No SparkSession: the launcher JVM and the Python driver only, the cheapest JVM start.
    src = write(tmp_path / "src", {"nap.py": """
        import os, time
        print("napping", os.getpid(), os.getppid(), flush=True)
        time.sleep(600)
    """})
    workspace.register_compute_target(TARGET, kind="spark", config={"master": "local[1]", "stop_timeout": 2})
    config = RunConfiguration(script="nap.py", target=TARGET, max_run_duration_seconds=15)
    run = workspace.experiment("spark").submit(src, config)
    record = wait_for(run, timeout=TIMEOUT)
    assert record.status is RunStatus.FAILED, run.get_log_text()
    assert "exceeded max_run_duration_seconds=15" in (record.error or "")
    # Stopped while it ran (not before it started), the Python driver and the launcher JVM with it.
    stdout = wait_for_log(run, "napping", timeout=5)
    python_pid, jvm_pid = (int(p) for p in stdout.split("napping", 1)[1].split()[:2])
    assert not alive(python_pid) and not alive(jvm_pid)
    assert record.duration_seconds is not None and record.duration_seconds < 45
