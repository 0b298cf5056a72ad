#!/usr/bin/env bash
# Installs airflow-aml and runs the main job on the embedded default (SQLite Airflow metadata DB,
# SQLite workspace, local-folder datastore, local-process compute): the example DAG trains a
# hyper-parameter sweep, picks the best run, gates it on a threshold and registers the model.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export AIRFLOW_HOME="${AIRFLOW_HOME:-$PWD/.demo/airflow}"
export AML_HOME="${AML_HOME:-$AIRFLOW_HOME/aml}"
export AIRFLOW__CORE__DAGS_FOLDER="$PWD/dags_examples"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
mkdir -p "$AIRFLOW_HOME"
echo "== Airflow metadata database ($AIRFLOW_HOME)"
airflow db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 || { tail -20 "$AIRFLOW_HOME/db-migrate.log"; exit 1; }
echo "== airflow dags test aml_train_register_deploy (log: $AIRFLOW_HOME/dags-test.log)"
if ! airflow dags test aml_train_register_deploy >"$AIRFLOW_HOME/dags-test.log" 2>&1; then
    tail -40 "$AIRFLOW_HOME/dags-test.log"
    exit 1
fi
grep -E "DagRun Finished|Best run|Registered model" "$AIRFLOW_HOME/dags-test.log" | sed -E 's/ +\[airflow[^]]*\].*$//'
echo "== Result"
python examples/show_result.py
