#!/bin/sh
# The installer pod on each node: installs crust with install.sh against the host's root,
# labels the node once crust answers, then waits. When it is stopped because its DaemonSet is
# being deleted (helm uninstall), it takes crust off the node again. It is not a Helm hook
# Job on purpose: a Job runs on one node, and every node must be cleaned.
set -eu
systemctl="nsenter -t 1 -m -u -i -n -p -- systemctl"
opts="--root /host --bin /opt/crust --config /etc/crust-chart/config.toml"
[ "$CRUST_OVERWRITE_CONFIG" = true ] && opts="$opts --force-config"
[ -f /etc/crust-credentials/.dockerconfigjson ] && opts="$opts --credentials /etc/crust-credentials/.dockerconfigjson"
[ -s /etc/crust-chart/crust.env ] && opts="$opts --env /etc/crust-chart/crust.env"
[ "$CRUST_SWITCH_KUBELET" = true ] && opts="$opts --switch-kubelet"

# shellcheck disable=SC2086 # opts is a list of words
/opt/crust/install.sh $opts --systemctl "$systemctl" install

until /opt/crust/crustctl --socket /host/run/crust/crust.sock version >/dev/null 2>&1; do
  echo "agent: waiting for crust to answer on /run/crust/crust.sock"
  sleep 2
done
if [ "$CRUST_LABEL_NODE" = true ]; then
  /opt/crust/crustctl kube label-node "$NODE_NAME" "$CRUST_LABEL_KEY=$CRUST_LABEL_VALUE"
fi
touch /tmp/crust-installed
echo "agent: crust is installed and answering on $NODE_NAME"

cleanup() {
  if [ "$CRUST_UNINSTALL" = true ] &&
    /opt/crust/crustctl kube daemonset-deleted "$POD_NAMESPACE" "$CRUST_DAEMONSET"; then
    echo "agent: the DaemonSet is being deleted: removing crust from $NODE_NAME"
    [ "$CRUST_LABEL_NODE" = true ] &&
      /opt/crust/crustctl kube label-node "$NODE_NAME" "$CRUST_LABEL_KEY-" || true
    purge=""
    [ "$CRUST_PURGE" = true ] && purge="--purge"
    # shellcheck disable=SC2086
    /opt/crust/install.sh --root /host $purge --systemctl "$systemctl" uninstall
  fi
  exit 0
}
trap cleanup TERM INT
while :; do
  sleep 3600 &
  wait $! || true
done
