#!/usr/bin/env bash
# Installs crust's default bridge network (packaging/cni/10-crust-bridge.conflist: CNI bridge and
# host-local; crust brings each pod's loopback up itself and publishes host ports itself) into a
# CNI conf dir, so `crustctl run -p` publishes ports.
#
#   install-network.sh --conf-dir DIR [--bridge NAME] [--subnet-prefix A.B.C] [--ipam-dir DIR]
#                      [--isolated]
#
# The shipped file makes the bridge the pods' gateway and masquerades their traffic out (what
# a node wants). --isolated (the demo and tests) keeps pods on their subnet: no gateway, no
# masquerading, no default route, ip_forward untouched; the bridge gets A.B.C.254 on the pod
# subnet instead, so the host (and host ports on 127.0.0.1) reaches pods by
# local delivery. An existing config file of the same name is replaced.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
conf_dir="" bridge=crust0 prefix=10.85.0 ipam_dir="" isolated=0
while [ $# -gt 0 ]; do
  case "$1" in
    --conf-dir) conf_dir=$2; shift 2 ;;
    --bridge) bridge=$2; shift 2 ;;
    --subnet-prefix) prefix=$2; shift 2 ;;
    --ipam-dir) ipam_dir=$2; shift 2 ;;
    --isolated) isolated=1; shift ;;
    *) echo "install-network.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$conf_dir" ] || { echo "install-network.sh: --conf-dir is required" >&2; exit 2; }
[[ "$prefix" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "install-network.sh: --subnet-prefix $prefix: expected A.B.C" >&2; exit 2; }
mkdir -p "$conf_dir"
python3 - "$here/10-crust-bridge.conflist" "$conf_dir/10-crust-bridge.conflist" "$bridge" "$prefix" "$ipam_dir" "$isolated" <<'PY'
import json, sys
src, dst, bridge, prefix, ipam_dir, isolated = sys.argv[1:]
conf = json.load(open(src))
b = conf["plugins"][0]
b["bridge"] = bridge
ipam = b["ipam"]
ipam["ranges"] = [[{"subnet": f"{prefix}.0/24", "rangeStart": f"{prefix}.10", "rangeEnd": f"{prefix}.250"}]]
if ipam_dir:
    ipam["dataDir"] = ipam_dir
if isolated == "1":
    b["isGateway"] = False
    b["ipMasq"] = False
    ipam.pop("routes", None)
tmp = dst + ".tmp"
with open(tmp, "w") as f:
    json.dump(conf, f, indent=2)
    f.write("\n")
import os
os.rename(tmp, dst)
PY
if [ "$isolated" = 1 ]; then
  ip link show "$bridge" >/dev/null 2>&1 || ip link add "$bridge" type bridge
  ip addr show dev "$bridge" | grep -q "inet $prefix.254/24" || ip addr add "$prefix.254/24" dev "$bridge"
  ip link set "$bridge" up
fi
echo "installed $conf_dir/10-crust-bridge.conflist (bridge $bridge, $prefix.0/24$([ "$isolated" = 1 ] && echo ', isolated'))"
