#!/usr/bin/env bash
# Installs airflow-aml and runs the main job on the embedded default (SQLite Airflow metadata DB,
# SQLite workspace, local-folder datastore, local-process compute): the example DAG trains a
# hyper-parameter sweep, picks the best run, gates it on a threshold, registers the model, builds
# a scoring image, deploys it as a local web service (created on the first run, updated to the new
# image on the next ones), waits until it is Healthy and scores a sample. The service keeps
# running after this script: it is scored here once more with curl, as any client would.
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
grep -E "DagRun Finished|Best run|Registered model|Image .* built|Deployment [A-Za-z0-9_.-]+ serves|Scored " \
    "$AIRFLOW_HOME/dags-test.log" | sed -E 's/ +\[airflow[^]]*\].*$//'
echo "== Result"
python examples/show_result.py
echo "== One request with curl"
read -r SCORING_URI SCORING_KEY < <(python examples/show_result.py --uri-and-key)
curl -sS --fail-with-body -X POST "$SCORING_URI" -H "Authorization: Bearer $SCORING_KEY" \
    -H "Content-Type: application/json" -d '{"data": [[5.1, 3.5, 1.4, 0.2]]}'
echo
