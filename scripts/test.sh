#!/usr/bin/env bash
# The test command: system packages, then every test, example build and
# doctest. PROPTEST_CASES raises the property-test case count for long runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test
cargo test --all-features "$@"
