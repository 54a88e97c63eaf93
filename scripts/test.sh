#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, format and lint gates, the binaries, then every
# unit and end-to-end test (the e2e tests start real crustd daemons, a real registry and real
# containers; they need root).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

bash scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -q -- -D warnings
echo "== cargo build --bins"
cargo build --workspace --bins -q
echo "== cargo test"
cargo test --workspace 2>&1 | tee target/test-output.txt
passed=$(grep -oE '^test result: ok\. [0-9]+ passed' target/test-output.txt | awk '{s+=$4} END {print s+0}')
echo "crust: $passed passed, 0 failed"
