#!/usr/bin/env bash
# Starts (or stops) the real backend servers the tests use, on free loopback ports, with their
# data under DIR. `start` prints `export VAR=VALUE` lines for the tests to eval.
#   eval "$(scripts/test-backends.sh start /tmp/dir)"; ...; scripts/test-backends.sh stop /tmp/dir
# Redis: one plain, one TLS-only (certificates from a throwaway CA made here).
set -euo pipefail
cmd=$1 dir=$2
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; "$@"; }
case "$cmd" in
  start)
    mkdir -p "$dir/redis" "$dir/rediss" "$dir/tls"
    port=$(free_port)
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir/redis" --save '' --appendonly no \
      --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
    wait_for redis-cli -p "$port" ping
    echo "export MIKCAR_TEST_REDIS_URL=redis://127.0.0.1:$port"

    tls=$dir/tls
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=mikcar test CA" \
      -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$tls/server.key" \
      -out "$tls/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$tls/ext.cnf"
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
      -days 2 -extfile "$tls/ext.cnf" -out "$tls/server.pem" 2>/dev/null
    tport=$(free_port)
    redis-server --port 0 --tls-port "$tport" --bind 127.0.0.1 --tls-cert-file "$tls/server.pem" \
      --tls-key-file "$tls/server.key" --tls-ca-cert-file "$tls/ca.pem" --tls-auth-clients no \
      --dir "$dir/rediss" --save '' --appendonly no --daemonize yes --pidfile "$dir/rediss.pid" \
      --logfile "$dir/rediss.log" >/dev/null
    wait_for redis-cli --tls --cacert "$tls/ca.pem" -p "$tport" ping
    echo "export MIKCAR_TEST_REDISS_URL=rediss://127.0.0.1:$tport"
    echo "export MIKCAR_TEST_CA_FILE=$tls/ca.pem"
    ;;
  stop)
    for pid in "$dir/redis.pid" "$dir/rediss.pid"; do
      [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
    done
    ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
