#!/usr/bin/env bash
# Starts a Docker engine for the image-builder tests and makes the registry-less base image.
# Sourced by test.sh (after services.sh); can also be run on its own. Idempotent: a reachable
# engine and an existing base image are reused; nothing is installed or started twice.
#
#   - installs docker.io, and docker-registry (only the registry-login tests need it), when missing
#     (apt, as root or through passwordless sudo),
#   - starts dockerd without iptables/bridge (containers use --network host) when `docker info`
#     fails, logging to $AML_DOCKERD_LOG (default /var/log/airflow-aml-dockerd.log),
#   - waits up to $AML_DOCKERD_WAIT seconds (default 120) for the engine; an engine that exits
#     while starting is started once more,
#   - records what happened in $AML_DOCKER_STATUS (default /tmp/airflow-aml-docker-status): the
#     Docker tests put it in their failure message, where CI's log shows it,
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

# What happened, for the Docker tests' failure message (CI shows pytest's output, not this one).
_aml_docker_status_file="${AML_DOCKER_STATUS:-/tmp/airflow-aml-docker-status}"
_aml_docker_status() {
    echo "$(date -u +%FT%TZ) $*" >>"$_aml_docker_status_file" 2>/dev/null || true
    _aml_docker_log "$*"
}

_aml_apt_install() {
    # apt's own words go to a log that is shown when it fails, not to /dev/null.
    local apt_log="${TMPDIR:-/tmp}/airflow-aml-apt-$$.log"
    if [ -z "${_APT_UPDATED:-}" ]; then
        if ! _aml_as_root apt-get update -qq >"$apt_log" 2>&1; then
            _aml_docker_status "apt-get update failed: $(tail -5 "$apt_log" | tr '\n' ' ')"
            return 1
        fi
        _APT_UPDATED=1
    fi
    if ! _aml_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >"$apt_log" 2>&1; then
        _aml_docker_status "apt-get install $* failed: $(tail -8 "$apt_log" | tr '\n' ' ')"
        return 1
    fi
}

_aml_docker_install() {
    if ! { command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1; }; then
        _aml_docker_log "installing docker.io"
        _aml_apt_install docker.io || return 1
    fi
    # docker-registry: a real registry on 127.0.0.1 for the docker_conn_id (registry login) tests.
    # Installed on its own so that a failure costs those two tests only, not every Docker test.
    if ! command -v docker-registry >/dev/null 2>&1; then
        _aml_docker_log "installing docker-registry"
        _aml_apt_install docker-registry || true
    fi
}

# The pid file's process is a live dockerd (a pid file left by an engine of an earlier boot may
# name a live process that is something else: its pid was reused).
_aml_dockerd_running() {
    local pid
    pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]
}

_aml_dockerd_launch() {
    local logfile="$1"
    _aml_docker_log "starting dockerd (log: $logfile)"
    _aml_as_root mkdir -p "$(dirname "$logfile")" || return 1
    # Left by an engine that died (or by an earlier boot): they would block or confuse the new one.
    _aml_as_root rm -f /var/run/docker.pid /var/run/docker.sock
    # Detached (own session) so that it outlives the test script; no network setup of its own.
    _aml_as_root setsid nohup sh -c 'exec dockerd --iptables=false --ip-masq=false --bridge=none >>"$1" 2>&1' \
        dockerd "$logfile" </dev/null >/dev/null 2>&1 &
}

_aml_docker_start() {
    : >"$_aml_docker_status_file" 2>/dev/null || true
    if docker info >/dev/null 2>&1; then
        _aml_docker_status "engine already running"
        return 0
    fi
    _aml_docker_install || return 1
    local logfile="${AML_DOCKERD_LOG:-/var/log/airflow-aml-dockerd.log}"
    local attempt waited limit="${AML_DOCKERD_WAIT:-120}"
    for attempt in 1 2; do
        _aml_dockerd_running || _aml_dockerd_launch "$logfile" || return 1
        waited=0
        until docker info >/dev/null 2>&1; do
            sleep 1
            waited=$((waited + 1))
            # An engine that exited is not waited for: its log says why, and it is started once more.
            if [ "$waited" -ge 3 ] && ! pgrep -x dockerd >/dev/null 2>&1; then
                _aml_docker_status "dockerd exited (attempt $attempt); last lines of $logfile: $(tail -8 "$logfile" 2>/dev/null | tr '\n' ' ')"
                continue 2
            fi
            if [ "$waited" -ge "$limit" ]; then
                _aml_docker_status "Docker engine not ready after ${limit} s; last lines of $logfile: $(tail -8 "$logfile" 2>/dev/null | tr '\n' ' ')"
                return 1
            fi
        done
        _aml_docker_status "Docker engine ready after ${waited} s (attempt $attempt)"
        return 0
    done
    return 1
}

if _aml_docker_start; then
    if "$_aml_docker_dir/docker/build-base-image.sh"; then
        export AML_TEST_DOCKER=1
    else
        _aml_docker_status "docker/build-base-image.sh failed (exit $?): its output is above this line in the test log"
    fi
fi
if [ -z "${AML_TEST_DOCKER:-}" ]; then
    _aml_docker_log "Docker not available: the Docker image tests will fail under CI=true, skip elsewhere"
fi
