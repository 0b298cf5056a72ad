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

# Azurite, the Azure Storage emulator (blob service only): the azure_blob datastore's tests.
AZURITE_PORT="${AML_AZURITE_PORT:-10000}"
start_azurite() {
    local prefix="${AML_AZURITE_PREFIX:-/tmp/aml-azurite-npm}"
    if [ ! -x "$prefix/node_modules/.bin/azurite-blob" ]; then
        command -v npm >/dev/null 2>&1 || apt_install npm
        npm install --silent --prefix "$prefix" azurite@3 >/dev/null
    fi
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$AZURITE_PORT") 2>/dev/null; then
        mkdir -p /tmp/aml-azurite-data
        # setsid: the emulator outlives the sourcing shell, like the PostgreSQL cluster does.
        setsid "$prefix/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$AZURITE_PORT" \
            --location /tmp/aml-azurite-data --skipApiVersionCheck --loose \
            >/tmp/aml-azurite.log 2>&1 < /dev/null &
        for _ in $(seq 1 30); do
            (exec 3<>"/dev/tcp/127.0.0.1/$AZURITE_PORT") 2>/dev/null && break
            sleep 1
        done
    fi
    # The emulator's well-known development account (public, documented by Microsoft).
    export AML_TEST_AZURITE_CONNECTION_STRING="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:$AZURITE_PORT/devstoreaccount1;"
}

start_postgres
start_azurite
