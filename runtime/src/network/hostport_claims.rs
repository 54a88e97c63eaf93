//! Which pod holds which host port, so that two pods never publish the same one.
//!
//! A pod's record only shows its ports once its RunPodSandbox has finished, and a pod being set
//! up is locked, so a check that read the records alone let two pods asking for the same port
//! at the same instant both through (their rules then fight over it). RunPodSandbox instead
//! checks and claims under one lock, before CNI ADD, and the claim lasts until the pod's network
//! is deleted or its setup undone. Claims live in memory: after a restart the pods' records (checked by the engine
//! beside the claims) say who holds what.

use std::collections::HashMap;
use std::sync::Mutex;

use super::PortMapping;

/// A port some pod holds, for the "already allocated" message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldPort {
    pub pod_id: String,
    pub pod_name: String,
    pub mapping: PortMapping,
}

/// A port asked for that another pod holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConflict {
    pub wanted: PortMapping,
    pub held: HeldPort,
}

#[derive(Debug, Default)]
pub struct HostPortClaims(Mutex<HashMap<String, (String, Vec<PortMapping>)>>);

/// Whether two mappings publish the same port: same protocol and number, on the same host
/// address or where either takes every address.
pub fn overlap(a: &PortMapping, b: &PortMapping) -> bool {
    let any = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
    a.host_port == b.host_port
        && a.protocol.eq_ignore_ascii_case(&b.protocol)
        && (any(&a.host_ip) || any(&b.host_ip) || a.host_ip == b.host_ip)
}

impl HostPortClaims {
    /// Claims `mappings` for pod `pod_id`, unless one overlaps a port held by another pod: by
    /// its claim, or as one of `published` (the recorded ports of pods that may hold ports
    /// without a claim, as after a restart).
    pub fn claim(
        &self,
        pod_id: &str,
        pod_name: &str,
        mappings: &[PortMapping],
        published: &[HeldPort],
    ) -> Result<(), Box<PortConflict>> {
        if mappings.is_empty() {
            return Ok(());
        }
        let mut claims = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let claimed = claims
            .iter()
            .filter(|(id, _)| id.as_str() != pod_id)
            .flat_map(|(id, (name, ms))| {
                ms.iter().map(move |m| HeldPort {
                    pod_id: id.clone(),
                    pod_name: name.clone(),
                    mapping: m.clone(),
                })
            });
        let held: Vec<HeldPort> = claimed
            .chain(published.iter().filter(|h| h.pod_id != pod_id).cloned())
            .collect();
        for m in mappings {
            if let Some(h) = held.iter().find(|h| overlap(&h.mapping, m)) {
                return Err(Box::new(PortConflict {
                    wanted: m.clone(),
                    held: h.clone(),
                }));
            }
        }
        claims.insert(
            pod_id.to_string(),
            (pod_name.to_string(), mappings.to_vec()),
        );
        Ok(())
    }

    /// Gives up whatever pod `pod_id` claimed.
    pub fn release(&self, pod_id: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(pod_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(host_ip: &str, port: i32, proto: &str) -> PortMapping {
        PortMapping {
            host_port: port,
            container_port: 80,
            protocol: proto.into(),
            host_ip: host_ip.into(),
        }
    }

    #[test]
    fn the_second_claim_of_a_port_is_refused_until_the_first_is_released() {
        let claims = HostPortClaims::default();
        claims
            .claim("a", "web", &[m("", 8080, "tcp")], &[])
            .unwrap();
        let PortConflict { wanted, held } = *claims
            .claim("b", "web2", &[m("127.0.0.1", 8080, "TCP")], &[])
            .unwrap_err();
        assert_eq!(wanted.host_ip, "127.0.0.1");
        assert_eq!((held.pod_id.as_str(), held.pod_name.as_str()), ("a", "web"));
        // Another protocol, port or address is free.
        claims
            .claim("c", "dns", &[m("", 8080, "udp")], &[])
            .unwrap();
        claims
            .claim("d", "alt", &[m("", 8081, "tcp")], &[])
            .unwrap();
        claims.release("a");
        claims
            .claim("b", "web2", &[m("127.0.0.1", 8080, "tcp")], &[])
            .unwrap();
        // Two specific addresses do not overlap.
        claims
            .claim("e", "other", &[m("10.0.0.1", 8080, "tcp")], &[])
            .unwrap();
    }

    #[test]
    fn recorded_ports_count_too() {
        let claims = HostPortClaims::default();
        let published = [HeldPort {
            pod_id: "old".into(),
            pod_name: "restored".into(),
            mapping: m("", 9000, "tcp"),
        }];
        let PortConflict { held, .. } = *claims
            .claim("a", "x", &[m("", 9000, "tcp")], &published)
            .unwrap_err();
        assert_eq!(held.pod_id, "old");
        // A pod's own record is no conflict (a retried setup).
        claims
            .claim("old", "restored", &[m("", 9000, "tcp")], &published)
            .unwrap();
        claims.release("old");
        claims.claim("a", "x", &[m("", 9000, "tcp")], &[]).unwrap();
    }

    #[test]
    fn claims_made_at_once_from_many_threads_give_each_port_to_one_pod() {
        let claims = std::sync::Arc::new(HostPortClaims::default());
        let winners: usize = (0..16)
            .map(|i| {
                let claims = claims.clone();
                std::thread::spawn(move || {
                    claims
                        .claim(&format!("p{i}"), "p", &[m("", 7000, "tcp")], &[])
                        .is_ok() as usize
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(winners, 1);
    }
}
