#!/usr/bin/env bash
# User-space instructions per request, counted by callgrind: the one noise-free measure on a
# shared VM without hardware counters. Runs the release mikcar (`--threads 1`, KV_URL=memory://)
# under valgrind, warms up for 2 s, counts instructions over a 5 s wrk run at 10 connections and
# divides by the requests served. Compare two binaries with MIKCAR=/path/to/other/mikcar.
#
# Usage: bench/instructions.sh [PATH [SCRIPT.lua [ARGS...]]]
#   PATH defaults to /health; /kv/get/bench reads a 100-byte value stored first. A wrk script
#   (and its arguments) makes the requests instead, e.g. the SQL point select:
#   MIKCAR_ARGS=--sql DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench \
#     bench/instructions.sh / bench/lua/sql.lua
#   Env: MIKCAR_ARGS (default --kv), KV_URL (default memory://), CONNS (default 10),
#        CG_KEEP=FILE keeps the callgrind profile for callgrind_annotate.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MIKCAR=${MIKCAR:-$ROOT/build/release/src/mikcar}
URL_PATH=${1:-/health}
SCRIPT=()
[ $# -ge 2 ] && SCRIPT=(-s "$2" "http://127.0.0.1:${BENCH_PORT:-18590}/" -- "${@:3}")
read -ra ARGS <<<"${MIKCAR_ARGS:---kv}"
CONNS=${CONNS:-10}
PORT=${BENCH_PORT:-18590}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 2; }
[ -x "$MIKCAR" ] || { echo "no binary at $MIKCAR (build the release preset first)" >&2; exit 2; }
TMP=$(mktemp -d /tmp/mikcar-instr.XXXXXX)
trap 'kill -9 "${VP:-0}" 2>/dev/null || true; rm -rf "$TMP"' EXIT
KV_URL=${KV_URL:-memory://} valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$TMP/cg" \
  "$MIKCAR" "${ARGS[@]}" --no-auth --threads 1 --port "$PORT" --data-dir "$TMP" --log-level warn 2>"$TMP/valgrind.log" &
VP=$!
disown "$VP"  # no "Killed" line when the trap ends it
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/health" && break; sleep 0.2; done
if [[ " ${ARGS[*]} " == *" --kv "* ]]; then
  curl -sf -o /dev/null -X POST --data-binary "$(head -c 100 /dev/zero | tr '\0' v)" \
    "http://127.0.0.1:$PORT/kv/set/bench"
fi
target=("http://127.0.0.1:$PORT$URL_PATH")
[ ${#SCRIPT[@]} -gt 0 ] && target=("${SCRIPT[@]}")
wrk -t1 -c"$CONNS" -d2s "${target[@]}" >/dev/null
callgrind_control -i on "$VP" >/dev/null 2>&1
out=$(wrk -t1 -c"$CONNS" -d5s --latency "${target[@]}")
callgrind_control -i off "$VP" >/dev/null 2>&1
callgrind_control -d "$VP" >/dev/null 2>&1
sleep 0.5
requests=$(awk '/requests in/ { print $1 }' <<<"$out")
instructions=$(callgrind_annotate "$TMP"/cg.* 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
[ "${CG_KEEP:-}" ] && cp "$TMP"/cg.* "$CG_KEEP"
errors=$(awk '/Non-2xx/ { print $NF }' <<<"$out")
[ "$errors" ] && echo "warning: $errors answers were not 2xx" >&2
echo "${SCRIPT[1]:-$URL_PATH}: $requests requests, $((instructions / requests)) instructions per request (user space)"
