#!/usr/bin/env bash
# Installs what building and testing crust needs on a Debian 12 machine, idempotently:
# Debian packages (libseccomp for libcontainer, protoc for the CRI bindings, the CNI plugins and
# iptables for pod networking, and for the tests busybox-static, catatonit, docker-registry and
# curl, Prometheus for the metrics test, Go with sprig to render the Helm chart, buildah, umoci
# and skopeo to build images as real builders do, containerd to compare unpacked layers with),
# PyPI's kubernetes-validate (the chart's manifests against the Kubernetes schemas), and checks
# for a Rust toolchain.
set -euo pipefail

need=(python3 openssl zstd libseccomp-dev protobuf-compiler busybox-static catatonit docker-registry curl iproute2 iptables containernetworking-plugins ca-certificates prometheus golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev buildah umoci skopeo containerd)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
# The containers-common that buildah and skopeo bring may drop podman's default CNI network
# (a bridge that masquerades and turns ip_forward on): crust's tests never use it, so it is
# moved out of the CNI config dir at once. (Nothing here starts containerd: the tests run
# private instances.)
podman_net=/etc/cni/net.d/87-podman-bridge.conflist
if [ -e "$podman_net" ]; then
  mkdir -p /var/cache/crust
  mv "$podman_net" /var/cache/crust/disabled-87-podman-bridge.conflist
  echo "setup: moved $podman_net to /var/cache/crust/disabled-87-podman-bridge.conflist"
fi
if ! python3 -c 'import kubernetes_validate, jsonschema, yaml, grpc' 2>/dev/null; then
  echo "setup: installing kubernetes-validate from PyPI"
  python3 -m pip install -q --disable-pip-version-check kubernetes-validate jsonschema pyyaml grpcio
fi
# critest's busybox stand-in needs Debian's dynamically linked busybox (package busybox): its
# shell runs /bin/ls as a program, where busybox-static's runs its own applet and so never sees
# a masked /bin/ls. The two packages conflict, so the .deb is only downloaded and kept.
debs=/var/cache/crust/debs
if ! ls "$debs"/busybox_*.deb >/dev/null 2>&1; then
  echo "setup: downloading Debian's busybox package for critest's images"
  mkdir -p "$debs"
  (cd "$debs" && apt-get download -q busybox >/dev/null 2>&1) ||
    (apt-get update -q >/dev/null && cd "$debs" && apt-get download -q busybox >/dev/null)
fi
# The Redis image crustctl's build test makes, as the seed's example does, from Debian's
# packages: downloaded and kept, never installed (redis-server would start a service).
if ! ls "$debs"/redis-tools_*.deb "$debs"/liblzf1_*.deb >/dev/null 2>&1; then
  echo "setup: downloading Debian's redis packages for the build test"
  mkdir -p "$debs"
  redis_debs=(redis-tools redis-server libjemalloc2 liblzf1)
  (cd "$debs" && apt-get download -q "${redis_debs[@]}" >/dev/null 2>&1) ||
    (apt-get update -q >/dev/null && cd "$debs" && apt-get download -q "${redis_debs[@]}" >/dev/null)
fi
# Debian starts docker-registry as a service on :5000 when it can; crust's scripts run their
# own registries, so a packaged instance is left as it is.

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: no Rust toolchain found; install one (rustup, Rust >= 1.88) and run again" >&2
    exit 1
  fi
fi
echo "setup: ok ($(cargo --version))"
