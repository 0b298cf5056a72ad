#!/usr/bin/env bash
# Starts a Docker engine for the image-builder tests and makes the registry-less base image.
# Sourced by test.sh (after services.sh); can also be run on its own. Idempotent: a reachable
# engine and an existing base image are reused; nothing is installed or started twice.
#
#   - installs docker.io (and docker-registry) when missing (apt, as root or through passwordless sudo),
#   - starts dockerd without iptables/bridge (containers use --network host) when `docker info`
#     fails, logging to $AML_DOCKERD_LOG (default /var/log/airflow-aml-dockerd.log),
#   - waits up to $AML_DOCKERD_WAIT seconds (default 60) for the engine,
#   - runs docker/build-base-image.sh (rootfs tarball cached under $AML_DOCKER_CACHE),
#   - exports AML_TEST_DOCKER=1 on success.
# On failure it says why and leaves AML_TEST_DOCKER unset: the Docker tests then FAIL under
# CI=true and are skipped (with the reason) elsewhere; the rest of the test run goes on.
set -euo pipefail

_aml_docker_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

_aml_docker_log() { echo "[docker-service] $*" >&2; }

# Runs a command as root: directly, or through passwordless sudo (CI runners).
_aml_as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        _aml_docker_log "needs root (or passwordless sudo) for: $*"
        return 1
    fi
}

_aml_docker_install() {
    # docker-registry: a real registry on 127.0.0.1 for the docker_conn_id (registry login) tests.
    command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 \
        && command -v docker-registry >/dev/null 2>&1 && return 0
    _aml_docker_log "installing docker.io and docker-registry"
    if [ -z "${_APT_UPDATED:-}" ]; then
        _aml_as_root apt-get update -qq >/dev/null || return 1
        _APT_UPDATED=1
    fi
    _aml_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-registry >/dev/null
}

_aml_dockerd_running() {
    local pid
    pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

_aml_docker_start() {
    docker info >/dev/null 2>&1 && return 0
    _aml_docker_install || return 1
    local logfile="${AML_DOCKERD_LOG:-/var/log/airflow-aml-dockerd.log}"
    if ! _aml_dockerd_running; then
        _aml_docker_log "starting dockerd (log: $logfile)"
        _aml_as_root mkdir -p "$(dirname "$logfile")" || return 1
        _aml_as_root rm -f /var/run/docker.pid  # left by a dockerd that died: it would block the new one
        # Detached (own session) so that it outlives the test script; no network setup of its own.
        _aml_as_root setsid nohup sh -c 'exec dockerd --iptables=false --ip-masq=false --bridge=none >"$1" 2>&1' \
            dockerd "$logfile" </dev/null >/dev/null 2>&1 &
    fi
    local waited=0 limit="${AML_DOCKERD_WAIT:-60}"
    until docker info >/dev/null 2>&1; do
        if [ "$waited" -ge "$limit" ]; then
            _aml_docker_log "Docker engine not ready after ${limit} s; last lines of $logfile:"
            tail -20 "$logfile" >&2 2>/dev/null || true
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    _aml_docker_log "Docker engine ready after ${waited} s"
}

if _aml_docker_start && "$_aml_docker_dir/docker/build-base-image.sh"; then
    export AML_TEST_DOCKER=1
else
    _aml_docker_log "Docker not available: the Docker image tests will fail under CI=true, skip elsewhere"
fi
