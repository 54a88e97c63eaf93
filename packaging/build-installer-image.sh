#!/usr/bin/env bash
# Builds the Helm chart's installer image without container tooling: busybox-static for the
# shell and tools, crustd, crust-monitor and crustctl (a release build by default) with the shared libraries
# they link, and packaging/ under /opt/crust. One layer, tarred deterministically.
#
#   build-installer-image.sh [--bin DIR] --push HOST:PORT/REPO:TAG   # to a plain-HTTP registry
#   build-installer-image.sh [--bin DIR] --out FILE.tar              # an OCI image layout tar
#
# The tar loads with `crustctl load`, `ctr images import` or `skopeo copy oci-archive:…`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin="$here/../target/release"
push="" out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --push) push=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--bin DIR] (--push HOST:PORT/REPO:TAG | --out FILE.tar)" >&2; exit 2 ;;
  esac
done
[ -n "$push$out" ] || { echo "$0: give --push or --out" >&2; exit 2; }
for b in crustd crustctl crust-monitor; do
  [ -x "$bin/$b" ] || { echo "$0: $bin/$b missing (cargo build --release)" >&2; exit 1; }
done
[ -x /bin/busybox ] || { echo "$0: /bin/busybox missing (apt-get install busybox-static)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,tmp,opt/crust,host,etc}
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
cp "$bin/crustd" "$bin/crustctl" "$bin/crust-monitor" "$here/install.sh" "$here/crust.service" "$here/crictl.yaml" \
  "$here/config.toml" "$root/opt/crust/"
# Debug info is for developers' builds, not nodes.
if command -v strip >/dev/null; then strip --strip-debug "$root/opt/crust/crustd" "$root/opt/crust/crustctl" "$root/opt/crust/crust-monitor"; fi
# The dynamic loader and every library the binaries link (glibc, libseccomp, libgcc_s).
for lib in $(ldd "$bin/crustd" "$bin/crustctl" "$bin/crust-monitor" | grep -oE '/[^ ]+\.so[^ ]*' | sort -u); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$root" -cf "$work/layer.tar" .
diff_id="sha256:$(sha "$work/layer.tar")"
gzip -n -6 -c "$work/layer.tar" >"$work/layer.tar.gz"
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/opt/crust:/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/opt/crust"},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
  "$diff_id" >"$work/config.json"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
  "$(sha "$work/config.json")" "$(size "$work/config.json")" "$(sha "$work/layer.tar.gz")" "$(size "$work/layer.tar.gz")" >"$work/manifest.json"

if [ -n "$push" ]; then
  reg=${push%%/*}
  rest=${push#*/}
  repo=${rest%:*}
  tag=${rest##*:}
  [ "$tag" != "$rest" ] || tag=latest
  for f in layer.tar.gz config.json; do
    digest="sha256:$(sha "$work/$f")"
    loc=$(curl -fsS -D - -o /dev/null -X POST "http://$reg/v2/$repo/blobs/uploads/" | tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}')
    case "$loc" in http*) ;; *) loc="http://$reg$loc" ;; esac
    case "$loc" in *\?*) loc="$loc&digest=$digest" ;; *) loc="$loc?digest=$digest" ;; esac
    curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$work/$f" "$loc"
  done
  curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary "@$work/manifest.json" "http://$reg/v2/$repo/manifests/$tag"
  echo "pushed $push ($(size "$work/layer.tar.gz") bytes compressed)"
fi
if [ -n "$out" ]; then
  oci=$work/oci
  mkdir -p "$oci/blobs/sha256"
  for f in layer.tar.gz config.json manifest.json; do
    cp "$work/$f" "$oci/blobs/sha256/$(sha "$work/$f")"
  done
  echo '{"imageLayoutVersion":"1.0.0"}' >"$oci/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"crust-installer:latest"}}]}' \
    "$(sha "$work/manifest.json")" "$(size "$work/manifest.json")" >"$oci/index.json"
  tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$oci" -cf "$out" .
  echo "wrote $out"
fi
