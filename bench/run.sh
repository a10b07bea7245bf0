#!/usr/bin/env bash
# mikcar benchmark: mikcar against nginx (HTTP floor), webdis→redis (HTTP KV peer) and
# redis-benchmark (raw store), all on loopback, all started and stopped by this one script.
# Prints ratios, never pass/fail. See bench/README.md for what each scenario measures.
#
# Usage: bench/run.sh [--quick] [--scenario NAME]... [--rounds N] [--duration SECONDS]
#   --quick           1 round of 3 s per target (default: 5 rounds of 8 s, median reported)
#   --scenario NAME   health | kv-get | kv-set | redis | storage-get | storage-put | sql |
#                     queue-push | queue-pop | script
#                     (repeatable, or a,b); default: all
#   Env: BENCH_SERVER_CPU=0 BENCH_CLIENT_CPU=1 (cores for the 1-core runs), BENCH_PORT_BASE=18400,
#        BENCH_KEEP=1 keeps the temp dir (server logs, raw per-round results),
#        MIKCAR=/path/to/mikcar measures another build (default build/release/src/mikcar).
set -Eeuo pipefail
# set -e alone ends a run without a word: remember the last failed command, and cleanup() names
# it if the run stops early.
trap 'LAST_FAILED="line $LINENO: \`$BASH_COMMAND\` (exit $?)"' ERR

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
cd "$ROOT"

usage() { sed -n '6,13s/^# \{0,1\}//p' "$0"; }
ARGS=("$@")
ROUNDS=5 DURATION=8 SCENARIOS=()
ALL_SCENARIOS=(health kv-get kv-set redis storage-get storage-put sql queue-push queue-pop script)
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) ROUNDS=1 DURATION=3 ;;
    --scenario) shift; IFS=, read -ra more <<<"${1:?--scenario needs a name}"; SCENARIOS+=("${more[@]}") ;;
    --scenario=*) IFS=, read -ra more <<<"${1#*=}"; SCENARIOS+=("${more[@]}") ;;
    --rounds) shift; ROUNDS=${1:?} ;;
    --duration) shift; DURATION=${1:?} ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench/run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[ ${#SCENARIOS[@]} -eq 0 ] && SCENARIOS=("${ALL_SCENARIOS[@]}")
for s in "${SCENARIOS[@]}"; do
  [[ " ${ALL_SCENARIOS[*]} " == *" $s "* ]] || { echo "unknown scenario '$s'; expected one of: ${ALL_SCENARIOS[*]}" >&2; exit 2; }
done

# --- Isolation (shared/notes/http-and-kv-bench.md §0) ---------------------------------------
# The kernel groups processes by session (sched_autogroup), so `nice` does nothing against the
# other jobs on this VM. Re-run this script in its own session with the autogroup raised to -20;
# every server and load generator started below inherits it.
if [ -z "${MIKCAR_BENCH_ISOLATED:-}" ] && [ -w /proc/self/autogroup ] && command -v setsid >/dev/null; then
  export MIKCAR_BENCH_ISOLATED=1
  # Not a process-group leader (no job control in scripts), so setsid execs in place: $! is the
  # new session's leader, the bash below.
  setsid bash -c 'echo -20 > /proc/self/autogroup; exec "$@"' _ "$BENCH/run.sh" ${ARGS[@]+"${ARGS[@]}"} &
  child=$!
  trap 'kill -TERM "$child" 2>/dev/null' INT TERM HUP
  while :; do
    set +e; wait "$child"; rc=$?; set -e
    kill -0 "$child" 2>/dev/null || exit "$rc"   # still alive: wait was interrupted by a signal
  done
fi
ISOLATION=$(cat /proc/self/autogroup 2>/dev/null || echo "n/a")

# --- Dependencies and the binary -----------------------------------------------------------
scripts/install-deps.sh bench
MIKCAR=${MIKCAR:-$ROOT/build/release/src/mikcar}
if [ ! -x "$MIKCAR" ]; then
  echo "building $MIKCAR (release)…"
  cmake --preset release -DMIKCAR_BUILD_TESTS=OFF -DMIKCAR_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build build/release --target mikcar_server
fi

NCPU=$(nproc)
SERVER_CPU=${BENCH_SERVER_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
[ "$NCPU" -lt 2 ] && CLIENT_CPU=$SERVER_CPU
BASE=${BENCH_PORT_BASE:-18400}
CONNS=50
VALUE=$(printf '0123456789%.0s' {1..10})   # the 100-byte value (same bytes as bench/lua/set.lua)
GET_KEY=benchget

TMP=$(mktemp -d /tmp/mikcar-bench.XXXXXX)
chmod 755 "$TMP"   # nginx workers (user nobody when started as root) read the storage root
head -c 4096 /dev/urandom >"$TMP/obj4k"
head -c 1048576 /dev/urandom >"$TMP/obj1m"
RESULTS=$TMP/results.tsv   # scenario cores label round rps p50 p99 cpu_us errors
: >"$RESULTS"

# --- Process bookkeeping -------------------------------------------------------------------
declare -A PID PORT CORES   # per server name: main pid, port, "1" (pinned to SERVER_CPU) or "n"
STARTED=()                  # every pid we started, in order

cleanup() {
  local rc=$? p
  trap - EXIT INT TERM HUP ERR
  [ "$rc" -ne 0 ] && echo "bench/run.sh: stopped early (exit $rc) at ${LAST_FAILED:-?}" >&2
  # nginx workers are children of the master; collect them before the master goes.
  local all=("${STARTED[@]}")
  for p in "${STARTED[@]}"; do mapfile -t -O "${#all[@]}" all < <(pgrep -P "$p" 2>/dev/null || true); done
  for p in "${all[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 120); do
    local alive=0
    for p in "${all[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for p in "${all[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${RABBIT_DIR:-}" ] && scripts/test-backends.sh stop "$RABBIT_DIR" >/dev/null 2>&1
  if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

port_free() { ! ss -ltnH "sport = :$1" | grep -q .; }

# start NAME CORES PORT CMD...   (CORES=1: pinned to SERVER_CPU; n: anywhere)
start() {
  local name=$1 cores=$2 port=$3; shift 3
  port_free "$port" || { echo "port $port is busy; set BENCH_PORT_BASE" >&2; exit 1; }
  if [ "$cores" = 1 ]; then
    taskset -c "$SERVER_CPU" "$@" >"$TMP/$name.log" 2>&1 &
  else
    "$@" >"$TMP/$name.log" 2>&1 &
  fi
  PID[$name]=$! PORT[$name]=$port CORES[$name]=$cores
  STARTED+=("$!")
}

wait_200() {  # wait_200 NAME PATH
  for _ in $(seq 200); do
    curl -sf -o /dev/null "http://127.0.0.1:${PORT[$1]}$2" && return 0
    kill -0 "${PID[$1]}" 2>/dev/null || break
    sleep 0.05
  done
  echo "$1 did not come up; its log:" >&2; cat "$TMP/$1.log" >&2; exit 1
}

wait_redis() {
  for _ in $(seq 200); do
    redis-cli -p "${PORT[$1]}" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "$1 did not come up" >&2; cat "$TMP/$1.log" >&2; exit 1
}

# All pids whose CPU time counts for a server: the process, its threads, its children (nginx
# workers) and, for webdis, the redis behind it.
declare -A BACKEND_OF
server_pids() {
  local p=${PID[$1]}
  echo "$p" "$({ pgrep -P "$p" || true; } | paste -sd' ')"
  [ -n "${BACKEND_OF[$1]:-}" ] && echo "${PID[${BACKEND_OF[$1]}]}"
  return 0
}
cpu_ns() {  # total on-CPU ns of all threads of the given pids (/proc/PID/task/*/schedstat field 1)
  local p files=()
  for p in "$@"; do files+=(/proc/"$p"/task/*/schedstat); done
  # A thread that exits between the glob and the read makes cat fail: count the others.
  { cat "${files[@]}" 2>/dev/null || true; } | awk '{ s += $1 } END { printf "%.0f\n", s }'
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# --- Servers -------------------------------------------------------------------------------
start_servers() {
  local c n
  for c in 1 n; do
    local threads=(--threads 1) off=0
    [ $c = n ] && threads=() off=2
    # mikcar: the in-memory backend and the default embedded LMDB (durable, group commit).
    KV_URL=memory:// start mikcar-memory-$c $c $((BASE + 1 + off)) \
      "$MIKCAR" --kv --no-auth --port $((BASE + 1 + off)) "${threads[@]}" --log-level warn
    KV_URL=file://$TMP/kv-$c start mikcar-file-$c $c $((BASE + 2 + off)) \
      "$MIKCAR" --kv --no-auth --port $((BASE + 2 + off)) "${threads[@]}" --log-level warn
    # SQL on PostgreSQL (started by start_postgres before the servers).
    DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/bench?pool_max=$SQL_CONNS" \
      start mikcar-sql-$c $c $((BASE + 60 + off)) \
      "$MIKCAR" --sql --no-auth --port $((BASE + 60 + off)) "${threads[@]}" --log-level warn
    # Queues: the durable embedded default (LMDB, group commit) and memory://.
    QUEUE_URL=file://$TMP/queue-$c start mikcar-queue-file-$c $c $((BASE + 70 + off)) \
      "$MIKCAR" --queue --no-auth --port $((BASE + 70 + off)) "${threads[@]}" --log-level warn
    QUEUE_URL=memory:// start mikcar-queue-memory-$c $c $((BASE + 71 + off)) \
      "$MIKCAR" --queue --no-auth --port $((BASE + 71 + off)) "${threads[@]}" --log-level warn
    # Object storage on the embedded file:// backend; nginx serves the same root.
    STORAGE_URL=file://$TMP/objects-$c start mikcar-storage-$c $c $((BASE + 5 + off)) \
      "$MIKCAR" --storage --no-auth --port $((BASE + 5 + off)) "${threads[@]}" --log-level warn \
      --data-dir "$TMP/data-$c"
  done
  for c in 1 n; do
    n=$([ $c = 1 ] && echo 1 || echo "$NCPU")
    off=$([ $c = 1 ] && echo 0 || echo 1)
    # nginx: one worker per core the comparison uses.
    mkdir -p "$TMP/nginx-$c/put"
    chmod 777 "$TMP/nginx-$c/put"   # written by nginx's workers (user nobody when started as root)
    sed -e "s|@WORKERS@|$n|" -e "s|@PORT@|$((BASE + 10 + off))|" -e "s|@DIR@|$TMP/nginx-$c|g" \
      -e "s|@VALUE@|$VALUE|" -e "s|@OBJECTS@|$TMP/objects-$c|" "$BENCH/nginx.conf.in" \
      >"$TMP/nginx-$c/nginx.conf"
    start nginx-$c $c $((BASE + 10 + off)) \
      nginx -p "$TMP/nginx-$c" -c "$TMP/nginx-$c/nginx.conf" -e "$TMP/nginx-$c/error.log"
    # redis with the durability most deployments use, and webdis (HTTP→redis) in front of it.
    mkdir -p "$TMP/redis-$c"
    start redis-$c $c $((BASE + 20 + off)) \
      redis-server --port $((BASE + 20 + off)) --bind 127.0.0.1 --save '' --appendonly yes \
      --appendfsync everysec --dir "$TMP/redis-$c" --daemonize no
    wait_redis redis-$c
    cat >"$TMP/webdis-$c.json" <<EOF
{"redis_host": "127.0.0.1", "redis_port": $((BASE + 20 + off)), "redis_auth": null,
 "http_host": "127.0.0.1", "http_port": $((BASE + 30 + off)), "threads": $n, "pool_size": 20,
 "daemonize": false, "database": 0, "verbosity": 1, "logfile": "$TMP/webdis-$c.daemon.log"}
EOF
    start webdis-$c $c $((BASE + 30 + off)) webdis "$TMP/webdis-$c.json"
    # The raw durable-queue reference: a redis that fsyncs its AOF before it answers.
    mkdir -p "$TMP/redis-durable-$c"
    start redis-durable-$c $c $((BASE + 24 + off)) \
      redis-server --port $((BASE + 24 + off)) --bind 127.0.0.1 --save '' --appendonly yes \
      --appendfsync always --dir "$TMP/redis-durable-$c" --daemonize no
    wait_redis redis-durable-$c
    BACKEND_OF[webdis-$c]=redis-$c
  done
  # Multi-core, each server also with the other thread count: mikcar with one I/O thread per
  # core (its default is one per two cores), nginx with 1 worker, webdis with 1 thread (on the
  # same redis). The ratios use the faster nginx and the faster webdis.
  KV_URL=file://$TMP/kv-t start mikcar-file-threads n $((BASE + 6)) \
    "$MIKCAR" --kv --no-auth --port $((BASE + 6)) --threads "$NCPU" --log-level warn
  mkdir -p "$TMP/nginx-n1"
  sed -e "s|@WORKERS@|1|" -e "s|@PORT@|$((BASE + 12))|" -e "s|@DIR@|$TMP/nginx-n1|g" \
    -e "s|@VALUE@|$VALUE|" -e "s|@OBJECTS@|$TMP/objects-n|" "$BENCH/nginx.conf.in" \
    >"$TMP/nginx-n1/nginx.conf"
  start nginx-1w n $((BASE + 12)) nginx -p "$TMP/nginx-n1" -c "$TMP/nginx-n1/nginx.conf" -e "$TMP/nginx-n1/error.log"
  sed -e 's/"threads": [0-9]*/"threads": 1/' -e "s/\"http_port\": [0-9]*/\"http_port\": $((BASE + 32))/" \
    -e "s|webdis-n.daemon.log|webdis-1t.daemon.log|" "$TMP/webdis-n.json" >"$TMP/webdis-1t.json"
  start webdis-1t n $((BASE + 32)) webdis "$TMP/webdis-1t.json"
  BACKEND_OF[webdis-1t]=redis-n
  # Networked queue backends, multi-core only (their servers are not pinned either): redis://
  # on the fsync-always redis (the XADD reference's server) and amqp:// on RabbitMQ.
  QUEUE_URL="redis://127.0.0.1:${PORT[redis-durable-n]}/?prefix=mikcar-bench:" \
    start mikcar-queue-redis-n n $((BASE + 80)) \
    "$MIKCAR" --queue --no-auth --port $((BASE + 80)) --log-level warn
  BACKEND_OF[mikcar-queue-redis-n]=redis-durable-n
  if [ -n "${AMQP_URL:-}" ]; then
    QUEUE_URL=$AMQP_URL start mikcar-queue-amqp-n n $((BASE + 81)) \
      "$MIKCAR" --queue --no-auth --port $((BASE + 81)) --log-level warn
  fi
  for c in 1 n; do
    wait_200 mikcar-memory-$c /health
    wait_200 mikcar-file-$c /health
    wait_200 mikcar-storage-$c /health
    wait_200 mikcar-sql-$c /health
    wait_200 mikcar-queue-file-$c /health
    wait_200 mikcar-queue-memory-$c /health
    [ $c = n ] && wait_200 mikcar-queue-redis-n /health
    [ $c = n ] && [ -n "${AMQP_URL:-}" ] && wait_200 mikcar-queue-amqp-n /health
    wait_200 nginx-$c /health
    wait_200 webdis-$c /PING
  done
  wait_200 mikcar-file-threads /health
  wait_200 nginx-1w /health
  wait_200 webdis-1t /PING
}

preload() {  # the value every KV GET reads
  local c s
  for c in 1 n; do
    for s in mikcar-memory-$c mikcar-file-$c; do
      curl -sf -o /dev/null -X POST -H 'content-type: text/plain; charset=utf-8' --data-binary "$VALUE" \
        "http://127.0.0.1:${PORT[$s]}/kv/set/$GET_KEY"
      [ "$(curl -sf "http://127.0.0.1:${PORT[$s]}/kv/get/$GET_KEY")" = "$VALUE" ] || { echo "$s: preload failed" >&2; exit 1; }
    done
    redis-cli -p "${PORT[redis-$c]}" set "$GET_KEY" "$VALUE" >/dev/null
    [ "$(curl -sf "http://127.0.0.1:${PORT[webdis-$c]}/GET/$GET_KEY.txt")" = "$VALUE" ] || { echo "webdis-$c: preload failed" >&2; exit 1; }
    [ "$(curl -sf "http://127.0.0.1:${PORT[nginx-$c]}/kv/get/$GET_KEY")" = "$VALUE" ] || { echo "nginx-$c: bad config" >&2; exit 1; }
    # The objects the storage GETs read, stored through mikcar, read back through both servers.
    for o in obj4k obj1m; do
      curl -sf -o /dev/null -X PUT --data-binary "@$TMP/$o" "http://127.0.0.1:${PORT[mikcar-storage-$c]}/storage/object/$o"
      for s in mikcar-storage-$c nginx-$c; do
        cmp -s "$TMP/$o" <(curl -sf "http://127.0.0.1:${PORT[$s]}/storage/object/$o") || { echo "$s: $o preload failed" >&2; exit 1; }
      done
    done
  done
  # The servers with the other thread count (webdis-1t reads redis-n, loaded above).
  curl -sf -o /dev/null -X POST --data-binary "$VALUE" "http://127.0.0.1:${PORT[mikcar-file-threads]}/kv/set/$GET_KEY"
  for s in mikcar-file-threads nginx-1w; do
    [ "$(curl -sf "http://127.0.0.1:${PORT[$s]}/kv/get/$GET_KEY")" = "$VALUE" ] || { echo "$s: preload failed" >&2; exit 1; }
  done
  [ "$(curl -sf "http://127.0.0.1:${PORT[webdis-1t]}/GET/$GET_KEY.txt")" = "$VALUE" ] || { echo "webdis-1t: preload failed" >&2; exit 1; }
}

# --- One measurement -----------------------------------------------------------------------
# measure SCENARIO LABEL SERVER ROUND PATH [LUA-SCRIPT LUA-ARGS...]   (ROUND 0 = warm-up, not kept)
# 1-core servers get wrk pinned to the other core; multi-core servers share all cores with wrk.
measure() {
  local scenario=$1 label=$2 server=$3 round=$4 path=$5; shift 5
  local cores=${CORES[$server]} dur=$DURATION pin=() script=()
  [ "$round" = 0 ] && dur=1
  [ "$cores" = 1 ] && pin=(taskset -c "$CLIENT_CPU")
  [ $# -gt 0 ] && script=(-s "$1") && shift
  local pids; pids=$(server_pids "$server")
  local cpu0; cpu0=$(cpu_ns $pids)
  local out
  out=$("${pin[@]}" wrk -t1 -c"${MEASURE_CONNS:-$CONNS}" -d"${dur}s" --latency "${script[@]}" \
    "http://127.0.0.1:${PORT[$server]}$path" ${1:+--} "$@" 2>&1) || { echo "wrk failed: $out" >&2; exit 1; }
  local cpu1; cpu1=$(cpu_ns $pids)
  [ "$round" = 0 ] && return 0
  echo "$out" | awk -v s="$scenario" -v c="$cores" -v l="$label" -v r="$round" -v cpu=$((cpu1 - cpu0)) '
    function ms(t,  v) { v = t; sub(/[a-z]+$/, "", v)
      if (t ~ /us$/) return v / 1000; if (t ~ /ms$/) return v; if (t ~ /m$/) return v * 60000; return v * 1000 }
    / requests in /    { n = $1 }
    /^Requests\/sec:/  { rps = $2 }
    /^ +50%/           { p50 = ms($2) }
    /^ +99%/           { p99 = ms($2) }
    /^ +Non-2xx/       { err += $NF }
    /^ +Socket errors/ { gsub(/[^0-9 ]/, ""); for (i = 1; i <= NF; i++) err += $i }
    END { printf "%s\t%s\t%s\t%s\t%.0f\t%.3f\t%.3f\t%.1f\t%d\n", s, c, l, r, rps, p50, p99,
                 n ? cpu / 1000 / n : 0, err }' >>"$RESULTS"
  tail -n1 "$RESULTS" | awk -F'\t' '{ printf "  %-8s %-2s %-24s round %s: %8s req/s  p50 %6.3f ms  p99 %6.3f ms%s\n",
    $1, $2, $3, $4, $5, $6, $7, ($9 > 0 ? "  ERRORS " $9 : "") }'
}

# Every target of a scenario is measured once per round, interleaved, so drift in the
# machine's load hits all of them alike. Each target gets a 1 s warm-up first.
rounds() {  # rounds FUNCTION: FUNCTION ROUND measures every target once
  local r
  "$1" 0
  for r in $(seq "$ROUNDS"); do "$1" "$r"; done
}

health_targets() {
  local r=$1 c
  for c in 1 n; do
    measure health mikcar mikcar-memory-$c "$r" /health
    measure health nginx nginx-$c "$r" /health
  done
  measure health mikcar-file-threads mikcar-file-threads "$r" /health
  measure health nginx-1w nginx-1w "$r" /health
}
kv_get_targets() {
  local r=$1 c
  for c in 1 n; do
    measure kv-get mikcar-memory mikcar-memory-$c "$r" /kv/get/$GET_KEY
    measure kv-get mikcar-file mikcar-file-$c "$r" /kv/get/$GET_KEY
    measure kv-get nginx nginx-$c "$r" /kv/get/$GET_KEY
    measure kv-get webdis webdis-$c "$r" /GET/$GET_KEY.txt
  done
  measure kv-get mikcar-file-threads mikcar-file-threads "$r" /kv/get/$GET_KEY
  measure kv-get nginx-1w nginx-1w "$r" /kv/get/$GET_KEY
  measure kv-get webdis-1t webdis-1t "$r" /GET/$GET_KEY.txt
}
kv_set_targets() {
  local r=$1 c set=$BENCH/lua/set.lua
  for c in 1 n; do
    measure kv-set mikcar-memory mikcar-memory-$c "$r" / "$set" POST /kv/set/bench: 100000
    measure kv-set mikcar-file mikcar-file-$c "$r" / "$set" POST /kv/set/bench: 100000
    measure kv-set webdis webdis-$c "$r" / "$set" PUT /SET/bench: 100000
  done
  measure kv-set mikcar-file-threads mikcar-file-threads "$r" / "$set" POST /kv/set/bench: 100000
  measure kv-set webdis-1t webdis-1t "$r" / "$set" PUT /SET/bench: 100000
}

storage_get_targets() {
  local r=$1 c o
  for c in 1 n; do
    for o in obj4k obj1m; do
      measure "get-${o#obj}" mikcar-storage mikcar-storage-$c "$r" /storage/object/$o
      measure "get-${o#obj}" nginx-static nginx-$c "$r" /storage/object/$o
    done
  done
}
storage_put_targets() {  # 1 MiB PUTs over 100 names (each replaces an object)
  local r=$1 c put=$BENCH/lua/put.lua
  for c in 1 n; do
    measure put-1m mikcar-storage mikcar-storage-$c "$r" / "$put" /storage/object/put- 100
    measure put-1m nginx-dav nginx-$c "$r" / "$put" /put/put- 100
  done
}

# PostgreSQL point select: mikcar /sql/query against pgbench -S, nothing pinned (PostgreSQL needs
# a core of its own too), with both of pgbench's extended-protocol modes: unnamed statements
# (parsed and planned every time) and prepared ones (what mikcar does from a statement's second
# use on a connection). At 16 connections (mikcar's pool_max) for throughput, and at 1 for the
# latency mikcar adds.
SQL_CONNS=16
pgbench_round() {  # pgbench_round SCENARIO CLIENTS ROUND MODE (extended | prepared)
  local out
  out=$(pgbench -n -S -M "$4" -c "$2" -j 1 -T "$DURATION" -h 127.0.0.1 -p "$PG_PORT" \
    -U postgres bench 2>&1)
  echo "$out" | awk -v s="$1" -v r="$3" -v m="$4" '
    /^latency average/ { lat = $4 }
    /^tps/ { tps = $3 }
    END { printf "%s\tn\tpgbench-%s\t%s\t%.0f\t%.3f\t\t0\t0\n", s, m, r, tps, lat }' >>"$RESULTS"
  tail -n1 "$RESULTS" | awk -F'\t' '{ printf "  %-8s %-2s %-24s round %s: %8s req/s  avg %6.3f ms\n", $1, $2, $3, $4, $5, $6 }'
}
sql_targets() {
  local r=$1
  MEASURE_CONNS=$SQL_CONNS measure sql-c16 mikcar-sql mikcar-sql-n "$r" / "$BENCH/lua/sql.lua"
  MEASURE_CONNS=1 measure sql-c1 mikcar-sql mikcar-sql-n "$r" / "$BENCH/lua/sql.lua"
  [ "$r" = 0 ] && return 0
  local mode
  for mode in extended prepared; do
    pgbench_round sql-c16 $SQL_CONNS "$r" $mode
    pgbench_round sql-c1 1 "$r" $mode
  done
}

# Queues: durable push (50 connections, 100-byte JSON) and pop-with-lease + ack (two requests
# per message), against redis-benchmark on a redis with appendfsync always: XADD for push, and
# LPUSH-filled RPOP for pop (at-most-once: one command per message).
QUEUE_FILL=200000
queue_push_targets() {
  local r=$1 c push=$BENCH/lua/push.lua
  for c in 1 n; do
    measure queue-push mikcar-queue-file mikcar-queue-file-$c "$r" / "$push" /queue/push/bench
    measure queue-push mikcar-queue-memory mikcar-queue-memory-$c "$r" / "$push" /queue/push/bench
    redis_command_round queue-push "$c" redis-durable-$c "$r" XADD benchstream MAXLEN '~' 100000 '*' payload "$VALUE"
  done
  measure queue-push mikcar-queue-redis mikcar-queue-redis-n "$r" / "$push" /queue/push/bench
  if [ -n "${AMQP_URL:-}" ]; then
    measure queue-push mikcar-queue-amqp mikcar-queue-amqp-n "$r" / "$push" /queue/push/bench
    amqp_round queue-push push "$r"
  fi
}
# amqp_round SCENARIO push|pop ROUND: bench/amqp_ref.c, a direct rabbitmq-c client (publisher
# confirms with CONNS unconfirmed / consume with prefetch CONNS and an ack per message).
amqp_round() {
  [ "$3" = 0 ] && return 0
  local rps
  rps=$("$TMP/amqp_ref" "${AMQP_ARGS[@]}" "bench-ref" "$2" "$DURATION" "$CONNS")
  printf '%s\tn\trabbitmq-direct\t%s\t%s\t\t\t0\t0\n' "$1" "$3" "$rps" >>"$RESULTS"
  printf '  %-8s %-2s %-24s round %s: %8s msg/s\n' "$1" n rabbitmq-direct "$3" "$rps"
}
queue_fill() {  # queue_fill SERVER: at least QUEUE_FILL messages in queue "popbench"
  local have batch
  # In a file: 1 MB is over the kernel's limit for one command-line argument (128 KiB).
  batch=$TMP/fill-batch.json
  [ -f "$batch" ] || python3 -c 'import json; print(json.dumps({"messages": [{"payload": "x" * 80, "n": i} for i in range(10000)]}))' >"$batch"
  # A failed request warns and ends the fill (set -e would end the whole run without a word).
  have=$(curl -sS "http://127.0.0.1:${PORT[$1]}/queue/len/popbench" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["length"])') ||
    { echo "  warning: queue len on $1 failed; popbench not filled" >&2; return 0; }
  while [ "$have" -lt "$QUEUE_FILL" ]; do
    curl -sS --fail-with-body -o "$TMP/fill-answer" -H 'content-type: application/json' \
      --data-binary "@$batch" "http://127.0.0.1:${PORT[$1]}/queue/push/popbench/batch" ||
      { echo "  warning: filling popbench on $1 failed: $(head -c 300 "$TMP/fill-answer")" >&2; return 0; }
    have=$((have + 10000))
  done
}
queue_pop_targets() {
  local r=$1 c s pop=$BENCH/lua/pop_ack.lua
  for c in 1 n; do
    for s in mikcar-queue-file mikcar-queue-memory; do
      queue_fill $s-$c
      measure queue-pop $s $s-$c "$r" / "$pop" popbench
    done
    redis-cli -p "${PORT[redis-durable-$c]}" del benchlist >/dev/null
    redis-benchmark -h 127.0.0.1 -p "${PORT[redis-durable-$c]}" -n "$QUEUE_FILL" -c "$CONNS" -P 16 \
      LPUSH benchlist "$VALUE" >/dev/null 2>&1 ||
      echo "  warning: redis-benchmark LPUSH fill of benchlist failed (RPOP below may run short)" >&2
    redis_command_round queue-pop "$c" redis-durable-$c "$r" RPOP benchlist
  done
  queue_fill mikcar-queue-redis-n
  measure queue-pop mikcar-queue-redis mikcar-queue-redis-n "$r" / "$pop" popbench
  if [ -n "${AMQP_URL:-}" ]; then
    queue_fill mikcar-queue-amqp-n
    measure queue-pop mikcar-queue-amqp mikcar-queue-amqp-n "$r" / "$pop" popbench
    # The reference consumes what its push rounds published (at least QUEUE_FILL of them).
    [ "$r" = 0 ] || "$TMP/amqp_ref" "${AMQP_ARGS[@]}" bench-ref push "$DURATION" "$CONNS" >/dev/null
    amqp_round queue-pop pop "$r"
  fi
}
# redis_command_round SCENARIO CORES SERVER ROUND COMMAND...: redis-benchmark running one command.
redis_command_round() {
  local scenario=$1 c=$2 server=$3 r=$4; shift 4
  [ "$r" = 0 ] && return 0
  local n=$((20000 * DURATION)) pids cpu0 cpu1 out pin=()
  [ "$c" = 1 ] && pin=(taskset -c "$CLIENT_CPU")
  pids=$(server_pids "$server")
  cpu0=$(cpu_ns $pids)
  out=$("${pin[@]}" redis-benchmark -h 127.0.0.1 -p "${PORT[$server]}" -n "$n" -c "$CONNS" --csv "$@" 2>&1)
  cpu1=$(cpu_ns $pids)
  echo "$out" | tr -d '"' | awk -F, -v s="$scenario" -v c="$c" -v r="$r" -v n="$n" -v cpu=$((cpu1 - cpu0)) -v cmd="$1" '
    NF >= 7 && $2 ~ /^[0-9.]+$/ { printf "%s\t%s\tredis-%s\t%s\t%.0f\t%.3f\t%.3f\t%.1f\t0\n", s, c, cmd, r, $2, $5, $7, cpu / 1000 / n }' >>"$RESULTS"
  tail -n1 "$RESULTS" | awk -F'\t' '{ printf "  %-8s %-2s %-24s round %s: %8s req/s  p50 %6.3f ms  p99 %6.3f ms\n",
    $1, $2, $3, $4, $5, $6, $7 }'
}

# /sql/script on the same PostgreSQL, one connection (latency is what a script adds): a script
# that touches no table and one point select in a script against /sql/query, two point selects in
# a script against the same two through /sql/batch (both one transaction: BEGIN, 2 ×, COMMIT).
script_targets() {
  local r=$1 lua=$BENCH/lua/script.lua
  MEASURE_CONNS=1 measure script-c1 sql-query mikcar-sql-n "$r" / "$BENCH/lua/sql.lua"
  MEASURE_CONNS=1 measure script-c1 script-trivial mikcar-sql-n "$r" / "$lua" trivial
  MEASURE_CONNS=1 measure script-c1 script-1-query mikcar-sql-n "$r" / "$lua" one
  MEASURE_CONNS=1 measure script-c1 sql-batch-2 mikcar-sql-n "$r" / "$lua" batch2
  MEASURE_CONNS=1 measure script-c1 script-2-queries mikcar-sql-n "$r" / "$lua" two
}
# The p50 a script adds over its reference, in µs, from the medians of the report.
script_overhead() {
  local k=script-c1\|n\| a b
  echo
  echo "/sql/script overhead at 1 connection (p50 difference, medians of $ROUNDS round(s)):"
  for pair in "script-trivial sql-query" "script-1-query sql-query" "script-2-queries sql-batch-2"; do
    read -r a b <<<"$pair"
    [ -n "${P50[$k$a]:-}" ] && [ -n "${P50[$k$b]:-}" ] || continue
    awk -v a="${P50[$k$a]}" -v b="${P50[$k$b]}" -v na="$a" -v nb="$b" \
      'BEGIN { printf "  %-18s %7.0f µs p50 vs %-12s %7.0f µs: %+6.0f µs per request\n", na, a * 1000, nb, b * 1000, (a - b) * 1000 }'
  done
}

# A throwaway PostgreSQL 15 cluster (fsync off) with pgbench's tables at scale 1.
PG_PORT=$((BASE + 50))
start_postgres() {
  local bin=/usr/lib/postgresql/15/bin
  mkdir -p "$TMP/pg" && chown postgres "$TMP/pg"
  runuser -u postgres -- "$bin/initdb" -D "$TMP/pg/data" -U postgres --auth=trust >/dev/null
  runuser -u postgres -- "$bin/postgres" -D "$TMP/pg/data" -p "$PG_PORT" -k "$TMP/pg" \
    -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 >"$TMP/pg.log" 2>&1 &
  STARTED+=("$!")
  for _ in $(seq 100); do pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && break; sleep 0.1; done
  createdb -h 127.0.0.1 -p "$PG_PORT" -U postgres bench
  pgbench -i -s 1 -q -h 127.0.0.1 -p "$PG_PORT" -U postgres bench >/dev/null 2>&1
}

# redis-benchmark straight against redis (pinned like the 1-core HTTP runs): the raw-store ceiling.
redis_targets() {
  local r=$1 t n=$((50000 * DURATION)) pids cpu0 cpu1 out
  [ "$r" = 0 ] && return 0
  pids=$(server_pids redis-1)
  for t in set get; do
    cpu0=$(cpu_ns $pids)
    out=$(taskset -c "$CLIENT_CPU" redis-benchmark -h 127.0.0.1 -p "${PORT[redis-1]}" -t $t -n $n \
      -c "$CONNS" -d 100 -r 100000 --csv 2>&1)
    cpu1=$(cpu_ns $pids)
    # CSV: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms",…
    echo "$out" | tr -d '"' | awk -F, -v r="$r" -v n="$n" -v cpu=$((cpu1 - cpu0)) '
      $1 ~ /^(SET|GET)$/ && NF >= 7 { printf "redis\t1\tredis-%s\t%s\t%.0f\t%.3f\t%.3f\t%.1f\t0\n",
                          $1, r, $2, $5, $7, cpu / 1000 / n }' >>"$RESULTS"
    tail -n1 "$RESULTS" | awk -F'\t' '{ printf "  %-8s %-2s %-24s round %s: %8s req/s  p50 %6.3f ms  p99 %6.3f ms\n",
      $1, $2, $3, $4, $5, $6, $7 }'
  done
}

# --- Startup time and memory ---------------------------------------------------------------
STARTUP=()
startup_probe() {  # 5 cold starts per backend, pinned; median ms to the first 200 on /health
  local kind url i times rss
  for kind in memory file; do
    times=()
    for i in 1 2 3 4 5; do
      url=memory://
      [ $kind = file ] && url=file://$TMP/startup-kv-$i
      read -r t rss < <(KV_URL=$url "$BENCH/first200.py" $((BASE + 40)) /health -- \
        taskset -c "$SERVER_CPU" "$MIKCAR" --kv --no-auth --threads 1 --port $((BASE + 40)) --log-level warn)
      times+=("$t")
    done
    STARTUP+=("$kind $(printf '%s\n' "${times[@]}" | sort -g | sed -n 3p) $(printf '%s\n' "${times[@]}" | sort -g | sed -n '1p;$p' | paste -sd-) $rss")
  done
}

# --- Report --------------------------------------------------------------------------------
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

declare -A RPS P50 P99 CPU ERR RANGE
ratio() {  # ratio KEY REFERENCE-KEY → "0.93x", or nothing if either is missing
  local a=${RPS[$1]:-} b=${RPS[$2]:-}
  [ -n "$a" ] && [ -n "$b" ] && [ "$b" != 0 ] && awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2fx", a / b }'
  return 0
}
faster() {  # faster KEY... → the key with the most req/s (a reference run with two thread counts)
  local k best=""
  for k in "$@"; do
    [ -n "${RPS[$k]:-}" ] || continue
    if [ -z "$best" ] || awk -v a="${RPS[$k]}" -v b="${RPS[$best]}" 'BEGIN { exit !(a > b) }'; then best=$k; fi
  done
  echo "$best"
}
display_name() {
  case $1 in
    mikcar) echo "mikcar" ;;
    mikcar-memory) echo "mikcar memory://" ;;
    mikcar-file) echo "mikcar file:// (LMDB, fsync)" ;;
    mikcar-file-threads) echo "mikcar file:// --threads $NCPU" ;;
    nginx) echo "nginx return 200" ;;
    nginx-1w) echo "nginx return 200, 1 worker" ;;
    mikcar-storage) echo "mikcar storage file:// (fsync)" ;;
    nginx-static) echo "nginx static file (sendfile)" ;;
    nginx-dav) echo "nginx WebDAV PUT (no fsync)" ;;
    mikcar-sql) echo "mikcar /sql/query → PostgreSQL" ;;
    sql-query) echo "/sql/query 1 point select" ;;
    script-trivial) echo "/sql/script return input.aid" ;;
    script-1-query) echo "/sql/script 1 point select" ;;
    sql-batch-2) echo "/sql/batch 2 point selects" ;;
    script-2-queries) echo "/sql/script 2 point selects" ;;
    pgbench-extended) echo "pgbench -S -M extended (avg)" ;;
    pgbench-prepared) echo "pgbench -S -M prepared (avg)" ;;
    webdis) echo "webdis + redis" ;;
    webdis-1t) echo "webdis (1 thread) + redis" ;;
    redis-SET|redis-GET) echo "redis-benchmark ${1#redis-}" ;;
    mikcar-queue-file) echo "mikcar queue file:// (LMDB, fsync)" ;;
    mikcar-queue-memory) echo "mikcar queue memory://" ;;
    mikcar-queue-redis) echo "mikcar queue redis:// (fsync always)" ;;
    mikcar-queue-amqp) echo "mikcar queue amqp:// (RabbitMQ)" ;;
    rabbitmq-direct) echo "rabbitmq-c direct (confirms/acks)" ;;
    redis-XADD|redis-RPOP) echo "redis-benchmark ${1#redis-} (fsync always)" ;;
    *) echo "$1" ;;
  esac
}

report() {
  local key s c l rows keys
  keys=$(cut -f1-3 "$RESULTS" | awk '!seen[$0]++' | tr '\t' '|')
  for key in $keys; do
    IFS='|' read -r s c l <<<"$key"
    rows=$(awk -F'\t' -v s="$s" -v c="$c" -v l="$l" '$1 == s && $2 == c && $3 == l' "$RESULTS")
    RPS[$key]=$(cut -f5 <<<"$rows" | median)
    P50[$key]=$(cut -f6 <<<"$rows" | median)
    P99[$key]=$(cut -f7 <<<"$rows" | median)
    CPU[$key]=$(cut -f8 <<<"$rows" | median)
    ERR[$key]=$(cut -f9 <<<"$rows" | awk '{ s += $1 } END { print s }')
    RANGE[$key]=$(cut -f5 <<<"$rows" | sort -g | sed -n '1p;$p' | paste -sd-)
  done
  echo
  echo "## Results: median of $ROUNDS round(s) × ${DURATION}s, wrk -t1 -c$CONNS, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "cores 1: server pinned to CPU $SERVER_CPU, load generator to CPU $CLIENT_CPU (mikcar --threads 1, nginx 1 worker,"
  echo "webdis 1 thread + its redis on that core). cores $NCPU: nothing pinned, load generator on the same cores;"
  echo "mikcar with its default threads and with --threads $NCPU, nginx with $NCPU workers and with 1, webdis with"
  echo "$NCPU threads and with 1: x nginx and x webdis are against the faster of the two (marked ref)."
  echo "CPU µs/req = server on-CPU time per request."
  echo
  local fmt='| %-8s | %5s | %-32s | %8s | %-13s | %6s | %6s | %6s | %7s | %8s | %13s |\n'
  printf "$fmt" scenario cores server "req/s" "min-max" "p50 ms" "p99 ms" "CPU us" "x nginx|pg" "x webdis" "x redis-bench"
  printf "$fmt" | sed 's/ /-/g; s/-|-/ | /g; s/^|-/| /; s/-|$/ |/'
  for key in $keys; do
    IFS='|' read -r s c l <<<"$key"
    local to_nginx="" to_webdis="" to_redis="" name
    local nginx_ref webdis_ref
    nginx_ref=$(faster "$s|$c|nginx" "$s|$c|nginx-1w") webdis_ref=$(faster "$s|$c|webdis" "$s|$c|webdis-1t")
    name=$(display_name "$l")
    [ "${ERR[$key]}" != 0 ] && name+=" [${ERR[$key]} errors]"
    case $s in
      health) to_nginx=$(ratio "$key" "$nginx_ref") ;;
      kv-get) to_nginx=$(ratio "$key" "$nginx_ref"); to_webdis=$(ratio "$key" "$webdis_ref")
              to_redis=$(ratio "$key" "redis|1|redis-GET") ;;
      kv-set) to_webdis=$(ratio "$key" "$webdis_ref"); to_redis=$(ratio "$key" "redis|1|redis-SET") ;;
      get-*) to_nginx=$(ratio "$key" "$s|$c|nginx-static") ;;
      put-*) to_nginx=$(ratio "$key" "$s|$c|nginx-dav") ;;
      sql-*) to_nginx="$(ratio "$key" "$s|$c|pgbench-extended") / $(ratio "$key" "$s|$c|pgbench-prepared")"
        [[ "$l" == pgbench* ]] && to_nginx=ref ;;
      queue-push) to_redis=$(ratio "$key" "$s|$c|redis-XADD")
        [[ "$l" == *amqp ]] && to_redis=$(ratio "$key" "$s|$c|rabbitmq-direct") ;;
      queue-pop)  # mikcar spends two requests (pop, ack) per message, redis one (RPOP)
        [[ "$l" == mikcar* ]] && RPS[$key.msg]=$(awk -v r="${RPS[$key]}" 'BEGIN { printf "%.0f", r / 2 }') &&
          name+=" [msg/s = req/s / 2]"
        to_redis=$(ratio "$key${RPS[$key.msg]:+.msg}" "$s|$c|redis-RPOP")
        [[ "$l" == *amqp ]] && to_redis=$(ratio "$key.msg" "$s|$c|rabbitmq-direct") ;;
    esac
    [[ "$l" == nginx* && ( -z "$nginx_ref" || "$key" == "$nginx_ref" ) ]] && to_nginx=ref
    [ "$key" = "$webdis_ref" ] && to_webdis=ref
    [ "$l" = rabbitmq-direct ] && to_redis=ref
    printf "$fmt" "$s" "$([ "$c" = n ] && echo "$NCPU" || echo 1)" "$name" "${RPS[$key]}" "${RANGE[$key]}" \
      "${P50[$key]}" "${P99[$key]}" "${CPU[$key]}" "$to_nginx" "$to_webdis" "$to_redis"
  done
}

# --- Main ----------------------------------------------------------------------------------
echo "mikcar bench: $("$MIKCAR" --version | head -n1), $MIKCAR"
echo "machine: $NCPU vCPU $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(. /etc/os-release; echo "$PRETTY_NAME"), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "isolation: autogroup ${ISOLATION}; rounds $ROUNDS × ${DURATION}s; scenarios: ${SCENARIOS[*]}"
echo "versions: $(nginx -v 2>&1 | sed 's/.*: //'), redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), webdis $(dpkg-query -W -f='${Version}' webdis 2>/dev/null), wrk $(dpkg-query -W -f='${Version}' wrk 2>/dev/null)"

startup_probe
start_postgres
# RabbitMQ (~15 s to start) only when a queue scenario runs; amqp:// rows compare with a direct
# rabbitmq-c client (the x redis-bench column holds that ratio for them).
if [[ " ${SCENARIOS[*]} " == *" queue-"* ]]; then
  RABBIT_DIR=$TMP/backends
  eval "$(scripts/test-backends.sh start-rabbitmq "$RABBIT_DIR")"
  AMQP_URL=$MIKCAR_TEST_AMQP_URL
  u=${AMQP_URL#amqp://} hp=${AMQP_URL#*@}
  hp=${hp%/}
  AMQP_ARGS=("${hp%:*}" "${hp#*:}" "${u%%:*}" "$(u=${u#*:}; echo "${u%%@*}")")
  cc -O2 -o "$TMP/amqp_ref" "$BENCH/amqp_ref.c" -lrabbitmq
fi
start_servers
sleep 1
declare -A IDLE_RSS
for s in mikcar-memory-1 mikcar-file-1 mikcar-storage-1 mikcar-memory-n mikcar-file-n mikcar-storage-n; do IDLE_RSS[$s]=$(rss_kb "${PID[$s]}"); done
preload

for s in "${SCENARIOS[@]}"; do
  echo "scenario $s (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  case $s in
    health) rounds health_targets ;;
    kv-get) rounds kv_get_targets ;;
    kv-set) rounds kv_set_targets ;;
    redis) rounds redis_targets ;;
    storage-get) rounds storage_get_targets ;;
    storage-put) rounds storage_put_targets ;;
    sql) rounds sql_targets ;;
    queue-push) rounds queue_push_targets ;;
    queue-pop) rounds queue_pop_targets ;;

    script) rounds script_targets ;;
  esac
done

report
[[ " ${SCENARIOS[*]} " == *" script "* ]] && script_overhead
echo
echo "mikcar startup → first 200 on /health (5 cold starts, --threads 1, pinned; median, min–max; RSS then):"
for line in "${STARTUP[@]}"; do
  read -r kind med range rss <<<"$line"
  printf '  %-8s %6s ms  (%s ms)  RSS %s MiB\n' "$kind://" "$med" "$range" "$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')"
done
echo "mikcar RSS (VmRSS), idle after start → after the benchmark:"
for s in mikcar-memory-1 mikcar-file-1 mikcar-storage-1 mikcar-memory-n mikcar-file-n mikcar-storage-n; do
  printf '  %-18s %6.1f MiB → %6.1f MiB\n' "$s" "$(awk -v k="${IDLE_RSS[$s]}" 'BEGIN { print k / 1024 }')" \
    "$(awk -v k="$(rss_kb "${PID[$s]}")" 'BEGIN { print k / 1024 }')"
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
