#!/usr/bin/env bash
# Starts the services the test suite needs on 127.0.0.1 and exports their URIs.
# Sourced by test.sh. Idempotent: a running service is reused.
set -euo pipefail

apt_install() {
    if [ -z "${_APT_UPDATED:-}" ]; then
        apt-get update -qq >/dev/null
        _APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

start_postgres() {
    command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql
    local version
    version=$(ls /usr/lib/postgresql | sort -n | tail -1)
    if ! pg_lsclusters -h | grep -q "^$version main"; then
        pg_createcluster "$version" main >/dev/null
    fi
    pg_ctlcluster "$version" main start >/dev/null 2>&1 || true  # "already running" is fine
    for _ in $(seq 1 30); do
        pg_isready -h 127.0.0.1 -q && break
        sleep 1
    done
    su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='aml'\"" | grep -q 1 ||
        su postgres -c "psql -qc \"CREATE ROLE aml LOGIN PASSWORD 'aml' CREATEDB\""
    su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='aml_test'\"" | grep -q 1 ||
        su postgres -c "psql -qc 'CREATE DATABASE aml_test OWNER aml'"
    export AML_TEST_POSTGRES_URI="postgresql+psycopg://aml:aml@127.0.0.1:5432/aml_test"
}

start_postgres
