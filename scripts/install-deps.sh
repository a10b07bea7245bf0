#!/usr/bin/env bash
# Installs what mikcar needs from Debian 12's packages. Usage: install-deps.sh build|test|bench
# Skips apt entirely when every package is already installed (fast re-runs).
set -euo pipefail
what=${1:-build}
build=(g++ cmake ninja-build ccache pkg-config git
       libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
       libspdlog-dev libcli11-dev libtomlplusplus-dev libexpected-dev libssl-dev zlib1g-dev liblmdb-dev libhiredis-dev
       libsqlite3-dev libpq-dev libjavascriptcoregtk-4.1-dev librabbitmq-dev)
test=(libgtest-dev libgmock-dev python3-pytest python3-requests python3-prometheus-client redis-server redis-tools openssl
      postgresql postgresql-client rabbitmq-server)
bench=(wrk nginx-light redis-server redis-tools webdis postgresql postgresql-client rabbitmq-server)
pkgs=("${build[@]}")
case "$what" in
  build) ;;
  test) pkgs+=("${test[@]}") ;;
  bench) pkgs+=("${bench[@]}") ;;
  *) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts redis-server as a system service on install; the tests start their own.
if printf '%s\n' "${missing[@]}" | grep -qx redis-server; then
  $SUDO systemctl stop redis-server 2>/dev/null || $SUDO service redis-server stop 2>/dev/null || true
fi
if printf '%s\n' "${missing[@]}" | grep -qx rabbitmq-server; then
  $SUDO systemctl stop rabbitmq-server 2>/dev/null || $SUDO service rabbitmq-server stop 2>/dev/null || true
fi
