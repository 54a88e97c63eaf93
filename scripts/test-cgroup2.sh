#!/usr/bin/env bash
# The cgroup-sensitive end-to-end tests on a pure cgroup v2 hierarchy, inside a throw-away qemu
# guest (this machine's own hierarchy is v1 hybrid and belongs to its services, so crust's v2
# path is proven in a kernel of its own). The guest boots Debian's kernel with a busybox
# initramfs, mounts only cgroup2, sees this machine's /usr and /etc read-only, and runs the test
# binaries built here; it has no network device, so the registry and everything else run on its
# loopback. Under software emulation it is 5-50x slower: time limits are scaled, not waits.
#   scripts/test-cgroup2.sh [TEST-NAME-FILTER...]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

need=(qemu-system-x86 kmod cpio xz-utils)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

VM=$PWD/target/vm
mkdir -p "$VM"
cp ci/vm/init ci/vm/init2 "$VM/"
[ -s "$VM/initrd.img" ] && [ "$VM/initrd.img" -nt ci/vm/init2 ] && [ "$VM/initrd.img" -nt ci/vm/init ] ||
  P=$VM bash ci/vm/build-initramfs.sh >/dev/null 2>&1

cargo build --workspace --bins -q
exe() { cargo test -p crust-e2e --no-run --message-format=json 2>/dev/null |
  grep -o "\"executable\":\"[^\"]*/$1-[^\"]*\"" | cut -d'"' -f4 | head -n 1; }
LIFECYCLE=$(exe lifecycle)
STATS=$(exe exec_logs_stats)
SECURITY=$(exe security)
STREAMING=$(exe streaming)
[ -n "$LIFECYCLE" ] && [ -n "$STATS" ] && [ -n "$SECURITY" ] && [ -n "$STREAMING" ] ||
  { echo "test-cgroup2: test binaries not found" >&2; exit 1; }

# By default every pod/container lifecycle test (pod and container cgroups, limits, resizes, the
# systemd driver's tree, PID namespaces, sysctls), every exec/log/stats/events test (exec
# joining the container's cgroup, cgroup v2 stats) and the security tests whose enforcement
# differs on v2 (the device cgroup is an eBPF program there) and the streaming execs (which
# join the container's v2 cgroup); arguments narrow it to matching names.
FILTERS=("$@")
SECURITY_FILTERS=("${FILTERS[@]+${FILTERS[@]}}")
STREAMING_FILTERS=("${FILTERS[@]+${FILTERS[@]}}")
[ ${#FILTERS[@]} -gt 0 ] || SECURITY_FILTERS=(devices_and_cdi privileged_needs)
[ ${#FILTERS[@]} -gt 0 ] || STREAMING_FILTERS=(exec_streams exec_with_a_terminal)
cat >"$VM/guest-tests.sh" <<SH
set -u
echo "cgroup hierarchy in the guest: \$(stat -f -c %T /sys/fs/cgroup)"
[ "\$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ] || exit 3
rc=0
$LIFECYCLE --test-threads=1 ${FILTERS[*]+${FILTERS[*]}} || rc=1
$STATS --test-threads=1 ${FILTERS[*]+${FILTERS[*]}} || rc=1
$SECURITY --test-threads=1 ${SECURITY_FILTERS[*]} || rc=1
$STREAMING --test-threads=1 ${STREAMING_FILTERS[*]} || rc=1
exit \$rc
SH
P=$VM KT_OUT=file bash ci/vm/kvm-run.sh -t 1800 -s "$PWD" -C "$PWD" \
  -e CRUST_BIN_DIR="$PWD/target/debug" -e E2E_TIMEOUT_SCALE=10 -- sh "$VM/guest-tests.sh"
