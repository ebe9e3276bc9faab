#!/usr/bin/env bash
# Installs the Debian packages sessionmesh builds against, or says exactly
# what to run when it cannot. Safe to run again: it does nothing when all
# are present.
#   librocksdb-dev  RocksDB 7.8.3, linked instead of building it from source
#   libclang-dev    bindgen (librocksdb-sys) parses the RocksDB C header
# With --test, also what the tests need:
#   chromium, chromium-driver
#                   headless browser and its WebDriver server, for the test
#                   of the demo's status page (tests/status_page.rs)
#   haproxy         the load balancer of the nemesis (tests/nemesis)
#   faketime        libfaketime, the nemesis's clock skew
set -euo pipefail

packages=(librocksdb-dev libclang-dev)
if [ "${1:-}" = "--test" ]; then
  packages+=(chromium chromium-driver haproxy faketime)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  echo "installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "missing system packages: ${missing[*]}" >&2
  echo "run: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
