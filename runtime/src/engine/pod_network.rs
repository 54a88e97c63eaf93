//! The pod's network: CNI ADD, CHECK and DEL through the configured chain, and the host ports
//! crust publishes itself when that chain has no portmap plugin.

use crust_proto::cri;

use super::Engine;
use crate::error::{Error, Result};
use crate::network::{HeldPort, PortMapping};
use crate::pod;
use crate::store::PodRecord;

impl Engine {
    /// Whether pod networking is ready: the CNI network name, or why not.
    pub fn network_status(&self) -> std::result::Result<String, String> {
        let Some(cni) = &self.cfg.cni else {
            return Err(
                "CNI is not configured: pods get a private network namespace with loopback only"
                    .into(),
            );
        };
        cni.load().map(|l| l.name).map_err(|e| e.to_string())
    }

    pub(super) fn cni_args(&self, rec: &PodRecord) -> crate::network::cni::PodArgs {
        let meta = rec.config.metadata.clone().unwrap_or_default();
        let port_mappings = rec
            .config
            .port_mappings
            .iter()
            .filter(|p| p.host_port > 0)
            .map(|p| crate::network::PortMapping {
                host_port: p.host_port,
                container_port: p.container_port,
                protocol: match cri::Protocol::try_from(p.protocol) {
                    Ok(cri::Protocol::Udp) => "udp".into(),
                    Ok(cri::Protocol::Sctp) => "sctp".into(),
                    _ => "tcp".into(),
                },
                host_ip: p.host_ip.clone(),
            })
            .collect();
        let dns = rec.config.dns_config.as_ref().map(|d| {
            serde_json::json!({"servers": d.servers, "searches": d.searches, "options": d.options})
        });
        // Validated in run_pod; a bad value here (an old record) just goes unlimited.
        let bandwidth = crate::network::cni::bandwidth_from_annotations(&rec.config.annotations)
            .ok()
            .flatten();
        crate::network::cni::PodArgs {
            bandwidth,
            pod_id: rec.id.clone(),
            pod_name: meta.name,
            pod_namespace: meta.namespace,
            pod_uid: meta.uid,
            // A netns that is gone (unmounted under the pod) is passed as none, which the CNI
            // spec lets DEL treat as "nothing left to tear down in the namespace".
            netns: {
                let path = self.netns_path(&rec.id);
                if crate::monitor::pin::is_pinned(&path) {
                    path.display().to_string()
                } else {
                    String::new()
                }
            },
            port_mappings,
            dns,
        }
    }

    /// CNI ADD into the pod's network namespace. Without any CNI configuration the pod keeps
    /// its loopback-only namespace (and Status reports NetworkReady=false).
    pub(super) async fn network_add(&self, rec: &mut PodRecord) -> Result<()> {
        let Some(cni) = &self.cfg.cni else {
            return Ok(());
        };
        let list = match cni.load() {
            Ok(l) => l,
            Err(crate::network::CniError::NoConfig(dir)) => {
                tracing::warn!(pod = %rec.id, dir, "no CNI config; the pod gets loopback only");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let args = self.cni_args(rec);
        self.claim_host_ports(rec, &args.port_mappings)?;
        let mut net = match cni.add(&list, &args).await {
            Ok(net) => net,
            Err(e) => {
                self.host_port_claims.release(&rec.id);
                return Err(e.into());
            }
        };
        tracing::info!(pod = %rec.id, network = %net.network, ips = ?net.ips, "pod network added");
        net.host_ports_by_crust = !net.port_mappings.is_empty() && !list.publishes_ports();
        // Recorded before anything else can fail, so a failed setup still releases the IP
        // (and removes whatever host ports were published).
        rec.network = Some(net.clone());
        if net.host_ports_by_crust {
            let ip = net
                .ips
                .iter()
                .find_map(|ip| ip.parse::<std::net::Ipv4Addr>().ok())
                .ok_or_else(|| {
                    Error::FailedPrecondition(format!(
                        "host ports need an IPv4 pod address; network {} gave {:?}",
                        net.network, net.ips
                    ))
                })?;
            let ifaces = crate::network::cni::host_interfaces(&net.result);
            let subnet = crate::network::hostport::pod_subnet(&net.result, ip);
            self.host_ports
                .add(&rec.id, (ip, &subnet), &ifaces, &net.port_mappings)
                .await?;
        }
        let ip = rec.network.as_ref().and_then(|n| n.ips.first().cloned());
        let dir = self.pod_dir(&rec.id);
        pod::write_files(
            &dir,
            &rec.hostname,
            rec.config.dns_config.as_ref(),
            false,
            ip.as_deref(),
        )
    }

    /// CNI CHECK of a pod's network: Ok(None) when the pod has none to check.
    pub async fn check_network(&self, id: &str) -> Result<Option<String>> {
        let rec = self.pod(id).await?;
        let (Some(cni), Some(net)) = (&self.cfg.cni, &rec.network) else {
            return Ok(None);
        };
        let list = cni.load()?;
        cni.check(&list, &self.cni_args(&rec), &net.result).await?;
        Ok(Some(list.name))
    }

    /// CNI DEL for a pod that has a network; forgets it once DEL succeeded.
    pub(super) async fn network_del(&self, rec: &mut PodRecord) -> Result<()> {
        let (Some(cni), Some(net)) = (&self.cfg.cni, &rec.network) else {
            return Ok(());
        };
        let list = match cni.load() {
            Ok(l) if l.name == net.network => l,
            Ok(l) => {
                tracing::warn!(pod = %rec.id, was = %net.network, now = %l.name, "CNI network changed; DEL with the current config");
                l
            }
            Err(e) => return Err(e.into()),
        };
        if net.host_ports_by_crust {
            self.host_ports.remove(&rec.id).await?;
        }
        cni.del(&list, &self.cni_args(rec), Some(&net.result))
            .await?;
        rec.network = None;
        self.host_port_claims.release(&rec.id);
        Ok(())
    }

    /// Removes the host ports crust may have published for a pod whose RunPodSandbox was cut
    /// short (its record, and so whether it did, was not kept).
    pub(super) async fn remove_host_ports(&self, rec: &PodRecord) {
        if self.cni_args(rec).port_mappings.is_empty() {
            return;
        }
        if let Err(e) = self.host_ports.remove(&rec.id).await {
            tracing::warn!(pod = %rec.id, err = %e, "removing an interrupted pod's host ports failed");
        }
    }

    /// Claims `mappings` for the pod, failing when another pod already holds one of them (same
    /// protocol and port, on an overlapping host address): the rules of both would fight over
    /// it, and Docker users expect "port is already allocated". kubelet never asks (its
    /// scheduler keeps host ports apart). The check and the claim are one step, so of two pods
    /// asking at once one gets the port; besides the claims, the records of pods not being
    /// changed right now count (claims are not kept across a restart, records are).
    fn claim_host_ports(&self, rec: &PodRecord, mappings: &[PortMapping]) -> Result<()> {
        if mappings.is_empty() {
            return Ok(());
        }
        let name_of = |rec: &PodRecord| {
            rec.config
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default()
        };
        let published: Vec<HeldPort> = self
            .store
            .all_pods()
            .iter()
            .filter_map(|other| {
                let other = other.try_lock().ok()?;
                let net = other.network.as_ref()?;
                let name = name_of(&other);
                Some(
                    net.port_mappings
                        .iter()
                        .map(|m| HeldPort {
                            pod_id: other.id.clone(),
                            pod_name: name.clone(),
                            mapping: m.clone(),
                        })
                        .collect::<Vec<_>>(),
                )
            })
            .flatten()
            .collect();
        self.host_port_claims
            .claim(&rec.id, &name_of(rec), mappings, &published)
            .map_err(|conflict| {
                let (m, held) = (conflict.wanted, conflict.held);
                let address = match m.host_ip.as_str() {
                    "" | "0.0.0.0" => String::new(),
                    ip => format!("{ip}:"),
                };
                Error::FailedPrecondition(format!(
                    "host port {address}{}/{} is already allocated to pod {} ({})",
                    m.host_port, m.protocol, held.pod_name, held.pod_id
                ))
            })
    }
}
