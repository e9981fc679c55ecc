#!/usr/bin/env bash
# The test command: sets up the libtorch environment if needed, then runs every test.
# Integration tests on ../shared/data skip with a message where that folder is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --no-build
cargo test --workspace --locked "$@"
