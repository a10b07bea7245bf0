#!/usr/bin/env bash
# README command 2: install everything the tests need, build (dev preset, ccache), run the unit
# tests, start the backend servers on loopback, run the backend contract tests and the
# black-box e2e suite, stop the servers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
cmake --preset dev >/dev/null
cmake --build build/dev
ctest --preset dev -j2 -LE net  # the net backend tests need the servers: below

# The installed package works for a consumer project (find_package(mikcar)).
prefix=$(mktemp -d /tmp/mikcar-prefix.XXXXXX)
cmake --install build/dev --prefix "$prefix" >/dev/null
cmake -S examples/consumer -B "$prefix/consumer-build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer-build" >/dev/null
"$prefix/consumer-build/consumer"
# ... and through pkg-config (libmikcar is static: --static lists what it links).
pc_dir=$(dirname "$(find "$prefix" -name mikcar.pc)")
g++ -std=c++20 examples/consumer/main.cc -o "$prefix/consumer-pc" \
  $(PKG_CONFIG_PATH="$pc_dir" pkg-config --static --cflags --libs mikcar)
"$prefix/consumer-pc"
rm -rf "$prefix"

backends=$(mktemp -d /tmp/mikcar-backends.XXXXXX)
cleanup() { scripts/test-backends.sh stop "$backends" || true; rm -rf "$backends"; }
trap cleanup EXIT
eval "$(scripts/test-backends.sh start "$backends")"
# The queue backend contract against the real Redis and RabbitMQ (label "net", left out of the
# ctest run above, which comes before the servers exist).
build/dev/tests/mikcar_queue_net_tests --gtest_brief=1

# The OpenAPI 3.1 schema validator that tests/e2e/test_openapi.py runs (npm registry, lock file).
npm ci --prefix tests/e2e/openapi --no-audit --no-fund --loglevel=error >/dev/null

export MIKCAR_BIN="$PWD/build/dev/src/mikcar"
/usr/bin/python3 -m pytest -q tests/e2e "$@"
