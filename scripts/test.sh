#!/usr/bin/env bash
# Installs everything, starts the services the tests need, then runs lint, the import contracts and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/services.sh
source scripts/redis.sh
source scripts/docker-service.sh
source scripts/chromium.sh
ruff check airflow_aml tests dags_examples examples benchmarks
lint-imports --no-cache  # the layer contracts of pyproject.toml [tool.importlinter]
pytest -q -p no:cacheprovider "$@"
