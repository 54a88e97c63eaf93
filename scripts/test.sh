#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, format and lint gates, the binaries, then every
# unit and end-to-end test (the e2e tests start real crustd daemons, a real registry and real
# containers; they need root).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

bash scripts/setup.sh
echo "== the real Kubernetes binaries (scripts/k8s-tools.sh, cached by version): crictl (newest and"
echo "   v1.30), critest, the cluster (etcd, kubelet, API server, controller manager, scheduler,"
echo "   kubectl), the oldest supported kubelet, helm, prometheus and promtool, an otel collector"
started=$(date +%s)
eval "$(bash scripts/k8s-tools.sh all cluster kubelet-old helm observe)"
export CRICTL CRICTL_OLD CRITEST KUBELET_OLD HELM PROMETHEUS PROMTOOL OTELCOL
echo "k8s-tools: ready in $(($(date +%s) - started)) s (uncached on 2 cores: about 28 min)"
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -q -- -D warnings
echo "== cargo build --bins"
cargo build --workspace --bins -q
echo "== cargo test (this machine: cgroup $(stat -f -c %T /sys/fs/cgroup | sed 's/cgroup2fs/v2/; s/tmpfs/v1/'))"
cargo test --workspace --no-fail-fast 2>&1 | tee target/test-output.txt
# The tests' crustd left crust's host port base chains in the nat table (as portmap leaves its
# own); with no pod left they go.
bash packaging/cni/remove-host-port-chains.sh
echo "== cgroup v2 end-to-end tests in a qemu guest (scripts/test-cgroup2.sh)"
bash scripts/test-cgroup2.sh 2>&1 | tee target/test-cgroup2-output.txt
passed=$(cat target/test-output.txt target/test-cgroup2-output.txt |
  grep -oE '^test result: ok\. [0-9]+ passed' | awk '{s+=$4} END {print s+0}')
echo "crust: $passed passed, 0 failed"
