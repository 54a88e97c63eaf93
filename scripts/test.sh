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
echo "== cargo test (this machine: cgroup $(stat -f -c %T /sys/fs/cgroup | sed 's/cgroup2fs/v2/; s/tmpfs/v1/'))"
cargo test --workspace 2>&1 | tee target/test-output.txt
echo "== cgroup v2 end-to-end tests in a qemu guest (scripts/test-cgroup2.sh)"
bash scripts/test-cgroup2.sh 2>&1 | tee target/test-cgroup2-output.txt
passed=$(cat target/test-output.txt target/test-cgroup2-output.txt |
  grep -oE '^test result: ok\. [0-9]+ passed' | awk '{s+=$4} END {print s+0}')
echo "crust: $passed passed, 0 failed"
