# Sourced by bench.sh and stress.sh: the end of a scratch run. Ends the processes the script
# started (the `pids` array), unmounts what they left under the work dir, removes the cgroups
# under the given parents, and the work dir itself.
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
