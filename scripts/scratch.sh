# Sourced by the benchmarks and stress.sh. scratch_cleanup is the end of a scratch run: it ends
# the processes the script started (the `pids` array), unmounts what they left under the work
# dir, removes the cgroups under the given parents, and the work dir itself.
#   scratch_cleanup WORK_DIR CGROUP_PREFIX
scratch_cleanup() {
  local work=$1 prefix=$2 p h
  set +e +o pipefail
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  grep -E " ($work)[^ ]* " /proc/self/mountinfo | awk '{print $5}' | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  for h in /sys/fs/cgroup/*/"$prefix"* /sys/fs/cgroup/"$prefix"*; do
    [ -d "$h" ] && find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  rm -rf "$work"
  return 0
}

# The benchmarks' common start: a free port on 127.0.0.1, and the local registry there with the
# test images (its pid appended to `pids`).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
#   start_registry DIR   (sets PORT)
start_registry() {
  PORT=$(free_port)
  tests/fixtures/registry.sh "$PORT" "$1" >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
  tests/fixtures/build-images.sh "127.0.0.1:$PORT" >/dev/null
}
