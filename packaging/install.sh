#!/bin/sh
# Installs crust on a node (crustd, crust-monitor, crustctl, systemd unit, config, crictl.yaml),
# or takes it off again.
# The Helm chart's installer pods run this same script against the host's root (/host).
#
#   install.sh [options] install      # install or upgrade, enable and (re)start crust
#   install.sh [options] uninstall    # stop, disable and remove what install put there
#
# Options:
#   --root DIR         the node's root filesystem (default /); every path is written under it
#   --bin DIR          where crustd, crust-monitor and crustctl are (default: this script's dir, then
#                      ../target/release)
#   --config FILE      config to install as /etc/crust/config.toml (default: config.toml next
#                      to this script); an existing one is kept unless --force-config
#   --force-config     replace an existing /etc/crust/config.toml (the old one is kept as .old)
#   --credentials FILE registry credentials (Docker config.json) for /etc/crust/credentials.json
#   --env FILE         environment of crustd (OTEL_* variables) for /etc/crust/crust.env
#   --switch-kubelet   point kubelet at crust (its config is backed up; uninstall restores it)
#   --systemctl CMD    how to run systemctl (default: systemctl when the root is / and systemd
#                      runs; the Helm installer passes "nsenter -t 1 -m -u -i -n -p -- systemctl")
#   --no-start         write files only; run no systemctl at all
#   --purge            uninstall also deletes /var/lib/crust (images, records) and /etc/crust
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=/
bin=""
config="$here/config.toml"
force_config=0
credentials=""
envfile=""
switch_kubelet=0
systemctl=""
no_start=0
purge=0
action=""

while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --force-config) force_config=1; shift ;;
    --credentials) credentials=$2; shift 2 ;;
    --env) envfile=$2; shift 2 ;;
    --switch-kubelet) switch_kubelet=1; shift ;;
    --systemctl) systemctl=$2; shift 2 ;;
    --no-start) no_start=1; shift ;;
    --purge) purge=1; shift ;;
    install|uninstall) action=$1; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$action" ] || { echo "install.sh: say install or uninstall (see --help)" >&2; exit 2; }
root=${root%/}
SOCKET=unix:///run/crust/crust.sock

log() { echo "crust-install: $*"; }

# put MODE SRC DST: copy with a mode (busybox, in the installer image, has no `install`).
put() {
  cp "$2" "$3.crust-new"
  chmod "$1" "$3.crust-new"
  mv -f "$3.crust-new" "$3"
}

# systemctl only where it reaches the node's systemd: given explicitly, or root / with systemd up.
if [ "$no_start" = 1 ]; then
  systemctl=""
elif [ -z "$systemctl" ] && [ -z "$root" ] && [ -d /run/systemd/system ]; then
  systemctl=systemctl
fi
sysctl_run() {
  if [ -n "$systemctl" ]; then
    # shellcheck disable=SC2086 # the command may carry its own arguments (nsenter …)
    $systemctl "$@"
  else
    log "skipped: systemctl $*"
  fi
}

unit="$root/etc/systemd/system/crust.service"
wants="$root/etc/systemd/system/multi-user.target.wants/crust.service"
kubelet_config="$root/var/lib/kubelet/config.yaml"
kubelet_flags="$root/var/lib/kubelet/kubeadm-flags.env"

switch_kubelet_endpoint() {
  changed=0
  if [ -f "$kubelet_config" ]; then
    [ -f "$kubelet_config.crust-backup" ] || cp -p "$kubelet_config" "$kubelet_config.crust-backup"
    if grep -q '^containerRuntimeEndpoint:' "$kubelet_config"; then
      sed -i "s|^containerRuntimeEndpoint:.*|containerRuntimeEndpoint: $SOCKET|" "$kubelet_config"
    else
      printf 'containerRuntimeEndpoint: %s\n' "$SOCKET" >>"$kubelet_config"
    fi
    changed=1
  fi
  if [ -f "$kubelet_flags" ] && grep -q -- '--container-runtime-endpoint=' "$kubelet_flags"; then
    [ -f "$kubelet_flags.crust-backup" ] || cp -p "$kubelet_flags" "$kubelet_flags.crust-backup"
    sed -i "s|--container-runtime-endpoint=[^ \"]*|--container-runtime-endpoint=$SOCKET|" "$kubelet_flags"
    changed=1
  fi
  if [ "$changed" = 0 ]; then
    log "warning: no kubelet config at $kubelet_config or $kubelet_flags; kubelet left as it is"
    return
  fi
  log "WARNING: kubelet now uses crust ($SOCKET); every pod on this node restarts under crust"
  sysctl_run restart kubelet
}

restore_kubelet_endpoint() {
  restored=0
  for f in "$kubelet_config" "$kubelet_flags"; do
    if [ -f "$f.crust-backup" ]; then
      mv -f "$f.crust-backup" "$f"
      restored=1
    fi
  done
  if [ "$restored" = 1 ]; then
    log "kubelet's runtime endpoint restored; its pods restart under the previous runtime"
    sysctl_run restart kubelet
  fi
}

do_install() {
  if [ -z "$bin" ]; then
    if [ -x "$here/crustd" ]; then bin=$here; else bin="$here/../target/release"; fi
  fi
  for b in crustd crustctl crust-monitor; do
    [ -x "$bin/$b" ] || { echo "install.sh: $bin/$b not found (build with cargo build --release, or pass --bin)" >&2; exit 1; }
  done
  # The config must parse before anything changes on the node.
  "$bin/crustd" config check "$config" >/dev/null

  mkdir -p "$root/usr/local/bin" "$root/etc/systemd/system/multi-user.target.wants" \
    "$root/etc/crust" "$root/var/lib/crust"
  chmod 0700 "$root/etc/crust" "$root/var/lib/crust"
  # Replaced by rename, so a running crustd keeps its (unlinked) executable.
  for b in crustd crustctl crust-monitor; do
    put 0755 "$bin/$b" "$root/usr/local/bin/$b"
  done
  put 0644 "$here/crust.service" "$unit"
  ln -sf /etc/systemd/system/crust.service "$wants"

  target="$root/etc/crust/config.toml"
  if [ -f "$target" ] && [ "$force_config" = 0 ]; then
    log "kept $target (pass --force-config to replace it)"
  else
    [ -f "$target" ] && cp -p "$target" "$target.old"
    put 0600 "$config" "$target"
  fi
  if [ -n "$credentials" ]; then
    put 0600 "$credentials" "$root/etc/crust/credentials.json"
  fi
  if [ -n "$envfile" ]; then
    put 0600 "$envfile" "$root/etc/crust/crust.env"
  fi
  if [ ! -f "$root/etc/crictl.yaml" ]; then
    put 0644 "$here/crictl.yaml" "$root/etc/crictl.yaml"
  fi

  sysctl_run daemon-reload
  sysctl_run enable crust.service
  # restart, not start: an upgrade must run the new binary (containers stay up: KillMode).
  sysctl_run restart crust.service
  [ "$switch_kubelet" = 1 ] && switch_kubelet_endpoint
  log "installed crust $("$root/usr/local/bin/crustd" --version 2>/dev/null | awk '{print $2}') under ${root:-/}"
}

do_uninstall() {
  restore_kubelet_endpoint
  # No container may outlive its runtime: crust's pods (which survive a mere stop of crustd)
  # are stopped and removed while crust still answers.
  ctl="$root/usr/local/bin/crustctl"
  [ -n "$bin" ] && [ -x "$bin/crustctl" ] && ctl="$bin/crustctl"
  if [ -x "$ctl" ] && "$ctl" --socket "$root/run/crust/crust.sock" version >/dev/null 2>&1; then
    log "removing crust's pods"
    "$ctl" --socket "$root/run/crust/crust.sock" rmp --all >/dev/null ||
      log "warning: some pods could not be removed"
  fi
  sysctl_run disable --now crust.service || true
  rm -f "$wants" "$unit" "$root/usr/local/bin/crustd" "$root/usr/local/bin/crustctl" \
    "$root/usr/local/bin/crust-monitor"
  if [ -f "$root/etc/crictl.yaml" ] && cmp -s "$here/crictl.yaml" "$root/etc/crictl.yaml"; then
    rm -f "$root/etc/crictl.yaml"
  fi
  sysctl_run daemon-reload
  if [ "$purge" = 1 ]; then
    rm -rf "$root/etc/crust" "$root/var/lib/crust"
    log "removed crust with its config and data"
  else
    log "removed crust; kept $root/etc/crust and $root/var/lib/crust (--purge removes them)"
  fi
}

case "$action" in
  install) do_install ;;
  uninstall) do_uninstall ;;
esac
