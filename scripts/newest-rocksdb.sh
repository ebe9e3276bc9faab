#!/usr/bin/env bash
# Opt-in: the newest end of sessionmesh's rust-rocksdb range, as an
# application on the newest release builds it. Copies the repository to a
# temporary directory, moves rocksdb to its newest release in the range,
# drops .cargo/config.toml (so RocksDB is compiled from C++ source, as in an
# application that does not link Debian's library) and runs the tests there.
# Takes a while: about 15 minutes on two cores for the first build. Extra
# arguments go to `cargo test` (e.g. `--lib`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test
command -v c++ >/dev/null || {
  echo "a C++ compiler is needed to build RocksDB: apt-get install -y g++" >&2
  exit 1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git ls-files -z | xargs -0 cp --parents -t "$work"
cd "$work"
rm -f .cargo/config.toml
cargo update -p rocksdb
echo "testing with $(grep -A1 '^name = "rocksdb"' Cargo.lock | tail -1)" >&2
# A target directory of its own: the main one stays on the linked build.
export CARGO_TARGET_DIR="${NEWEST_TARGET_DIR:-$HOME/.cache/sessionmesh/target-newest}"
start=$(date +%s)
cargo test --all-features "$@"
echo "newest-rocksdb: done in $(( $(date +%s) - start ))s" >&2
