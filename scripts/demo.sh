#!/usr/bin/env bash
# crust's main job on a fresh Debian machine: install what is needed, build, start a local
# registry with a busybox image built offline, start crustd, and run a container through
# crustctl. crustd and the registry keep running afterwards; `scripts/demo.sh stop` ends them.
#
#   scripts/demo.sh            # set up, build (release), start, run a busybox container
#   scripts/demo.sh stop       # stop the demo's crustd and registry
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

DEMO=${CRUST_DEMO_DIR:-/var/lib/crust-demo}
PORT=${CRUST_DEMO_REGISTRY_PORT:-5050}
SOCK=/run/crust/crust.sock
# The demo's own pod network (packaging/cni, --isolated): never /etc/cni/net.d, no masquerading,
# no route out of the pods, ip_forward untouched; the host reaches pods on the bridge's .254.
BRIDGE=${CRUST_DEMO_BRIDGE:-crustdemo0}
SUBNET=${CRUST_DEMO_SUBNET_PREFIX:-10.86.0}

stop() {
  for f in "$DEMO/crustd.pid" "$DEMO/registry.pid"; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null && echo "stopped $(basename "$f" .pid) ($(cat "$f"))"
    rm -f "$f"
  done
}
if [ "${1:-}" = stop ]; then
  if [ -S "$SOCK" ] && [ -x target/release/crustctl ]; then
    target/release/crustctl rm -f demo-web >/dev/null 2>&1 || true
  fi
  stop
  # The demo's bridge goes once no pod is plugged into it.
  if [ -d "/sys/class/net/$BRIDGE" ] && [ -z "$(ls "/sys/class/net/$BRIDGE/brif" 2>/dev/null)" ] &&
    ip link del "$BRIDGE" 2>/dev/null; then
    echo "removed bridge $BRIDGE"
  fi
  exit 0
fi

bash scripts/setup.sh
echo "demo: building crust (release)…"
cargo build --release --bins -q
mkdir -p "$DEMO"
stop >/dev/null 2>&1 || true

echo "demo: starting a registry on 127.0.0.1:$PORT"
setsid tests/fixtures/registry.sh "$PORT" "$DEMO/registry" >"$DEMO/registry.log" 2>&1 &
echo $! >"$DEMO/registry.pid"
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
tests/fixtures/build-images.sh "127.0.0.1:$PORT"

packaging/cni/install-network.sh --isolated --conf-dir "$DEMO/cni" --ipam-dir "$DEMO/cni-ipam" \
  --bridge "$BRIDGE" --subnet-prefix "$SUBNET"
cat >"$DEMO/crustd.toml" <<TOML
# Written by scripts/demo.sh; see \`crustd config default\` for every key.
[image]
insecure_registries = ["127.0.0.1:$PORT"]

[cni]
conf_dir = "$DEMO/cni"
TOML
echo "demo: starting crustd (socket $SOCK, log $DEMO/crustd.log)"
setsid target/release/crustd --config "$DEMO/crustd.toml" >"$DEMO/crustd.log" 2>&1 &
echo $! >"$DEMO/crustd.pid"
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done

ctl=target/release/crustctl
$ctl version
echo "demo: crustctl run --rm 127.0.0.1:$PORT/crust-test/busybox echo …"
$ctl run --rm "127.0.0.1:$PORT/crust-test/busybox" sh -c 'echo "hello from a crust container: $(hostname), pid $$, $(id)"'
echo "demo: crustctl run -d --name demo-web -p 8080:80 … httpd, then curl 127.0.0.1:8080"
$ctl rm -f demo-web >/dev/null 2>&1 || true
$ctl run -d --name demo-web -p 8080:80 "127.0.0.1:$PORT/crust-test/busybox" \
  sh -c 'mkdir -p /www && echo "hello over a published port" >/www/index.html && exec httpd -f -p 80 -h /www' >/dev/null
for _ in $(seq 50); do curl -fsS --max-time 1 http://127.0.0.1:8080/ 2>/dev/null && break; sleep 0.2; done
cat <<EOT

crustd is running (pid $(cat "$DEMO/crustd.pid")) on unix://$SOCK. Try:
  $ctl run -d --name web 127.0.0.1:$PORT/crust-test/busybox sh -c 'while true; do date; sleep 1; done'
  $ctl ps; $ctl logs -f web; $ctl stop web; $ctl rm web
  curl 127.0.0.1:8080; $ctl rm -f demo-web
  crictl --runtime-endpoint unix://$SOCK ps -a
Stop everything with: scripts/demo.sh stop
EOT
