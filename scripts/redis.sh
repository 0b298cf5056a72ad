#!/usr/bin/env bash
# Starts a Redis server on 127.0.0.1 (the CeleryExecutor system test's broker) and exports its URL.
# Sourced by test.sh. Idempotent: a running server is reused. Port 6391, not Redis's 6379, so a Redis
# another program runs here is never touched (and never gets the test's queues).
set -euo pipefail

REDIS_PORT="${AML_REDIS_PORT:-6391}"
start_redis() {
    if ! command -v redis-server >/dev/null 2>&1; then
        if [ -z "${_APT_UPDATED:-}" ]; then
            apt-get update -qq >/dev/null
            _APT_UPDATED=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    fi
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null; then
        mkdir -p /tmp/aml-redis
        # No persistence (the queues are the test's, per run); setsid: it outlives the sourcing shell.
        setsid redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes --save "" \
            --appendonly no --dir /tmp/aml-redis >/tmp/aml-redis.log 2>&1 < /dev/null &
        for _ in $(seq 1 30); do
            (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null && break
            sleep 1
        done
    fi
    export AML_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
}

start_redis
