#!/usr/bin/env bash
# Starts (or stops) the real backend servers the tests use, on free loopback ports, with their
# data under DIR. `start` prints `export VAR=VALUE` lines for the tests to eval.
#   eval "$(scripts/test-backends.sh start /tmp/dir)"; ...; scripts/test-backends.sh stop /tmp/dir
# Redis: one plain, one TLS-only (certificates from a throwaway CA made here, DIR/tls).
# PostgreSQL 15: a throwaway cluster in DIR/pg (initdb + pg_ctl, run as user postgres when this
# runs as root), fsync off, TCP on 127.0.0.1 with scram-sha-256 for user mikcar, database
# mikcar_test. It also exports shell commands that restart, stop and start that server.
# A second `start` with the same DIR reuses a cluster that is already there.
# RabbitMQ (Debian's 3.10): a node of its own in DIR/rabbitmq (own node name, Erlang cookie,
# epmd port, AMQP and distribution ports, all on 127.0.0.1), run as the calling user without
# Debian's wrapper (which would switch to the rabbitmq user), user mikcar with a random
# password, a TLS listener (amqps, the same test CA) and max_message_size 8 MiB (tests make a
# batch fail part-way with a bigger message). Also exports commands that stop and start the
# broker application (connections drop, the node and its durable queues stay) for restart
# tests. Takes ~10 s to start.
set -euo pipefail
cmd=$1 dir=$2
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; "$@"; }
# A command line (as one string) that runs its arguments as the PostgreSQL owner, from /.
as_pg() {
  local line="cd /;"
  [ "$(id -u)" = 0 ] && line+=" runuser -u postgres --"
  printf '%s%s' "$line" "$(printf ' %q' "$@")"
}
start_postgres() {
  local pg=$dir/pg
  local ctl=(env LC_ALL=C.UTF-8 "$PGBIN/pg_ctl" -D "$pg/data" -l "$pg/postgres.log" -w -t 60)
  if [ ! -f "$pg/env" ]; then
    rm -rf "$pg" && mkdir -p "$pg/sock"
    if [ "$(id -u)" = 0 ]; then
      chmod go+x "$dir"   # mktemp -d makes it 0700; the postgres user must reach DIR/pg
      chown -R postgres: "$pg"
    fi
    local port pass
    port=$(free_port) pass=$(openssl rand -hex 16)
    bash -c "$(as_pg env LC_ALL=C.UTF-8 "$PGBIN/initdb" -D "$pg/data" -U postgres -E UTF8 \
      --auth-local=trust --auth-host=scram-sha-256 --no-sync)" >"$pg/initdb.log" 2>&1 \
      || { cat "$pg/initdb.log" >&2; exit 1; }
    cat >>"$pg/data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$pg/sock'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
password_encryption = 'scram-sha-256'
CONF
    bash -c "$(as_pg "${ctl[@]}" start)" >/dev/null
    # The database's session time zone is not UTC, so the tests see timestamptz converted to UTC.
    bash -c "$(as_pg "$PGBIN/psql" -h "$pg/sock" -p "$port" -U postgres -d postgres -qAt \
      -v ON_ERROR_STOP=1 -c "CREATE ROLE mikcar LOGIN PASSWORD '$pass'" \
      -c "CREATE DATABASE mikcar_test OWNER mikcar" \
      -c "ALTER DATABASE mikcar_test SET timezone TO 'Asia/Kolkata'")" >/dev/null
    {
      echo "export MIKCAR_TEST_POSTGRES_URL=postgres://mikcar:$pass@127.0.0.1:$port/mikcar_test"
      printf 'export MIKCAR_TEST_POSTGRES_RESTART=%q\n' "$(as_pg "${ctl[@]}" -m fast restart)"
      printf 'export MIKCAR_TEST_POSTGRES_STOP=%q\n' "$(as_pg "${ctl[@]}" -m fast stop)"
      printf 'export MIKCAR_TEST_POSTGRES_START=%q\n' "$(as_pg "${ctl[@]}" start)"
    } >"$pg/env"
  elif ! bash -c "$(as_pg "$PGBIN/pg_ctl" -D "$pg/data" status)" >/dev/null 2>&1; then
    bash -c "$(as_pg "${ctl[@]}" start)" >/dev/null
  fi
  cat "$pg/env"
}
# A throwaway CA and a server certificate for 127.0.0.1 signed by it (DIR/tls), shared by the
# TLS servers; made once per DIR.
make_tls() {
  local tls=$dir/tls
  [ -f "$tls/server.pem" ] && return
  mkdir -p "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=mikcar test CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$tls/server.key" \
    -out "$tls/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$tls/ext.cnf"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 2 -extfile "$tls/ext.cnf" -out "$tls/server.pem.new" 2>/dev/null
  mv "$tls/server.pem.new" "$tls/server.pem"
}
# Plain and TLS Redis; a second `start` reuses both while they run (their exports are kept).
start_redis() {
  if [ -f "$dir/redis.env" ] && kill -0 "$(cat "$dir/redis.pid" 2>/dev/null)" 2>/dev/null \
    && kill -0 "$(cat "$dir/rediss.pid" 2>/dev/null)" 2>/dev/null; then
    cat "$dir/redis.env"
    return
  fi
  {
    mkdir -p "$dir/redis" "$dir/rediss"
    port=$(free_port)
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir/redis" --save '' --appendonly no \
      --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
    wait_for redis-cli -p "$port" ping
    echo "export MIKCAR_TEST_REDIS_URL=redis://127.0.0.1:$port"

    tls=$dir/tls
    tport=$(free_port)
    redis-server --port 0 --tls-port "$tport" --bind 127.0.0.1 --tls-cert-file "$tls/server.pem" \
      --tls-key-file "$tls/server.key" --tls-ca-cert-file "$tls/ca.pem" --tls-auth-clients no \
      --dir "$dir/rediss" --save '' --appendonly no --daemonize yes --pidfile "$dir/rediss.pid" \
      --logfile "$dir/rediss.log" >/dev/null
    wait_for redis-cli --tls --cacert "$tls/ca.pem" -p "$tport" ping
    echo "export MIKCAR_TEST_REDISS_URL=rediss://127.0.0.1:$tport"
    echo "export MIKCAR_TEST_CA_FILE=$tls/ca.pem"
  } > "$dir/redis.env.new"
  mv "$dir/redis.env.new" "$dir/redis.env"
  cat "$dir/redis.env"
}
RMQ=/usr/lib/rabbitmq/bin
start_rabbitmq() {
  local rq=$dir/rabbitmq
  if [ -f "$rq/vars" ] && (. "$rq/vars" && "$RMQ/rabbitmqctl" -q -t 5 status) >/dev/null 2>&1; then
    cat "$rq/env"
    return
  fi
  rm -rf "$rq" && mkdir -p "$rq/mnesia" "$rq/log"
  local port sport dport eport pass node tls=$dir/tls
  port=$(free_port) sport=$(free_port) dport=$(free_port) eport=$(free_port)
  pass=$(openssl rand -hex 16)
  node="mikcar-test-$port@localhost"
  openssl rand -hex 20 > "$rq/.erlang.cookie" && chmod 400 "$rq/.erlang.cookie"
  cat > "$rq/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$port
listeners.ssl.default = 127.0.0.1:$sport
ssl_options.cacertfile = $tls/ca.pem
ssl_options.certfile = $tls/server.pem
ssl_options.keyfile = $tls/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
max_message_size = 8388608
default_user = mikcar
default_pass = $pass
default_vhost = /
loopback_users = none
disk_free_limit.absolute = 50MB
log.console = false
log.file.level = warning
CONF
  echo '[].' > "$rq/enabled_plugins"
  : > "$rq/rabbitmq-env.conf"
  cat > "$rq/vars" <<VARS
export HOME=$rq RABBITMQ_NODENAME=$node RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT=$port RABBITMQ_DIST_PORT=$dport ERL_EPMD_PORT=$eport
export ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_CONF_ENV_FILE=$rq/rabbitmq-env.conf
export RABBITMQ_CONFIG_FILE=$rq/rabbitmq.conf RABBITMQ_ENABLED_PLUGINS_FILE=$rq/enabled_plugins
export RABBITMQ_MNESIA_BASE=$rq/mnesia RABBITMQ_LOG_BASE=$rq/log RABBITMQ_PID_FILE=$rq/pid
VARS
  (. "$rq/vars" && cd "$rq" && "$RMQ/rabbitmq-server" -detached) >"$rq/start.log" 2>&1
  if ! (. "$rq/vars" && "$RMQ/rabbitmqctl" -q -t 60 wait "$rq/pid") >>"$rq/start.log" 2>&1; then
    cat "$rq/start.log" >&2
    exit 1
  fi
  {
    echo "export MIKCAR_TEST_AMQP_URL=amqp://mikcar:$pass@127.0.0.1:$port/"
    # By name: rabbitmq-c 0.11 matches the host only against the certificate's DNS names.
    echo "export MIKCAR_TEST_AMQPS_URL=amqps://mikcar:$pass@localhost:$sport/"
    echo "export MIKCAR_TEST_AMQP_MAX_MESSAGE_SIZE=8388608"
    echo "export MIKCAR_TEST_CA_FILE=$tls/ca.pem"
    printf 'export MIKCAR_TEST_AMQP_STOP=%q\n' ". $rq/vars && $RMQ/rabbitmqctl -q stop_app"
    printf 'export MIKCAR_TEST_AMQP_START=%q\n' ". $rq/vars && $RMQ/rabbitmqctl -q start_app"
  } > "$rq/env"
  cat "$rq/env"
}
stop_rabbitmq() {
  local rq=$dir/rabbitmq
  [ -f "$rq/vars" ] || return 0
  # rabbitmqctl stop waits for the pid in the file; without the file it would wait forever.
  if [ -f "$rq/pid" ]; then
    (. "$rq/vars" && timeout 60 "$RMQ/rabbitmqctl" -q stop "$rq/pid") >/dev/null 2>&1 || true
  fi
  (. "$rq/vars" && epmd -kill) >/dev/null 2>&1 || true
}
case "$cmd" in
  start)
    make_tls
    start_rabbitmq &
    rabbit=$!
    start_redis
    start_postgres
    wait "$rabbit"
    ;;
  stop)
    stop_rabbitmq
    if [ -f "$dir/pg/data/postmaster.pid" ]; then
      bash -c "$(as_pg "$PGBIN/pg_ctl" -D "$dir/pg/data" -w -t 60 -m fast stop)" >/dev/null || true
    fi
    for pid in "$dir/redis.pid" "$dir/rediss.pid"; do
      [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
    done
    rm -f "$dir/redis.env"
    ;;
  start-rabbitmq) make_tls; start_rabbitmq ;;  # only the broker (bench/run.sh); `stop` stops it
  *) echo "usage: $0 start|start-rabbitmq|stop DIR" >&2; exit 2 ;;
esac
