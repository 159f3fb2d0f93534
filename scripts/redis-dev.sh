#!/usr/bin/env bash
# A throwaway redis-server for the tests and the arq example: loopback only, no persistence.
#
#   scripts/redis-dev.sh start   # daemonised; prints the export line for the tests
#   scripts/redis-dev.sh stop
#   scripts/redis-dev.sh run     # in the foreground (Ctrl-C stops it)
#
# Port: $CODAT_REDIS_PORT (default 6390, away from a system Redis on 6379). Needs Debian's
# redis-server (`apt-get install redis-server`). The tests read CODAT_TEST_REDIS_URL.
set -euo pipefail

port="${CODAT_REDIS_PORT:-6390}"
dir="${TMPDIR:-/tmp}/codat-redis-dev-${port}"
pidfile="${dir}/redis.pid"

if ! command -v redis-server >/dev/null 2>&1; then
    echo "redis-server not found: apt-get install redis-server (Debian/Ubuntu)" >&2
    exit 1
fi

options=(
    --bind 127.0.0.1 --port "${port}" --protected-mode yes
    --save "" --appendonly no          # nothing written to disk: state dies with the server
    --dir "${dir}" --logfile "${dir}/redis.log"
)

case "${1:-start}" in
start)
    mkdir -p "${dir}"
    if [[ -f "${pidfile}" ]] && kill -0 "$(cat "${pidfile}")" 2>/dev/null; then
        echo "already running (pid $(cat "${pidfile}"))" >&2
    else
        redis-server "${options[@]}" --daemonize yes --pidfile "${pidfile}"
        for _ in $(seq 50); do
            redis-cli -p "${port}" ping >/dev/null 2>&1 && break
            sleep 0.1
        done
        redis-cli -p "${port}" ping >/dev/null
    fi
    echo "export CODAT_TEST_REDIS_URL=redis://127.0.0.1:${port}/0"
    ;;
stop)
    if [[ -f "${pidfile}" ]]; then
        redis-cli -p "${port}" shutdown nosave >/dev/null 2>&1 || kill "$(cat "${pidfile}")" || true
        rm -f "${pidfile}"
    fi
    ;;
run)
    mkdir -p "${dir}"
    exec redis-server "${options[@]}" --logfile ""
    ;;
*)
    echo "usage: $0 [start|stop|run]" >&2
    exit 2
    ;;
esac
