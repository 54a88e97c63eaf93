#!/usr/bin/env bash
# A private single-node Kubernetes cluster on loopback whose kubelet runs its pods on crust:
# etcd, kube-apiserver (its own CA, certificates and kubeconfigs), kube-controller-manager,
# kube-scheduler, a private crustd and kubelet pointed at it. No kube-proxy.
#
#   scripts/cluster.sh up      # start it; the last lines are `export KUBECONFIG=…` and
#                              # `export PATH=<dir with kubectl>:$PATH`, so
#                              #   eval "$(scripts/cluster.sh up | grep ^export)"
#                              # makes kubectl work
#   scripts/cluster.sh down    # remove every pod, process, mount, cgroup, netns and file it made
#   scripts/cluster.sh status  # what runs
#   scripts/cluster.sh restart crustd   # stop one process (CRUST_CLUSTER_SIGNAL, default TERM;
#                                       # KILL for a crash) and start it again as it was
#
# The Kubernetes binaries come from scripts/k8s-tools.sh (pinned Go modules, built once per
# version); crustd and crustctl from CRUST_BIN_DIR when set, else a debug build of this tree.
# CRUST_CLUSTER_KUBELET=/path/to/kubelet picks another kubelet (the tests run the oldest supported
# one too). crustd serves Prometheus metrics on the node IP (the address is in crustd-metrics.addr);
# CRUST_CLUSTER_OTLP=host:port sends kubelet's and crustd's traces to an OTLP/gRPC collector.
# CRUST_CLUSTER_RUNTIME=containerd puts the same kubelet on Debian's containerd and runc instead
# (a private instance: its own root, state, socket, runc root and this CNI config), so that the
# kubelet benchmark (scripts/bench-kubelet.sh) compares like with like; containerd2 does the same
# with containerd 2.x built from its Go module (scripts/k8s-tools.sh containerd2).
# CRUST_CLUSTER_IMAGE_FS_SIZE=2g gives crust's root (images, snapshots, writable layers) a
# filesystem of its own, a tmpfs of that size, as nodes with a dedicated image disk have: kubelet
# measures the image filesystem through cadvisor, which cannot see every filesystem a test
# machine's /tmp may be on (kubelet's image GC then fails with "invalid capacity 0").
# Everything lives in CRUST_CLUSTER_DIR (default /tmp/crust-cluster); every cgroup the cluster
# makes is under /crust-cluster; pods get a CNI bridge on 10.89.0.0/24 whose host side has
# an address on the pod subnet: no masquerading, no forwarding off the subnet, ip_forward
# left as it is.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${CRUST_CLUSTER_DIR:-/tmp/crust-cluster}"
node="${CRUST_CLUSTER_NODE:-crust-node}"
runtime="${CRUST_CLUSTER_RUNTIME:-crust}"
cgroup_parent=/crust-cluster
bridge=crustk8s0
subnet_prefix=10.89.0
# kubelet refuses a loopback node IP, so the node's address is the bridge's host side: the API
# server reaches kubelet there (a local address; nothing leaves the host).
node_ip=$subnet_prefix.254

log() { echo "cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pid_alive() { [ -f "$dir/$1.pid" ] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null; }

start() { # name command...
  local name=$1
  shift
  # The command line is kept so that `restart NAME` starts the same process again.
  printf '%q ' "$@" >"$dir/$name.cmd"
  setsid "$@" >>"$dir/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/$name.pid"
}

stop_process() { # name [signal]
  local name=$1 sig=${2:-TERM} pid
  [ -f "$dir/$name.pid" ] || return 0
  pid=$(cat "$dir/$name.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -"$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/$name.pid"
}

wait_for() { # what seconds command...
  local what=$1 secs=$2
  shift 2
  for _ in $(seq $((secs * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "$what did not come up in ${secs}s (logs in $dir/logs)"
}

# ---------------------------------------------------------------- certificates

cert() { # name CN O [SANs]
  local name=$1 cn=$2 org=$3 sans=${4:-}
  local subj="/CN=$cn"
  [ -n "$org" ] && subj="/O=$org$subj"
  openssl genrsa -out "$dir/pki/$name.key" 2048 2>/dev/null
  openssl req -new -key "$dir/pki/$name.key" -subj "$subj" -out "$dir/pki/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    [ -n "$sans" ] && echo "subjectAltName=$sans"
  } >"$dir/pki/$name.ext"
  openssl x509 -req -in "$dir/pki/$name.csr" -CA "$dir/pki/ca.crt" -CAkey "$dir/pki/ca.key" \
    -CAcreateserial -days 30 -extfile "$dir/pki/$name.ext" -out "$dir/pki/$name.crt" 2>/dev/null
}

kubeconfig() { # name user-cert server
  local name=$1 user=$2 server=$3
  cat >"$dir/$name.kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: crust
  cluster:
    certificate-authority: $dir/pki/ca.crt
    server: $server
users:
- name: $name
  user:
    client-certificate: $dir/pki/$user.crt
    client-key: $dir/pki/$user.key
contexts:
- name: crust
  context: {cluster: crust, user: $name}
current-context: crust
YAML
}

make_pki() {
  mkdir -p "$dir/pki"
  openssl genrsa -out "$dir/pki/ca.key" 2048 2>/dev/null
  openssl req -x509 -new -key "$dir/pki/ca.key" -subj "/CN=crust-cluster-ca" -days 30 \
    -out "$dir/pki/ca.crt" 2>/dev/null
  cert apiserver kube-apiserver "" \
    "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert admin admin system:masters
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  cert controller-manager system:kube-controller-manager ""
  cert scheduler system:kube-scheduler ""
  cert kubelet "system:node:$node" system:nodes
  cert kubelet-serving "system:node:$node" system:nodes "IP:127.0.0.1,IP:$node_ip,DNS:$node,DNS:localhost"
  openssl genrsa -out "$dir/pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$dir/pki/sa.key" -pubout -out "$dir/pki/sa.pub" 2>/dev/null
}

# ---------------------------------------------------------------- cgroups and network

cgroup_dirs() { # the cluster's parent in every hierarchy (v2: one)
  if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then
    echo "/sys/fs/cgroup$cgroup_parent"
  else
    for h in /sys/fs/cgroup/*/; do
      [ -L "${h%/}" ] && continue
      [ -f "$h/cgroup.procs" ] && echo "${h%/}$cgroup_parent"
    done
  fi
}

make_cgroups() {
  local d
  for d in $(cgroup_dirs); do
    mkdir -p "$d"
    # A v1 cpuset starts empty: give it its parent's CPUs and memory nodes.
    if [ -f "$d/cpuset.cpus" ]; then
      cat "$(dirname "$d")/cpuset.cpus" >"$d/cpuset.cpus"
      cat "$(dirname "$d")/cpuset.mems" >"$d/cpuset.mems"
    fi
  done
  if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then
    local c
    for c in $(cat /sys/fs/cgroup/cgroup.subtree_control); do
      echo "+$c" >"/sys/fs/cgroup$cgroup_parent/cgroup.subtree_control" 2>/dev/null || true
    done
  fi
}

remove_cgroups() {
  local d
  for d in $(cgroup_dirs); do
    [ -d "$d" ] || continue
    # Deepest first; a cgroup with processes left is reported, never forced.
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [ -d "$d" ] && log "left behind (still in use): $d"
  done
  return 0
}

make_network() {
  mkdir -p "$dir/cni"
  ip link show "$bridge" >/dev/null 2>&1 || ip link add "$bridge" type bridge
  ip addr show dev "$bridge" | grep -q "$node_ip/24" ||
    ip addr add "$node_ip/24" dev "$bridge"
  ip link set "$bridge" up
  cat >"$dir/cni/10-crust-cluster.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "crust-cluster",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$subnet_prefix.0/24", "rangeStart": "$subnet_prefix.10", "rangeEnd": "$subnet_prefix.200"}]],
        "dataDir": "$dir/cni-ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
}

# ---------------------------------------------------------------- up / down

binaries() {
  local vars
  vars=$(bash "$root/scripts/k8s-tools.sh" cluster crictl)
  eval "$vars"
  # shellcheck disable=SC2153 # set by the eval above, or by the caller to override
  kubelet_bin=${CRUST_CLUSTER_KUBELET:-$KUBELET}
  if [ -n "${CRUST_BIN_DIR:-}" ]; then
    bin=$CRUST_BIN_DIR
  else
    log "building crustd and crustctl"
    (cd "$root" && cargo build -q --bin crustd --bin crustctl)
    bin=$root/target/debug
  fi
  [ -x "$bin/crustd" ] && [ -x "$bin/crustctl" ] || die "no crustd/crustctl in $bin"
}

start_crustd() { # metrics port
  log "crustd (socket $dir/crust/crust.sock)"
  mkdir -p "$dir/crust/root"
  if [ -n "${CRUST_CLUSTER_IMAGE_FS_SIZE:-}" ] && ! mountpoint -q "$dir/crust/root"; then
    mount -t tmpfs -o "size=$CRUST_CLUSTER_IMAGE_FS_SIZE,mode=0711" crust-image-fs "$dir/crust/root"
  fi
  cat >"$dir/crust/crustd.toml" <<TOML
root = "$dir/crust/root"
state = "$dir/crust/state"
listen = "$dir/crust/crust.sock"
cgroup_root = "$cgroup_parent/crust"
cgroup_driver = "cgroupfs"
[cni]
conf_dir = "$dir/cni"
[image]
insecure_registries = [${CRUST_CLUSTER_INSECURE_REGISTRIES:-}]
[telemetry]
metrics_address = "$node_ip:$1"
otlp_endpoint = "${CRUST_CLUSTER_OTLP:+http://$CRUST_CLUSTER_OTLP}"
TOML
  echo "$node_ip:$1" >"$dir/crustd-metrics.addr"
  if [ -n "${CRUST_CLUSTER_CRUSTD_EXTRA:-}" ]; then
    printf '%s\n' "$CRUST_CLUSTER_CRUSTD_EXTRA" >>"$dir/crust/crustd.toml"
  fi
  start crustd "$bin/crustd" --config "$dir/crust/crustd.toml"
  wait_for crustd 30 test -S "$dir/crust/crust.sock"
}

# containerd with runc, private to the cluster, pulling from the same registries over plain HTTP
# (hosts.toml) and with the same CNI config as crust: Debian's 1.6 (CRUST_CLUSTER_RUNTIME=containerd)
# or 2.x built from its Go module by scripts/k8s-tools.sh (containerd2), its own runc shim first on
# its PATH (containerd looks the shim up on PATH before beside itself, and Debian's 1.6 shim is on
# it). Root here lacks CAP_SYS_RESOURCE, so containerd must not lower oom_score_adj; 2.x's NRI
# socket and opt directory would default to host paths, so NRI is off and opt is private.
start_containerd() {
  command -v runc >/dev/null ||
    die "CRUST_CLUSTER_RUNTIME=$runtime needs runc (apt-get install runc)"
  local c=$dir/containerd reg first containerd_bin=containerd shim_dir="" cri images
  if [ "$runtime" = containerd2 ]; then
    eval "$(bash "$root/scripts/k8s-tools.sh" containerd2)"
    containerd_bin=$CONTAINERD2
    shim_dir=$(dirname "$CONTAINERD2_SHIM")
  else
    command -v containerd >/dev/null ||
      die "CRUST_CLUSTER_RUNTIME=containerd needs containerd (apt-get install containerd)"
  fi
  mkdir -p "$c/certs.d"
  for reg in $(echo "${CRUST_CLUSTER_INSECURE_REGISTRIES:-}" | tr -d '" ' | tr ',' ' '); do
    [ -n "${first:-}" ] || first=$reg
    mkdir -p "$c/certs.d/$reg"
    printf 'server = "http://%s"\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' \
      "$reg" "$reg" >"$c/certs.d/$reg/hosts.toml"
  done
  [ -n "${first:-}" ] || die "containerd needs a registry for its pause image (CRUST_CLUSTER_INSECURE_REGISTRIES)"
  log "containerd $("$containerd_bin" --version | awk '{print $3}') (socket $c/containerd.sock)"
  if [ "$runtime" = containerd2 ]; then
    # Config version 3: the CRI plugin split into images and runtime parts.
    images='plugins."io.containerd.cri.v1.images"'
    cri='plugins."io.containerd.cri.v1.runtime"'
    cat >"$c/config.toml" <<TOML
version = 3
root = "$c/root"
state = "$c/state"
[grpc]
  address = "$c/containerd.sock"
[plugins."io.containerd.nri.v1.nri"]
  disable = true
[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"
[$images.pinned_images]
  sandbox = "$first/crust-test/pause:latest"
[$images.registry]
  config_path = "$c/certs.d"
[$cri]
  restrict_oom_score_adj = true
[$cri.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[$cri.containerd.runtimes.runc.options]
  Root = "$c/runc"
[$cri.cni]
  bin_dirs = ["/usr/lib/cni"]
  conf_dir = "$dir/cni"
TOML
  else
    cri='plugins."io.containerd.grpc.v1.cri"'
    cat >"$c/config.toml" <<TOML
version = 2
root = "$c/root"
state = "$c/state"
[grpc]
  address = "$c/containerd.sock"
[$cri]
  restrict_oom_score_adj = true
  sandbox_image = "$first/crust-test/pause:latest"
  [$cri.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [$cri.containerd.runtimes.runc.options]
    Root = "$c/runc"
  [$cri.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni"
  [$cri.registry]
    config_path = "$c/certs.d"
TOML
  fi
  start containerd env PATH="${shim_dir:+$shim_dir:}$PATH" "$containerd_bin" --config "$c/config.toml"
  wait_for containerd 30 test -S "$c/containerd.sock"
}

up() {
  if pid_alive kube-apiserver; then
    log "already up"
  else
    binaries
    rm -rf "$dir"
    mkdir -p "$dir/logs" "$dir/manifests" "$dir/kubelet" "$dir/pod-logs"
    make_pki
    make_cgroups
    make_network

    local etcd_port etcd_peer api_port kubelet_port metrics_port
    etcd_port=$(free_port); etcd_peer=$(free_port); api_port=$(free_port); kubelet_port=$(free_port)
    metrics_port=$(free_port)
    echo "$api_port" >"$dir/api.port"
    local server="https://127.0.0.1:$api_port"

    log "etcd on 127.0.0.1:$etcd_port"
    start etcd "$ETCD" --name crust --data-dir "$dir/etcd" \
      --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
      --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
      --initial-cluster "crust=http://127.0.0.1:$etcd_peer" --log-level warn
    wait_for etcd 30 curl -fs "http://127.0.0.1:$etcd_port/health"

    log "kube-apiserver on $server"
    start kube-apiserver "$KUBE_APISERVER" --etcd-servers "http://127.0.0.1:$etcd_port" \
      --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
      --client-ca-file "$dir/pki/ca.crt" \
      --tls-cert-file "$dir/pki/apiserver.crt" --tls-private-key-file "$dir/pki/apiserver.key" \
      --kubelet-client-certificate "$dir/pki/apiserver-kubelet-client.crt" \
      --kubelet-client-key "$dir/pki/apiserver-kubelet-client.key" \
      --kubelet-certificate-authority "$dir/pki/ca.crt" \
      --kubelet-preferred-address-types InternalIP,Hostname \
      --service-account-issuer https://kubernetes.default.svc.cluster.local \
      --service-account-key-file "$dir/pki/sa.pub" --service-account-signing-key-file "$dir/pki/sa.key" \
      --service-cluster-ip-range 10.96.0.0/24 --authorization-mode Node,RBAC \
      --enable-admission-plugins NodeRestriction --allow-privileged=true \
      --endpoint-reconciler-type none
    kubeconfig admin admin "$server"
    kubeconfig controller-manager controller-manager "$server"
    kubeconfig scheduler scheduler "$server"
    kubeconfig kubelet kubelet "$server"
    wait_for kube-apiserver 90 "$KUBECTL" --kubeconfig "$dir/admin.kubeconfig" get --raw /readyz

    log "kube-controller-manager and kube-scheduler"
    start kube-controller-manager "$KUBE_CONTROLLER_MANAGER" --kubeconfig "$dir/controller-manager.kubeconfig" \
      --authentication-kubeconfig "$dir/controller-manager.kubeconfig" \
      --authorization-kubeconfig "$dir/controller-manager.kubeconfig" \
      --bind-address 127.0.0.1 --secure-port "$(free_port)" --leader-elect=false \
      --use-service-account-credentials --service-account-private-key-file "$dir/pki/sa.key" \
      --root-ca-file "$dir/pki/ca.crt" --cluster-signing-cert-file "$dir/pki/ca.crt" \
      --cluster-signing-key-file "$dir/pki/ca.key" --allocate-node-cidrs=false
    start kube-scheduler "$KUBE_SCHEDULER" --kubeconfig "$dir/scheduler.kubeconfig" \
      --authentication-kubeconfig "$dir/scheduler.kubeconfig" \
      --authorization-kubeconfig "$dir/scheduler.kubeconfig" \
      --bind-address 127.0.0.1 --secure-port "$(free_port)" --leader-elect=false

    local endpoint
    echo "$runtime" >"$dir/runtime"
    if [ "$runtime" = containerd ] || [ "$runtime" = containerd2 ]; then
      start_containerd
      endpoint=unix://$dir/containerd/containerd.sock
    else
      start_crustd "$metrics_port"
      endpoint=unix://$dir/crust/crust.sock
    fi

    log "kubelet ($("$kubelet_bin" --version 2>/dev/null))"
    cat >"$dir/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
port: $kubelet_port
readOnlyPort: 0
healthzPort: 0
tlsCertFile: $dir/pki/kubelet-serving.crt
tlsPrivateKeyFile: $dir/pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $dir/pki/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: $endpoint
imageServiceEndpoint: $endpoint
cgroupDriver: cgroupfs
cgroupRoot: $cgroup_parent
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
staticPodPath: $dir/manifests
podLogsDir: $dir/pod-logs
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
serializeImagePulls: false
containerLogMaxSize: ${CRUST_CLUSTER_LOG_MAX_SIZE:-10Mi}
imageGCHighThresholdPercent: ${CRUST_CLUSTER_IMAGE_GC_HIGH:-85}
imageGCLowThresholdPercent: ${CRUST_CLUSTER_IMAGE_GC_LOW:-80}
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
protectKernelDefaults: false
featureGates: {${CRUST_CLUSTER_FEATURE_GATES:-}}
YAML
    if [ -n "${CRUST_CLUSTER_OTLP:-}" ]; then
      printf 'tracing: {endpoint: "%s", samplingRatePerMillion: 1000000}\n' "$CRUST_CLUSTER_OTLP" \
        >>"$dir/kubelet/config.yaml"
    fi
    start kubelet "$kubelet_bin" --config "$dir/kubelet/config.yaml" --root-dir "$dir/kubelet" \
      --kubeconfig "$dir/kubelet.kubeconfig" --hostname-override "$node" --node-ip "$node_ip" \
      --cert-dir "$dir/kubelet/pki" -v 2
    log "waiting for node $node to be Ready"
    wait_for "node $node" 120 sh -c "'$KUBECTL' --kubeconfig '$dir/admin.kubeconfig' get node '$node' -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
    mkdir -p "$dir/bin"
    ln -sf "$KUBECTL" "$dir/bin/kubectl"
    ln -sf "$bin/crustctl" "$dir/bin/crustctl"
    log "up: node $node Ready; logs in $dir/logs"
  fi
  echo "export KUBECONFIG=$dir/admin.kubeconfig"
  echo "export PATH=$dir/bin:\$PATH"
}

down() {
  [ -d "$dir" ] || { log "nothing to take down ($dir does not exist)"; return 0; }
  local kubectl=$dir/bin/kubectl kc=$dir/admin.kubeconfig
  if pid_alive kube-apiserver && pid_alive kubelet && [ -x "$kubectl" ]; then
    log "deleting every pod through the API server"
    "$kubectl" --kubeconfig "$kc" delete deployments,replicasets,jobs,daemonsets,statefulsets --all -A --wait=false >/dev/null 2>&1 || true
    "$kubectl" --kubeconfig "$kc" delete pods --all -A --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
  fi
  stop_process kubelet
  if pid_alive crustd && [ -x "$dir/bin/crustctl" ]; then
    CRUST_SOCKET="$dir/crust/crust.sock" "$dir/bin/crustctl" rmp -a >/dev/null 2>&1 || true
  fi
  stop_process crustd
  if pid_alive containerd; then
    # Removing the pods through containerd ends their containers and shims.
    "$(bash "$root/scripts/k8s-tools.sh" crictl | sed 's/^CRICTL=//')" \
      --runtime-endpoint "unix://$dir/containerd/containerd.sock" rmp -fa >/dev/null 2>&1 || true
  fi
  stop_process containerd
  for p in kube-scheduler kube-controller-manager kube-apiserver etcd; do stop_process "$p"; done
  # Mounts left under the cluster dir (kubelet's volumes, crust's rootfs and pinned
  # namespaces), deepest first.
  awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  remove_cgroups
  ip link del "$bridge" 2>/dev/null || true
  # kubelet links every container log into the fixed /var/log/containers as well.
  find /var/log/containers -maxdepth 1 -lname "$dir/*" -delete 2>/dev/null || true
  rm -rf "$dir"
  log "down"
}

restart() { # name: stop (TERM, or the signal in CRUST_CLUSTER_SIGNAL) and start it again
  local name=$1
  [ -f "$dir/$name.cmd" ] || die "no $name in $dir"
  stop_process "$name" "${CRUST_CLUSTER_SIGNAL:-TERM}"
  log "restarting $name"
  eval "start $name $(cat "$dir/$name.cmd")"
  if [ "$name" = crustd ]; then
    wait_for crustd 30 "$dir/bin/crustctl" --socket "$dir/crust/crust.sock" version
  fi
}

status() {
  local p
  for p in etcd kube-apiserver kube-controller-manager kube-scheduler crustd containerd kubelet; do
    if pid_alive "$p"; then echo "$p running (pid $(cat "$dir/$p.pid"))"; else echo "$p not running"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  restart) restart "${2:?restart what (crustd, kubelet, …)?}" ;;
  *) echo "usage: scripts/cluster.sh up|down|status|restart NAME" >&2; exit 2 ;;
esac
