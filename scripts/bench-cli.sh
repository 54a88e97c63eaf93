#!/usr/bin/env bash
# crust as a person at a terminal meets it, against Debian's podman and buildah, in one run,
# alternating, medians (not a test):
#   run       `crustctl run --rm IMAGE echo hi` vs `podman run --rm --network none IMAGE echo hi`
#             (crustd with no CNI config: the pod has loopback only, as podman's none)
#   run -p    both on an isolated CNI bridge (bridge, host-local; no gateway, no masquerading,
#             ip_forward untouched) with `-p`: podman's chain adds the portmap plugin, which
#             podman needs to publish ports; crust publishes them itself (iptables-restore)
#   build     `crustctl build` vs `buildah bud --layers` of one 6-step Dockerfile, cold
#             (--no-cache) and cached (the same build again)
# podman runs with runc, private --root/--runroot, cgroupfs, file events and
# `default_ulimits = []` (root here lacks CAP_SYS_RESOURCE); buildah with private storage and
# RUN without a network (as crust's RUN). Writes target/bench/cli.json.
#
#   scripts/bench-cli.sh [RUNS] [BUILDS]     (default 15 runs and 5 builds per tool and case)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
RUNS=${1:-15}
BUILDS=${2:-5}
bash scripts/setup.sh >/dev/null
if ! command -v podman >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends podman >/dev/null
  # podman's package drops a default network that masquerades and turns ip_forward on.
  bash scripts/setup.sh >/dev/null
fi
echo "== building crust (release profile)"
cargo build --release -q --bin crustd --bin crustctl
W=$(mktemp -d /tmp/crust-bench-cli.XXXXXX)
OUT=target/bench
mkdir -p "$OUT"
pids=()
bridges=()
. scripts/scratch.sh
cleanup() {
  set +e
  for b in "${bridges[@]}"; do ip link del "$b" 2>/dev/null; done
  podman_ --log-level error rm -af >/dev/null 2>&1
  scratch_cleanup "$W" crust-bench-cli
}
trap cleanup EXIT

start_registry "$W/registry"
IMAGE=127.0.0.1:$PORT/crust-test/busybox:latest

# crustd twice: without a network, and on an isolated bridge.
start_crustd() { # name [bridge prefix]
  local d=$W/$1
  mkdir -p "$d/cni"
  if [ -n "${2:-}" ]; then
    packaging/cni/install-network.sh --isolated --conf-dir "$d/cni" --ipam-dir "$d/ipam" \
      --bridge "$2" --subnet-prefix "$3" >/dev/null
    bridges+=("$2")
  fi
  cat >"$d.toml" <<TOML
root = "$d/root"
state = "$d/state"
listen = "$d/crust.sock"
cgroup_root = "/crust-bench-cli-$1"
log_level = "warn"
[image]
insecure_registries = ["127.0.0.1:$PORT"]
import_dir = ""
[cni]
conf_dir = "$d/cni"
TOML
  target/release/crustd --config "$d.toml" >>"$W/crustd-$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 400); do [ -S "$d/crust.sock" ] && return 0; sleep 0.05; done
  echo "crustd $1 did not start" >&2
  return 1
}
start_crustd plain
start_crustd bridged crustcli0 10.252.7
crustctl_() { # name args...
  local name=$1
  shift
  target/release/crustctl --socket "$W/$name/crust.sock" "$@"
}

# podman, private, on the same chain (its own bridge and subnet).
mkdir -p "$W/podman-cni"
packaging/cni/install-network.sh --isolated --conf-dir "$W/podman-cni" --ipam-dir "$W/podman-ipam" \
  --bridge crustcli1 --subnet-prefix 10.252.8 >/dev/null
bridges+=(crustcli1)
python3 - "$W/podman-cni/10-crust-bridge.conflist" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["name"] = "crustbench"
c["plugins"].append({"type": "portmap", "capabilities": {"portMappings": True}})
json.dump(c, open(p, "w"), indent=2)
PY
cat >"$W/containers.conf" <<TOML
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$W/podman-events.log"
runtime = "runc"
[network]
network_backend = "cni"
network_config_dir = "$W/podman-cni"
cni_plugin_dirs = ["/usr/lib/cni"]
TOML
podman_() {
  CONTAINERS_CONF=$W/containers.conf podman --root "$W/podman/root" --runroot "$W/podman/run" \
    --storage-driver overlay --cgroup-manager cgroupfs "$@"
}
buildah_() {
  buildah --root "$W/buildah/root" --runroot "$W/buildah/run" --storage-driver overlay "$@"
}

echo "== pulling $IMAGE into each (not timed)"
crustctl_ plain pull "$IMAGE" >/dev/null
crustctl_ bridged pull "$IMAGE" >/dev/null
podman_ pull -q --tls-verify=false "$IMAGE" >/dev/null
buildah_ pull -q --tls-verify=false "$IMAGE" >/dev/null

: >"$W/results.jsonl"
timed() { # tool case command... : appends {"tool","case","ms"}
  local tool=$1 case=$2 t0 t1 out
  shift 2
  t0=$(date +%s%N)
  out=$("$@" 2>&1) || { echo "$tool $case failed: $out" >&2; exit 1; }
  t1=$(date +%s%N)
  printf '{"tool":"%s","case":"%s","ms":%s}\n' "$tool" "$case" "$(((t1 - t0) / 100000))e-1" >>"$W/results.jsonl"
  LAST_OUT=$out
}
expect_hi() { [ "$LAST_OUT" = hi ] || { echo "expected hi, got: $LAST_OUT" >&2; exit 1; }; }

echo "== run --rm echo hi, $RUNS each, alternating"
for i in $(seq "$RUNS"); do
  timed crust run crustctl_ plain run --rm "$IMAGE" echo hi; expect_hi
  timed podman run podman_ run --rm --network none "$IMAGE" echo hi; expect_hi
  timed crust run-p crustctl_ bridged run --rm -p "127.0.0.1:$((20000 + i)):80" "$IMAGE" echo hi; expect_hi
  timed podman run-p podman_ run --rm --network crustbench -p "127.0.0.1:$((21000 + i)):80" "$IMAGE" echo hi; expect_hi
done

echo "== build, $BUILDS each, cold and cached, alternating"
ctx=$W/context
mkdir -p "$ctx/data"
for i in $(seq 20); do echo "file $i" >"$ctx/data/f$i"; done
cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $IMAGE
RUN echo built >/built
ENV GREETING=hello
WORKDIR /app
COPY data/ /app/data/
RUN i=0; while [ \$i -lt 200 ]; do echo \$i >/app/f\$i; i=\$((i+1)); done
DOCKERFILE
for i in $(seq "$BUILDS"); do
  timed crust build-cold crustctl_ plain build --no-cache -t bench/build:1 "$ctx"
  timed buildah build-cold buildah_ bud -q --layers --no-cache --network none --tls-verify=false -t bench/build:1 "$ctx"
  timed crust build-cached crustctl_ plain build -t bench/build:1 "$ctx"
  timed buildah build-cached buildah_ bud -q --layers --network none --tls-verify=false -t bench/build:1 "$ctx"
done
# Both built what the Dockerfile says.
built=$(crustctl_ plain run --rm bench/build:1 sh -c 'cat /built; ls /app | wc -l' | tr -s " \n" " ")
[ "$built" = "built 201 " ] ||
  { echo "crust's image is not what the Dockerfile says: $built" >&2; exit 1; }

python3 - "$W/results.jsonl" "$OUT/cli.json" "$(podman --version | awk '{print $3}')" \
  "$(buildah --version | awk '{print $3}')" "$(runc --version | awk 'NR==1{print $3}')" <<'PY'
import json, statistics, sys, datetime, platform, os
rows = [json.loads(l) for l in open(sys.argv[1])]
podman, buildah, runc = sys.argv[3:6]
def med(tool, case):
    return statistics.median(r["ms"] for r in rows if r["tool"] == tool and r["case"] == case)
table = []
print(f"\npodman {podman}, buildah {buildah}, runc {runc}; medians in ms")
print(f"{'':40}{'crust':>9}{'peer':>9}{'ratio':>8}")
for case, peer, what in [("run", "podman", "run --rm echo hi, no network"),
                         ("run-p", "podman", "run --rm -p echo hi, CNI bridge"),
                         ("build-cold", "buildah", "build, 6 steps, cold"),
                         ("build-cached", "buildah", "build, 6 steps, cached")]:
    a, b = med("crust", case), med(peer, case)
    table.append({"case": case, "peer": peer, "crust_ms": a, "peer_ms": b, "ratio": round(a / b, 2)})
    print(f"{what:40}{a:>9.1f}{b:>9.1f}{a / b:>8.2f}")
json.dump({"date": datetime.date.today().isoformat(), "kernel": platform.release(),
           "cpus": os.cpu_count(), "podman": podman, "buildah": buildah, "runc": runc,
           "medians": table, "runs": rows}, open(sys.argv[2], "w"), indent=1)
PY
