#!/usr/bin/env bash
# README command 1: install build dependencies, build (release), start `mikcar --all` on the
# embedded defaults under ./mikcar-data. Extra arguments go to mikcar (e.g. --port 0).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build
cmake --preset release -DMIKCAR_BUILD_TESTS=OFF -DMIKCAR_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build/release --target mikcar_server
exec build/release/src/mikcar --all "$@"
