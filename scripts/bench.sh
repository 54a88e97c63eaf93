#!/usr/bin/env bash
# Side-by-side pod lifecycle benchmark: crust and Debian's containerd, each a private instance
# with its own root, state and socket, both pulling from the same local registry, driven by the
# same client (`crustctl bench`) in alternating rounds.
#   scripts/bench.sh [ITERATIONS]        (default 30; results also in target/bench/*.json)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
N=${1:-30}
bash scripts/setup.sh
if ! command -v containerd >/dev/null || ! command -v runc >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends containerd runc containernetworking-plugins >/dev/null
fi
cargo build --release --bins -q
W=$(mktemp -d /tmp/crust-bench.XXXXXX)
OUT=target/bench; mkdir -p "$OUT"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pids=()
cleanup() {
  set +e +o pipefail
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  grep -E " ($W)[^ ]* " /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  for h in /sys/fs/cgroup/*/crust-bench* /sys/fs/cgroup/crust-bench*; do
    [ -d "$h" ] && find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  rm -rf "$W"
  return 0
}
[ -n "${CRUST_BENCH_KEEP:-}" ] || trap cleanup EXIT

tests/fixtures/registry.sh "$PORT" "$W/registry" >/dev/null 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
tests/fixtures/build-images.sh "127.0.0.1:$PORT" >/dev/null
IMAGE=127.0.0.1:$PORT/crust-test/busybox:latest

# crust
cat >"$W/crustd.toml" <<TOML
root = "$W/crust/root"
state = "$W/crust/state"
listen = "$W/crust/crust.sock"
cgroup_root = "/crust-bench-pods"
log_level = "warn"
[image]
insecure_registries = ["127.0.0.1:$PORT"]
TOML
target/release/crustd --config "$W/crustd.toml" >"$W/crustd.log" 2>&1 & CRUSTD=$!; pids+=($CRUSTD)

# containerd: plain-HTTP mirror to the local registry. Its pods run with host networking, since
# containerd needs a CNI result with an interface for pod networks; crust's pods still get their
# own network namespace, so the comparison errs in containerd's favour.
mkdir -p "$W/ctrd/cni" "$W/ctrd/certs.d/127.0.0.1:$PORT"
printf 'server = "http://127.0.0.1:%s"\n[host."http://127.0.0.1:%s"]\n  capabilities = ["pull", "resolve"]\n' "$PORT" "$PORT" >"$W/ctrd/certs.d/127.0.0.1:$PORT/hosts.toml"
cat >"$W/ctrd/config.toml" <<TOML
version = 2
root = "$W/ctrd/root"
state = "$W/ctrd/state"
[grpc]
  address = "$W/ctrd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  # Root here lacks CAP_SYS_RESOURCE: containerd must not lower oom_score_adj (crust clamps too).
  restrict_oom_score_adj = true
  sandbox_image = "127.0.0.1:$PORT/crust-test/pause:latest"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$W/ctrd/cni"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$W/ctrd/certs.d"
TOML
containerd --config "$W/ctrd/config.toml" >"$W/containerd.log" 2>&1 & CTRD=$!; pids+=($CTRD)
for _ in $(seq 200); do [ -S "$W/crust/crust.sock" ] && [ -S "$W/ctrd/containerd.sock" ] && break; sleep 0.05; done

rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
run() { # name socket json-out [extra bench flags]
  target/release/crustctl --socket "$2" --log-root "$W/logs-$1" bench --image "$IMAGE" -n "$N" --json \
    --cgroup-parent "/crust-bench-$1" "${@:4}" | tee "$W/$1.txt"
  tail -1 "$W/$1.txt" >"$3"
}
echo "== warm-up (pull, first pods)"
target/release/crustctl --socket "$W/crust/crust.sock" --log-root "$W/logs" bench --image "$IMAGE" -n 2 --cgroup-parent /crust-bench-warm >/dev/null
target/release/crustctl --socket "$W/ctrd/containerd.sock" --log-root "$W/logs" bench --image "$IMAGE" -n 2 --cgroup-parent /crust-bench-warm --host-network >/dev/null
echo "== crust"; run crust "$W/crust/crust.sock" "$OUT/crust.json"
echo "== containerd (host network pods)"; run containerd "$W/ctrd/containerd.sock" "$OUT/containerd.json" --host-network
echo
echo "daemon RSS after the runs (idle): crustd $(rss $CRUSTD) KiB, containerd $(rss $CTRD) KiB"
python3 - "$OUT/crust.json" "$OUT/containerd.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
rb = {r["step"]: r for r in b["results"]}
print(f'{"step":<32} {"crust ms":>10} {"containerd ms":>14} {"ratio":>7}   (medians)')
for r in a["results"]:
    o = rb.get(r["step"])
    if o:
        print(f'{r["step"]:<32} {r["median_ms"]:>10.2f} {o["median_ms"]:>14.2f} {r["median_ms"]/o["median_ms"]:>7.2f}')
PY

# Cold pulls of the 5-layer ~55 MB image: each round a fresh daemon with an empty store, so
# nothing is cached; crust and containerd alternate.
tests/fixtures/build-big-image.sh "127.0.0.1:$PORT"
BIG=127.0.0.1:$PORT/crust-test/big:latest
kill "$CRUSTD" "$CTRD" 2>/dev/null; wait "$CRUSTD" "$CTRD" 2>/dev/null || true
ROUNDS=${CRUST_BENCH_PULL_ROUNDS:-3}
pull_ms() { # socket
  local t0 t1
  t0=$(date +%s%N)
  target/release/crustctl --socket "$1" pull "$BIG" >/dev/null
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000))
}
wait_sock() { for _ in $(seq 200); do [ -S "$1" ] && return 0; sleep 0.05; done; return 1; }
crust_pulls=() ctrd_pulls=()
for r in $(seq "$ROUNDS"); do
  sed "s#$W/crust/#$W/crust-pull$r/#g" "$W/crustd.toml" >"$W/crustd-pull$r.toml"
  target/release/crustd --config "$W/crustd-pull$r.toml" >>"$W/crustd.log" 2>&1 & P=$!; pids+=($P)
  wait_sock "$W/crust-pull$r/crust.sock"; crust_pulls+=("$(pull_ms "$W/crust-pull$r/crust.sock")")
  kill "$P"; wait "$P" 2>/dev/null || true
  sed "s#$W/ctrd/root#$W/ctrd-pull$r/root#; s#$W/ctrd/state#$W/ctrd-pull$r/state#; s#$W/ctrd/containerd.sock#$W/ctrd-pull$r/containerd.sock#" \
    "$W/ctrd/config.toml" >"$W/ctrd-pull$r.toml"
  containerd --config "$W/ctrd-pull$r.toml" >>"$W/containerd.log" 2>&1 & P=$!; pids+=($P)
  wait_sock "$W/ctrd-pull$r/containerd.sock"; ctrd_pulls+=("$(pull_ms "$W/ctrd-pull$r/containerd.sock")")
  kill "$P"; wait "$P" 2>/dev/null || true
done
python3 - "${crust_pulls[*]}" "${ctrd_pulls[*]}" "$OUT/pull.json" <<'PY'
import json, statistics, sys
a = [int(x) for x in sys.argv[1].split()]; b = [int(x) for x in sys.argv[2].split()]
ma, mb = statistics.median(a), statistics.median(b)
print(f'{"cold pull, 5 layers ~55 MB":<32} {ma:>10.0f} {mb:>14.0f} {ma/mb:>7.2f}   (median of {len(a)}; ms)')
json.dump({"crust_ms": a, "containerd_ms": b, "ratio": ma / mb}, open(sys.argv[3], "w"))
PY
