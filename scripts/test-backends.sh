#!/usr/bin/env bash
# Starts (or stops) the real backend servers the tests use, on free loopback ports, with their
# data under DIR. `start` prints `export VAR=URL` lines for the tests to eval.
#   eval "$(scripts/test-backends.sh start /tmp/dir)"; ...; scripts/test-backends.sh stop /tmp/dir
set -euo pipefail
cmd=$1 dir=$2
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
case "$cmd" in
  start)
    port=$(free_port)
    mkdir -p "$dir/redis"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir/redis" --save '' --appendonly no \
      --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
    for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -p "$port" ping >/dev/null
    echo "export MIKCAR_TEST_REDIS_URL=redis://127.0.0.1:$port"
    ;;
  stop)
    [ -f "$dir/redis.pid" ] && kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
    ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
