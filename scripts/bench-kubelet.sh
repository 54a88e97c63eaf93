#!/usr/bin/env bash
# Pod start as a Kubernetes user sees it, with the same kubelet on crust, on containerd (Debian's
# 1.6 with runc), on containerd 2.x (built from its Go module by scripts/k8s-tools.sh, with the
# same runc), and on crust again with kubelet's EventedPLEG gate, alternating: a private
# single-node cluster (scripts/cluster.sh) per round and runtime, the same CNI bridge config, the same local registry. Each round:
# N pods created through the API server in one `kubectl apply`; the time until all are
# Running (wall clock, polled every 100 ms through the API server); kubelet's own
# kubelet_pod_start_sli_duration_seconds (mean over the N pods: creation to Running, image
# pulls excluded); and the time until `kubectl delete` of them all returns with every pod gone.
# The image is pulled by a warm-up pod first, so no pull is timed. Not a test: it prints a
# table and writes target/bench/kubelet.json.
#
#   scripts/bench-kubelet.sh [PODS] [ROUNDS]     (default 20 pods, 3 rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH="$HOME/.cargo/bin:$PATH"
N=${1:-20}
ROUNDS=${2:-3}
bash scripts/setup.sh >/dev/null
if ! command -v containerd >/dev/null || ! command -v runc >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends containerd runc >/dev/null
fi
eval "$(bash scripts/k8s-tools.sh cluster containerd2 2>/dev/null)"
echo "== building crust (release profile)"
cargo build --release -q --bin crustd --bin crustctl
W=$(mktemp -d /tmp/crust-bench-kubelet.XXXXXX)
OUT=target/bench
mkdir -p "$OUT"
pids=()
. scripts/scratch.sh
cluster() { # setup up|down   (setup: crust, containerd, containerd2, or crust-evented: crust
  #                             with kubelet's EventedPLEG gate, which containerd 1.6 cannot serve)
  local runtime=${1%-evented} gates=""
  [ "$1" = crust-evented ] && gates="EventedPLEG: true"
  CRUST_CLUSTER_DIR=$W/cluster CRUST_CLUSTER_RUNTIME=$runtime CRUST_BIN_DIR=$root/target/release \
    CRUST_CLUSTER_FEATURE_GATES=$gates \
    CRUST_CLUSTER_INSECURE_REGISTRIES="\"127.0.0.1:$PORT\"" bash scripts/cluster.sh "$2"
}
cleanup() {
  set +e
  [ -d "$W/cluster" ] && cluster "$(cat "$W/cluster/runtime" 2>/dev/null || echo crust)" down >/dev/null 2>&1
  true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$W"
}
trap cleanup EXIT

start_registry "$W/registry"
IMAGE=127.0.0.1:$PORT/crust-test/busybox:latest

kc() { "$KUBECTL" --kubeconfig "$W/cluster/admin.kubeconfig" "$@"; }
pods_yaml() { # count name-prefix
  local i
  for i in $(seq "$1"); do
    cat <<YAML
---
apiVersion: v1
kind: Pod
metadata: {name: $2-$i}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: $IMAGE, imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}
YAML
  done
}
now_ms() { date +%s%3N; }
running() { kc get pods -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -cx Running || true; }
sli() { # sum and count of kubelet_pod_start_sli_duration_seconds
  kc get --raw /api/v1/nodes/crust-node/proxy/metrics |
    awk '/^kubelet_pod_start_sli_duration_seconds_sum/{s=$2} /^kubelet_pod_start_sli_duration_seconds_count/{c=$2} END{print s+0, c+0}'
}

: >"$W/results.jsonl"
for r in $(seq "$ROUNDS"); do
  for rt in crust containerd containerd2 crust-evented; do
    echo "== round $r: $rt"
    cluster "$rt" up >/dev/null 2>"$W/up.log" || { cat "$W/up.log" >&2; exit 1; }
    # The controller manager makes the default service account a moment after the API is up.
    until kc get serviceaccount default >/dev/null 2>&1; do sleep 0.2; done
    pods_yaml 1 warm | kc apply -f - >/dev/null
    kc wait --for=condition=Ready pod/warm-1 --timeout=120s >/dev/null
    kc delete pod warm-1 --wait=true >/dev/null
    read -r sum0 count0 <<<"$(sli)"
    pods_yaml "$N" bench >"$W/pods.yaml"
    t0=$(now_ms)
    kc apply -f "$W/pods.yaml" >/dev/null
    until [ "$(running)" -ge "$N" ]; do
      [ $(($(now_ms) - t0)) -lt 300000 ] || { echo "not all $N pods Running in 300 s on $rt" >&2; exit 1; }
      sleep 0.1
    done
    t1=$(now_ms)
    # kubelet observes the SLI as its status manager sees each pod Running: wait for all N.
    for _ in $(seq 100); do
      read -r sum1 count1 <<<"$(sli)"
      [ "$((count1 - count0))" -ge "$N" ] && break
      sleep 0.2
    done
    t2=$(now_ms)
    kc delete pods --all --wait=true --timeout=300s >/dev/null
    t3=$(now_ms)
    line=$(python3 -c 'import json,sys; rt,n,up,s0,c0,s1,c1,down=sys.argv[1:]; c=float(c1)-float(c0)
print(json.dumps({"runtime":rt,"pods":int(n),"all_running_ms":int(up),"sli_mean_ms":round((float(s1)-float(s0))/c*1000,1) if c>0 else None,"sli_pods":int(c),"delete_all_ms":int(down)}))' \
      "$rt" "$N" $((t1 - t0)) "$sum0" "$count0" "$sum1" "$count1" $((t3 - t2)))
    echo "$line" | tee -a "$W/results.jsonl"
    cluster "$rt" down >/dev/null 2>&1
  done
done

python3 - "$W/results.jsonl" "$OUT/kubelet.json" "$("$KUBELET" --version | awk '{print $2}')" \
  "$(containerd --version | awk '{print $3}')" "$("$CONTAINERD2" --version | awk '{print $3}')" \
  "$(runc --version | awk 'NR==1{print $3}')" "$N" <<'PY'
import json, statistics, sys, datetime, platform, os
rows = [json.loads(l) for l in open(sys.argv[1])]
kubelet, containerd, containerd2, runc, n = sys.argv[3:8]
setups = ["crust", "containerd", "containerd2", "crust-evented"]
def med(rt, key):
    v = [r[key] for r in rows if r["runtime"] == rt and r[key] is not None]
    return statistics.median(v) if v else None
def ratio(a, b):
    return round(a / b, 2) if a and b else None
table = []
print(f"\n{n} pods through the API server, kubelet {kubelet}, containerd {containerd} and "
      f"{containerd2}, runc {runc}, medians of {len(rows)//len(setups)} rounds")
print(f"{'':30}{'crust':>8}{'ctrd 1.6':>10}{'ratio':>7}{'ctrd 2':>8}{'ratio':>7}"
      f"{'crust+EvPLEG':>14}{'ratio 1.6':>10}{'ratio 2':>9}")
for key, what in [("all_running_ms", "all Running (wall, ms)"),
                  ("sli_mean_ms", "pod start SLI, mean (ms)"),
                  ("delete_all_ms", "delete all, until gone (ms)")]:
    a, b, b2, e = (med(s, key) for s in setups)
    row = {"metric": key, "crust": a, "containerd": b, "ratio": ratio(a, b),
           "containerd2": b2, "ratio_containerd2": ratio(a, b2),
           "crust_evented_pleg": e, "evented_ratio": ratio(e, b),
           "evented_ratio_containerd2": ratio(e, b2)}
    table.append(row)
    print(f"{what:30}{a:>8}{b:>10}{row['ratio']:>7}{b2:>8}{row['ratio_containerd2']:>7}"
          f"{e:>14}{row['evented_ratio']:>10}{row['evented_ratio_containerd2']:>9}")
json.dump({"date": datetime.date.today().isoformat(), "kernel": platform.release(),
           "cpus": os.cpu_count(), "kubelet": kubelet, "containerd": containerd,
           "containerd2": containerd2, "runc": runc, "pods": int(n), "rounds": rows,
           "medians": table}, open(sys.argv[2], "w"), indent=1)
PY
