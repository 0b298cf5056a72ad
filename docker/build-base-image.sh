#!/usr/bin/env bash
# Makes the base image of the Docker image builder (default local/python-base:bookworm) without
# any container registry: a minimal Debian root filesystem made with debootstrap (python3, venv,
# pip, CA certificates), imported with `docker import`.
#
# Idempotent: does nothing when the image exists; when only the image is missing (a new engine,
# a `docker rmi`), re-imports the cached root filesystem tarball (~10 s instead of ~2 min), so CI
# builds the root filesystem once per machine, or once per run when the cache folder is kept.
#
# Environment:
#   AML_BASE_IMAGE      image to make                (default local/python-base:bookworm)
#   AML_DOCKER_CACHE    folder for the rootfs tarball (default /var/cache/airflow-aml)
#   AML_DEBIAN_SUITE    Debian release                (default bookworm: Python 3.11)
#   AML_DEBIAN_MIRROR   Debian mirror                 (default http://deb.debian.org/debian)
#   AML_BASE_PACKAGES   more comma-separated packages to include (default none)
# Needs a running Docker engine, and root or passwordless sudo for debootstrap.
set -euo pipefail

image="${AML_BASE_IMAGE:-local/python-base:bookworm}"
cache="${AML_DOCKER_CACHE:-/var/cache/airflow-aml}"
suite="${AML_DEBIAN_SUITE:-bookworm}"
mirror="${AML_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
packages="python3-minimal,python3-venv,python3-pip,ca-certificates${AML_BASE_PACKAGES:+,$AML_BASE_PACKAGES}"
tarball="$cache/python-base-$suite.tar"

log() { echo "[build-base-image] $*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        log "needs root (or passwordless sudo) for: $*"
        exit 1
    fi
}

if ! docker info >/dev/null 2>&1; then
    log "Docker engine not reachable; start dockerd first (scripts/docker-service.sh does)"
    exit 1
fi
if docker image inspect "$image" >/dev/null 2>&1; then
    log "$image already present"
    exit 0
fi

as_root mkdir -p "$cache"
as_root chmod 1777 "$cache" 2>/dev/null || true
# One builder at a time per cache folder (parallel CI jobs on one machine).
exec 9>>"$cache/.build-base-image.lock"
flock 9
if docker image inspect "$image" >/dev/null 2>&1; then
    log "$image already present"
    exit 0
fi

if [ ! -s "$tarball" ]; then
    if ! command -v debootstrap >/dev/null 2>&1; then
        log "installing debootstrap"
        as_root apt-get update -qq >/dev/null
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    rootfs="$(mktemp -d "$cache/rootfs.XXXXXX")"
    trap 'as_root rm -rf "$rootfs" "$tarball.partial"' EXIT
    log "debootstrap $suite ($packages) from $mirror (log: $cache/debootstrap.log)"
    start=$SECONDS
    if ! as_root debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" \
        >"$cache/debootstrap.log" 2>&1; then
        tail -30 "$cache/debootstrap.log" >&2
        log "debootstrap failed (full log: $cache/debootstrap.log)"
        exit 1
    fi
    # A smaller image: no package caches, lists, documentation.
    as_root sh -c 'cd "$1" && rm -rf var/cache/apt/archives/*.deb var/lib/apt/lists/* usr/share/doc/* \
        usr/share/man/* tmp/*' sh "$rootfs"
    as_root tar --numeric-owner -C "$rootfs" -cf "$tarball.partial" .
    as_root mv "$tarball.partial" "$tarball"
    log "root filesystem ready in $((SECONDS - start)) s: $tarball ($(du -h "$tarball" | cut -f1))"
fi

log "docker import $tarball -> $image"
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/usr/bin/python3"]' \
    --message "debootstrap --variant=minbase $suite ($packages)" \
    "$tarball" "$image" >/dev/null
docker run --rm --network none "$image" python3 -V >&2
log "$image ready"
