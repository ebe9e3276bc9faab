#!/usr/bin/env bash
# The "run it" command: system packages, then the demo peer on
# http://127.0.0.1:8081 with its data in ./data/a.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
exec cargo run --release --example peer -- --http 127.0.0.1:8081 --data ./data/a "$@"
