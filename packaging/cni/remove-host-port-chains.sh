#!/usr/bin/env bash
# Removes the nat chains crust hangs its own host ports from (CRUST-HOSTPORTS and
# CRUST-HOSTPORTS-MASQ, with their jumps from PREROUTING, OUTPUT and POSTROUTING) once no pod's
# chain (CRUST-HP-*) is left: they stay when crustd stops, as the portmap plugin's do. With pods
# still publishing ports it changes nothing and says so.
set -euo pipefail
ipt() { iptables -w -t nat "$@"; }
if ! ipt -S CRUST-HOSTPORTS >/dev/null 2>&1 && ! ipt -S CRUST-HOSTPORTS-MASQ >/dev/null 2>&1; then
  echo "no crust host port chains"
  exit 0
fi
pods=$(ipt -S | grep -c '^-N CRUST-HP-' || true)
if [ "$pods" -gt 0 ]; then
  echo "$pods pod(s) still publish host ports through crust; nothing removed"
  exit 0
fi
# Each jump as crustd adds it (runtime/src/network/hostport.rs); -D until none is left, since
# two crustd starting at once may each have added one.
for rule in "PREROUTING -m addrtype --dst-type LOCAL -j CRUST-HOSTPORTS" \
  "OUTPUT -m addrtype --dst-type LOCAL -j CRUST-HOSTPORTS" \
  "POSTROUTING -j CRUST-HOSTPORTS-MASQ"; do
  # shellcheck disable=SC2086 # the rule is words
  while ipt -C $rule 2>/dev/null; do ipt -D $rule; done
done
for chain in CRUST-HOSTPORTS CRUST-HOSTPORTS-MASQ; do
  if ipt -S "$chain" >/dev/null 2>&1; then
    ipt -F "$chain"
    ipt -X "$chain"
  fi
done
echo "crust host port chains removed"
