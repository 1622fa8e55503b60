#!/usr/bin/env bash
# Configurator solver latency in process (issue target: a full state under 2 ms p99 for 300
# options and 1,000 rules), with a baseline timed in the same run: one check of a complete
# configuration against every rule. No services needed.
#
#   bench/configurator.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target}"
cargo run --release -q -p motorpool-bench-configurator
