#!/usr/bin/env bash
# The "run it" command: system packages, then a three-node cluster with the
# demo app on http://127.0.0.1:8081, 8082 and 8083, data under ./data.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
exec cargo run --release --example cluster -- "$@"
