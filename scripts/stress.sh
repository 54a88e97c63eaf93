#!/usr/bin/env bash
# The long versions of the reliability tests (tests/tests/reliability.rs), and the scale
# measurements: 1,000 containers listed, and crustd's start-up with them on disk.
#
#   scripts/stress.sh            # everything (about 15 minutes on 2 cores)
#   scripts/stress.sh tests      # only the long reliability tests
#   scripts/stress.sh scale      # only the 1,000-container measurements
#
# Knobs (defaults in brackets): CRUST_STRESS_KILLS [200] SIGKILLs of crustd at random points,
# CRUST_STRESS_CONCURRENT [50] clients starting pods at once, CRUST_STRESS_CHURN [500] pod
# create/destroy cycles, CRUST_STRESS_FUZZ [2000] hostile requests (fuzz.rs), CRUST_STRESS_SCALE
# [1000] containers for the scale measurements.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
what=${1:-all}
bash scripts/setup.sh >/dev/null

if [ "$what" = all ] || [ "$what" = tests ]; then
  export CRUST_STRESS_KILLS=${CRUST_STRESS_KILLS:-200}
  export CRUST_STRESS_CONCURRENT=${CRUST_STRESS_CONCURRENT:-50}
  export CRUST_STRESS_CHURN=${CRUST_STRESS_CHURN:-500}
  export CRUST_STRESS_FUZZ=${CRUST_STRESS_FUZZ:-2000}
  echo "== reliability tests: kills=$CRUST_STRESS_KILLS concurrent=$CRUST_STRESS_CONCURRENT churn=$CRUST_STRESS_CHURN fuzz=$CRUST_STRESS_FUZZ"
  cargo build --workspace --bins -q
  cargo test -q -p crust-e2e --test reliability --test fuzz -- --nocapture --test-threads 1 2>&1 |
    grep -E "^test |test result|concurrent pods and|SIGTERM under load|calls per RPC|panicked|left behind|minimal failing" || true
fi

if [ "$what" = all ] || [ "$what" = scale ]; then
  N=${CRUST_STRESS_SCALE:-1000}
  cargo build --release --bins -q
  W=$(mktemp -d /tmp/crust-stress.XXXXXX)
  pids=()
  . scripts/scratch.sh
  trap 'scratch_cleanup "$W" crust-stress' EXIT
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  tests/fixtures/registry.sh "$PORT" "$W/registry" >/dev/null 2>&1 & pids+=($!)
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
  tests/fixtures/build-images.sh "127.0.0.1:$PORT" >/dev/null
  mkdir -p "$W/cni"
  cat >"$W/crustd.toml" <<TOML
root = "$W/root"
state = "$W/state"
listen = "$W/crust.sock"
cgroup_root = "/crust-stress-pods"
log_level = "warn"
[image]
insecure_registries = ["127.0.0.1:$PORT"]
import_dir = ""
[cni]
conf_dir = "$W/cni"
TOML
  # Not called in $(…): the daemon's pid must reach this shell's `pids` for the cleanup.
  start() {
    local t0 t1
    t0=$(date +%s%N)
    target/release/crustd --config "$W/crustd.toml" >>"$W/crustd.log" 2>&1 & D=$!; pids+=($D)
    until target/release/crustctl --socket "$W/crust.sock" version >/dev/null 2>&1; do sleep 0.01; done
    t1=$(date +%s%N)
    STARTUP_MS=$(((t1 - t0) / 1000000))
  }
  B=(target/release/crust-bench --socket "$W/crust.sock" --image "127.0.0.1:$PORT/crust-test/busybox:latest" --log-root "$W/logs" --cgroup-parent /crust-stress)
  start
  echo "== $N containers (each in its own pod): list latency"
  "${B[@]}" list --containers "$N" -n 30 --keep
  echo "crustd RSS with $N pods: $(awk '/VmRSS/{print $2}' /proc/$D/status) KiB"
  kill "$D"; wait "$D" 2>/dev/null || true
  start
  echo "== crustd start-up with $N pods and $N containers on disk: $STARTUP_MS ms to the first answer"
  "${B[@]}" list --containers 0 -n 10
  echo "== removing them"
  target/release/crustctl --socket "$W/crust.sock" rmp -a | wc -l
fi
