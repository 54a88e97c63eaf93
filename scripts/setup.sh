#!/usr/bin/env bash
# Installs what building and testing crust needs on a Debian 12 machine, idempotently:
# Debian packages (libseccomp for libcontainer, protoc for the CRI bindings, the CNI plugins and
# iptables for pod networking, and for the tests busybox-static, catatonit, docker-registry and
# curl, Prometheus for the metrics test, Go with sprig to render the Helm chart), PyPI's
# kubernetes-validate (the chart's manifests against the Kubernetes schemas), and checks for a
# Rust toolchain.
set -euo pipefail

need=(python3 openssl zstd libseccomp-dev protobuf-compiler busybox-static catatonit docker-registry curl iproute2 iptables containernetworking-plugins ca-certificates prometheus golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev)
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
if ! python3 -c 'import kubernetes_validate, jsonschema, yaml' 2>/dev/null; then
  echo "setup: installing kubernetes-validate from PyPI"
  python3 -m pip install -q --disable-pip-version-check kubernetes-validate jsonschema pyyaml
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
