#!/usr/bin/env bash
# crust and containerd side by side, on this machine, in one run. Each runtime is a private
# instance (its own root, state, socket and cgroup parent), both pull from the same local
# registry, and the same client (target/release/crust-bench) drives both, alternating rounds
# to cancel machine noise. Prints a table with the ratio crust/containerd and writes it as
# JSON to target/bench/results.json.
#
#   scripts/bench.sh [ITERATIONS]     (pod lifecycle iterations per runtime, default 30)
#
# Environment: CRUST_BENCH_DENSITY="20 100" (concurrent pod counts), CRUST_BENCH_LIST=100
# (containers for the List* latencies), CRUST_BENCH_PULL_ROUNDS=5, CRUST_BENCH_KEEP=1 (keep the
# work dir and daemons for a look afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
N=${1:-30}
ROUNDS=3
DENSITY=${CRUST_BENCH_DENSITY:-20 100}
LIST=${CRUST_BENCH_LIST:-100}
PULL_ROUNDS=${CRUST_BENCH_PULL_ROUNDS:-5}
bash scripts/setup.sh
if ! command -v containerd >/dev/null || ! command -v runc >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends containerd runc >/dev/null
fi
echo "== building crust (release profile)"
cargo build --release --bins -q
W=$(mktemp -d /tmp/crust-bench.XXXXXX)
OUT=target/bench; mkdir -p "$OUT"
pids=()
. scripts/scratch.sh
bridges=()
drop_bridges() { local b; for b in "${bridges[@]}"; do ip link del "$b" 2>/dev/null || true; done; }
[ -n "${CRUST_BENCH_KEEP:-}" ] || trap 'drop_bridges; scratch_cleanup "$W" crust-bench' EXIT

start_registry "$W/registry"
tests/fixtures/build-big-image.sh "127.0.0.1:$PORT" >/dev/null
IMAGE=127.0.0.1:$PORT/crust-test/busybox:latest
BIG=127.0.0.1:$PORT/crust-test/big:latest

# Both runtimes put their pods on the same CNI chain (bridge, host-local, portmap, loopback:
# the shipped config, isolated: no gateway, no masquerading, ip_forward untouched), each on a
# bridge and subnet of its own, so pod start includes the same network set-up on both.
network() { # dir bridge subnet-prefix
  packaging/cni/install-network.sh --isolated --conf-dir "$1/cni" --ipam-dir "$1/ipam" \
    --bridge "$2" --subnet-prefix "$3" >/dev/null
  bridges+=("$2")
}
crust_config() { # dir
  mkdir -p "$1/cni"
  cat <<TOML
root = "$1/root"
state = "$1/state"
listen = "$1/crust.sock"
cgroup_root = "/crust-bench-pods"
log_level = "warn"
[image]
insecure_registries = ["127.0.0.1:$PORT"]
import_dir = ""
[cni]
conf_dir = "$1/cni"
TOML
}
# containerd: a plain-HTTP mirror to the local registry.
ctrd_config() { # dir
  mkdir -p "$1/cni" "$1/certs.d/127.0.0.1:$PORT"
  printf 'server = "http://127.0.0.1:%s"\n[host."http://127.0.0.1:%s"]\n  capabilities = ["pull", "resolve"]\n' "$PORT" "$PORT" >"$1/certs.d/127.0.0.1:$PORT/hosts.toml"
  cat <<TOML
version = 2
root = "$1/root"
state = "$1/state"
[grpc]
  address = "$1/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  # Root here lacks CAP_SYS_RESOURCE: containerd must not lower oom_score_adj (crust clamps too).
  restrict_oom_score_adj = true
  sandbox_image = "127.0.0.1:$PORT/crust-test/pause:latest"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$1/cni"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$1/certs.d"
TOML
}
wait_sock() { for _ in $(seq 400); do [ -S "$1" ] && return 0; sleep 0.05; done; echo "no socket $1" >&2; return 1; }
start_crust() { # dir -> pid in $STARTED
  crust_config "$1" >"$1.toml"
  target/release/crustd --config "$1.toml" >>"$W/crustd.log" 2>&1 & STARTED=$!; pids+=("$STARTED")
  wait_sock "$1/crust.sock"
}
start_ctrd() { # dir
  ctrd_config "$1" >"$1.toml"
  containerd --config "$1.toml" >>"$W/containerd.log" 2>&1 & STARTED=$!; pids+=("$STARTED")
  wait_sock "$1/containerd.sock"
}
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }

mkdir -p "$W/crust" "$W/ctrd"
network "$W/crust" crustbn0 10.252.9
network "$W/ctrd" crustbn1 10.252.10
start_crust "$W/crust"; CRUSTD=$STARTED
start_ctrd "$W/ctrd"; CTRD=$STARTED
bench() { # runtime workload args... (JSON line appended to $W/<runtime>.jsonl)
  local rt=$1; shift
  local sock=$W/crust/crust.sock
  if [ "$rt" = containerd ]; then sock=$W/ctrd/containerd.sock; fi
  target/release/crust-bench --socket "$sock" --image "$IMAGE" --log-root "$W/logs-$rt" \
    --cgroup-parent "/crust-bench-$rt" --json "$@" >"$W/last.txt"
  sed '$d' "$W/last.txt"
  tail -1 "$W/last.txt" >>"$W/$rt.jsonl"
}

echo "== warm-up (pull, first pods)"
for rt in crust containerd; do bench "$rt" lifecycle -n 3 >/dev/null; done
: >"$W/crust.jsonl"; : >"$W/containerd.jsonl"
sleep 1
echo "idle daemon RSS: crustd $(rss $CRUSTD) KiB, containerd $(rss $CTRD) KiB"
printf '{"workload":"idle","daemon_rss_kib":%s}\n' "$(rss $CRUSTD)" >>"$W/crust.jsonl"
printf '{"workload":"idle","daemon_rss_kib":%s}\n' "$(rss $CTRD)" >>"$W/containerd.jsonl"

per=$(((N + ROUNDS - 1) / ROUNDS))
for r in $(seq "$ROUNDS"); do
  for rt in crust containerd; do echo "== lifecycle round $r: $rt"; bench "$rt" lifecycle -n "$per"; done
done
for pods in $DENSITY; do
  echo "== density $pods: crust"
  bench crust density --pods "$pods" --daemon-pid "$CRUSTD" --helper crust-monitor --helper-match "$W/crust/state"
  echo "== density $pods: containerd"
  bench containerd density --pods "$pods" --daemon-pid "$CTRD" --helper containerd-shim --helper-match "$W/ctrd/"
done
for rt in crust containerd; do echo "== list $LIST: $rt"; bench "$rt" list --containers "$LIST" -n 30; done

# Cold pulls: each round a fresh daemon with an empty store on a new ext4 filesystem of its own
# (a loop file, mkfs defaults: journal on), crust and containerd alternating, with the page
# cache written back before each. On the host's filesystem a pull's speed depended on what
# had been deleted there in the last minutes (ext4 without a journal skips inodes freed
# recently when it allocates, and the runs above free tens of thousands: the same pull took
# 70 ms in one run and 190 in the next, for both runtimes), and on one shared filesystem on
# what the rounds before had left to write back.
kill "$CRUSTD" "$CTRD" 2>/dev/null; wait "$CRUSTD" "$CTRD" 2>/dev/null || true
fresh_fs() { # dir: a new ext4 filesystem mounted there
  mkdir -p "$1"
  truncate -s 2G "$1.img"
  mkfs.ext4 -q -F "$1.img"
  mount -o loop "$1.img" "$1"
}
drop_fs() { # dir
  umount "$1" && rm -f "$1.img"
}
pull_ms() { # socket image
  local t0 t1
  sync
  t0=$(date +%s%N)
  target/release/crustctl --socket "$1" pull "$2" >/dev/null
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000))
}
for img in busybox big; do
  ref=$IMAGE; [ "$img" = big ] && ref=$BIG
  for r in $(seq "$PULL_ROUNDS"); do
    d=$W/pull-crust; fresh_fs "$d"; start_crust "$d"; P=$STARTED
    printf '{"workload":"pull","image":"%s","ms":%s}\n' "$img" "$(pull_ms "$d/crust.sock" "$ref")" >>"$W/crust.jsonl"
    kill "$P"; wait "$P" 2>/dev/null || true; drop_fs "$d"
    d=$W/pull-ctrd; fresh_fs "$d"; start_ctrd "$d"; P=$STARTED
    printf '{"workload":"pull","image":"%s","ms":%s}\n' "$img" "$(pull_ms "$d/containerd.sock" "$ref")" >>"$W/containerd.jsonl"
    kill "$P"; wait "$P" 2>/dev/null || true; drop_fs "$d"
  done
done

python3 scripts/bench-report.py "$W/crust.jsonl" "$W/containerd.jsonl" \
  --crustd target/release/crustd --crustctl target/release/crustctl \
  --containerd-version "$(containerd --version | awk '{print $3}')" \
  --runc-version "$(runc --version | awk 'NR==1{print $3}')" \
  --json "$OUT/results.json"
