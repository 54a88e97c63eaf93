//! Host ports crust publishes itself, as CRI-O's hostport manager does, when the pod's CNI
//! network has no plugin with the `portMappings` capability (crust's shipped network has none).
//!
//! The `portmap` plugin writes its rules with a series of `iptables` processes, each loading the
//! whole nat table: about 50 ms to add a pod's ports and 90 ms to remove them here, more than
//! the rest of a `crustctl run -p`. crust writes one chain per pod with a single
//! `iptables-restore --noflush` (one process, one atomic commit) when the pod starts and another
//! when it stops. The rules live in the kernel, so published ports keep working while crustd
//! restarts, like the pods themselves.
//!
//! Layout in the nat table:
//! - `CRUST-HOSTPORTS`, jumped to from PREROUTING (traffic from other hosts and from pods) and
//!   OUTPUT (traffic from this host) for packets addressed to a local address, holds one jump
//!   per pod to
//! - `CRUST-HP-<pod id prefix>`: per port, DNAT to the pod's address; packets from 127.0.0.0/8
//!   or from the pod's own subnet (the pod itself, or a pod on the same bridge, which without
//!   this would get the answer straight over the bridge from an address it did not call) are
//!   marked first, because the pod must answer them through the host:
//! - `CRUST-HOSTPORTS-MASQ`, jumped to from POSTROUTING, masquerades marked packets. Nothing
//!   else is masqueraded, and nothing leaves the host.
//!
//! IPv4 only: a pod's IPv6 address gets no host ports (the host IP of a mapping must be empty,
//! `0.0.0.0` or an IPv4 address).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use super::PortMapping;

/// The chain every pod's chain hangs from.
const DISPATCH: &str = "CRUST-HOSTPORTS";
/// The chain that masquerades what [`MASQ_MARK`] marks.
const MASQ: &str = "CRUST-HOSTPORTS-MASQ";
/// The packet mark meaning "masquerade this": the bit `portmap` uses for the same purpose,
/// clear of kube-proxy's (0x4000) and kubelet's (0x8000).
const MASQ_MARK: &str = "0x2000/0x2000";

#[derive(Debug, thiserror::Error)]
pub enum HostPortError {
    #[error("host port {port}: {why}")]
    Invalid { port: String, why: String },
    #[error(
        "{tool} is not installed (crust writes host ports with it; or put the portmap plugin in the CNI config)"
    )]
    Missing { tool: &'static str },
    #[error("{tool} {what} failed: {message}")]
    Rules {
        tool: &'static str,
        what: String,
        message: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// A pod's chain: 9 + 16 characters, within iptables' 28.
pub fn pod_chain(pod_id: &str) -> String {
    let prefix: String = pod_id.chars().take(16).collect();
    format!("CRUST-HP-{prefix}")
}

/// The address a mapping publishes on: None for every local address.
fn host_address(m: &PortMapping) -> Result<Option<Ipv4Addr>, HostPortError> {
    match m.host_ip.as_str() {
        "" | "0.0.0.0" => Ok(None),
        ip => ip.parse().map(Some).map_err(|_| HostPortError::Invalid {
            port: describe(m),
            why: format!("host IP {ip:?} is not an IPv4 address (crust publishes IPv4 only)"),
        }),
    }
}

fn describe(m: &PortMapping) -> String {
    match m.host_ip.as_str() {
        "" => format!("{}/{}", m.host_port, m.protocol),
        ip => format!("{ip}:{}/{}", m.host_port, m.protocol),
    }
}

fn port(m: &PortMapping, n: i32, which: &str) -> Result<u16, HostPortError> {
    u16::try_from(n)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| HostPortError::Invalid {
            port: describe(m),
            why: format!("{which} port {n} is not between 1 and 65535"),
        })
}

/// The `iptables-restore` input that publishes `mappings` on the pod at `pod_ip`.
pub fn add_rules(
    pod_id: &str,
    pod_ip: Ipv4Addr,
    pod_subnet: &str,
    mappings: &[PortMapping],
) -> Result<String, HostPortError> {
    let chain = pod_chain(pod_id);
    let mut out = format!("*nat\n:{chain} - [0:0]\n");
    for m in mappings {
        let proto = match m.protocol.to_ascii_lowercase().as_str() {
            p @ ("tcp" | "udp" | "sctp") => p.to_string(),
            other => {
                return Err(HostPortError::Invalid {
                    port: describe(m),
                    why: format!("protocol {other:?} is not tcp, udp or sctp"),
                });
            }
        };
        let host_port = port(m, m.host_port, "host")?;
        let container_port = port(m, m.container_port, "container")?;
        let dest = host_address(m)?
            .map(|a| format!(" -d {a}/32"))
            .unwrap_or_default();
        let select = format!("-A {chain}{dest} -p {proto} -m {proto} --dport {host_port}");
        // From the host's loopback, and from the pod's subnet: the pod's answer must go back
        // through the host, which only a source rewritten to the host's address guarantees.
        out.push_str(&format!(
            "{select} -s 127.0.0.0/8 -j MARK --set-xmark {MASQ_MARK}\n"
        ));
        out.push_str(&format!(
            "{select} -s {pod_subnet} -j MARK --set-xmark {MASQ_MARK}\n"
        ));
        out.push_str(&format!(
            "{select} -j DNAT --to-destination {pod_ip}:{container_port}\n"
        ));
    }
    out.push_str(&format!("-A {DISPATCH} -j {chain}\nCOMMIT\n"));
    Ok(out)
}

/// The IPv4 subnet `pod_ip` is on, as `A.B.C.D/N`, from the `ips` of a CNI result (whose
/// `address` is the pod's address with the subnet's prefix length); the address alone when the
/// result does not say.
pub fn pod_subnet(result: &serde_json::Value, pod_ip: Ipv4Addr) -> String {
    let prefix = result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str()?.split_once('/'))
        .find(|(addr, _)| addr.parse() == Ok(pod_ip))
        .and_then(|(_, len)| len.parse::<u32>().ok())
        .filter(|len| *len <= 32)
        .unwrap_or(32);
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    format!("{}/{prefix}", Ipv4Addr::from(u32::from(pod_ip) & mask))
}

/// The `iptables-restore` input that takes the pod's ports down.
pub fn remove_rules(pod_id: &str) -> String {
    let chain = pod_chain(pod_id);
    format!("*nat\n-D {DISPATCH} -j {chain}\n-F {chain}\n-X {chain}\nCOMMIT\n")
}

/// The rules that hang crust's chains from the nat table's hooks, as `iptables` arguments.
fn base_rules() -> [Vec<&'static str>; 4] {
    let local = |hook| {
        vec![
            hook,
            "-m",
            "addrtype",
            "--dst-type",
            "LOCAL",
            "-j",
            DISPATCH,
        ]
    };
    [
        local("PREROUTING"),
        local("OUTPUT"),
        vec!["POSTROUTING", "-j", MASQ],
        vec![MASQ, "-m", "mark", "--mark", MASQ_MARK, "-j", "MASQUERADE"],
    ]
}

/// Writes host ports with the host's `iptables` tools (whichever backend they use).
#[derive(Debug, Default)]
pub struct HostPorts {
    /// Whether this process has made sure of the base chains and hooks.
    base_ready: tokio::sync::Mutex<bool>,
}

impl HostPorts {
    /// Publishes `mappings` on the pod at `pod_ip`. `host_ifaces` are the host side of the
    /// pod's network (its bridge, its veth), which must route 127.0.0.0/8 sources for the
    /// ports to answer on the host's loopback.
    pub async fn add(
        &self,
        pod_id: &str,
        (pod_ip, pod_subnet): (Ipv4Addr, &str),
        host_ifaces: &[String],
        mappings: &[PortMapping],
    ) -> Result<(), HostPortError> {
        let started = std::time::Instant::now();
        let rules = add_rules(pod_id, pod_ip, pod_subnet, mappings)?;
        self.ensure_base().await?;
        for iface in host_ifaces {
            allow_loopback_sources(iface)?;
        }
        restore(&rules, "adding the pod's chain").await?;
        forget_stale_udp_flows(pod_id, mappings).await;
        tracing::debug!(
            pod = pod_id,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "host ports added"
        );
        Ok(())
    }

    /// Takes a pod's host ports down; Ok when it has none (already removed, or never had).
    pub async fn remove(&self, pod_id: &str) -> Result<(), HostPortError> {
        let started = std::time::Instant::now();
        match restore(&remove_rules(pod_id), "removing the pod's chain").await {
            Ok(()) => {
                let ms = started.elapsed().as_secs_f64() * 1e3;
                tracing::debug!(pod = pod_id, ms, "host ports removed");
                Ok(())
            }
            Err(e) if !chain_exists(&pod_chain(pod_id)).await? => {
                tracing::debug!(pod = pod_id, err = %e, "no host ports to remove");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Creates crust's chains and hooks where missing (another crustd, or this one before a
    /// restart, may have made them: each step checks first).
    async fn ensure_base(&self) -> Result<(), HostPortError> {
        let mut ready = self.base_ready.lock().await;
        if *ready {
            return Ok(());
        }
        for chain in [DISPATCH, MASQ] {
            if !chain_exists(chain).await? {
                // A concurrent crustd may create it between the check and here.
                let (ok, message) = iptables(&["-N", chain]).await?;
                if !ok && !chain_exists(chain).await? {
                    return Err(HostPortError::Rules {
                        tool: "iptables",
                        what: format!("creating chain {chain}"),
                        message,
                    });
                }
            }
        }
        for rule in base_rules() {
            let (present, _) = iptables(&[&["-C"], &rule[..]].concat()).await?;
            if !present {
                let (ok, message) = iptables(&[&["-A"], &rule[..]].concat()).await?;
                if !ok {
                    return Err(HostPortError::Rules {
                        tool: "iptables",
                        what: format!("adding {}", rule.join(" ")),
                        message,
                    });
                }
            }
        }
        *ready = true;
        Ok(())
    }
}

/// Deletes the conntrack entries UDP clients of the pod's UDP host ports made before the rules
/// existed (see [`super::conntrack`]). As with `portmap`, a failure is reported, not fatal: the
/// ports are published, and only a flow that was already sending is affected.
async fn forget_stale_udp_flows(pod_id: &str, mappings: &[PortMapping]) {
    let mut ports: Vec<u16> = mappings
        .iter()
        .filter(|m| m.protocol.eq_ignore_ascii_case("udp"))
        .filter_map(|m| u16::try_from(m.host_port).ok())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    for port in ports {
        match tokio::task::spawn_blocking(move || super::conntrack::forget_udp_flows(port)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::debug!(pod = pod_id, port, n, "stale UDP flows forgotten"),
            Ok(Err(e)) => {
                tracing::warn!(pod = pod_id, port, err = %e, "stale UDP flows not forgotten")
            }
            Err(e) => tracing::warn!(pod = pod_id, port, err = %e, "conntrack task failed"),
        }
    }
}

/// `net.ipv4.conf.<iface>.route_localnet = 1`: packets from 127.0.0.1 DNATed to a pod may leave
/// through this interface (the kernel drops them as martians otherwise). What `portmap` sets too.
fn allow_loopback_sources(iface: &str) -> Result<(), HostPortError> {
    if iface.is_empty() || iface.contains('/') || iface.starts_with('.') {
        return Ok(());
    }
    let path = Path::new("/proc/sys/net/ipv4/conf")
        .join(iface)
        .join("route_localnet");
    match std::fs::read_to_string(&path) {
        Ok(v) if v.trim() == "1" => Ok(()),
        // The interface went away (a veth of a pod stopped meanwhile): nothing to allow.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        _ => std::fs::write(&path, "1").map_err(|source| HostPortError::Io {
            context: format!("write {}", path.display()),
            source,
        }),
    }
}

async fn chain_exists(chain: &str) -> Result<bool, HostPortError> {
    Ok(iptables(&["-S", chain]).await?.0)
}

/// `iptables -w -t nat ARGS`: whether it succeeded, and its stderr.
async fn iptables(args: &[&str]) -> Result<(bool, String), HostPortError> {
    let out = tokio::process::Command::new("iptables")
        .args(["-w", "-t", "nat"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| missing_or_io("iptables", source))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    ))
}

/// One atomic commit of `rules` to the nat table, leaving every other rule alone.
async fn restore(rules: &str, what: &str) -> Result<(), HostPortError> {
    let mut child = tokio::process::Command::new("iptables-restore")
        .args(["-w", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| missing_or_io("iptables-restore", source))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(rules.as_bytes())
            .await
            .map_err(|source| HostPortError::Io {
                context: "write to iptables-restore".into(),
                source,
            })?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|source| HostPortError::Io {
            context: "wait for iptables-restore".into(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(HostPortError::Rules {
            tool: "iptables-restore",
            what: what.to_string(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn missing_or_io(tool: &'static str, source: std::io::Error) -> HostPortError {
    if source.kind() == std::io::ErrorKind::NotFound {
        HostPortError::Missing { tool }
    } else {
        HostPortError::Io {
            context: format!("run {tool}"),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(host_ip: &str, host: i32, container: i32, proto: &str) -> PortMapping {
        PortMapping {
            host_port: host,
            container_port: container,
            protocol: proto.into(),
            host_ip: host_ip.into(),
        }
    }

    #[test]
    fn a_pods_chain_dnats_each_port_and_marks_what_must_be_masqueraded() {
        let id = "0123456789abcdef0123456789abcdef";
        let rules = add_rules(
            id,
            "10.85.0.7".parse().unwrap(),
            "10.85.0.0/24",
            &[
                mapping("", 8080, 80, "tcp"),
                mapping("127.0.0.1", 5353, 53, "UDP"),
            ],
        )
        .unwrap();
        let chain = "CRUST-HP-0123456789abcdef";
        assert!(rules.starts_with(&format!("*nat\n:{chain} - [0:0]\n")));
        assert!(rules.contains(&format!(
            "-A {chain} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.85.0.7:80\n"
        )));
        assert!(rules.contains(&format!(
            "-A {chain} -p tcp -m tcp --dport 8080 -s 127.0.0.0/8 -j MARK --set-xmark 0x2000/0x2000\n"
        )));
        assert!(rules.contains(&format!(
            "-A {chain} -p tcp -m tcp --dport 8080 -s 10.85.0.0/24 -j MARK --set-xmark 0x2000/0x2000\n"
        )));
        assert!(rules.contains(&format!(
            "-A {chain} -d 127.0.0.1/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 10.85.0.7:53\n"
        )));
        assert!(rules.ends_with(&format!("-A CRUST-HOSTPORTS -j {chain}\nCOMMIT\n")));
        assert_eq!(
            remove_rules(id),
            format!("*nat\n-D CRUST-HOSTPORTS -j {chain}\n-F {chain}\n-X {chain}\nCOMMIT\n")
        );
    }

    #[test]
    fn the_subnet_comes_from_the_cni_result() {
        let ip = "10.85.0.7".parse().unwrap();
        let result = serde_json::json!({"ips": [
            {"address": "fd00::7/64"}, {"address": "10.85.0.7/24", "gateway": "10.85.0.1"}
        ]});
        assert_eq!(pod_subnet(&result, ip), "10.85.0.0/24");
        assert_eq!(pod_subnet(&serde_json::json!({}), ip), "10.85.0.7/32");
        let whole = serde_json::json!({"ips": [{"address": "10.85.0.7/0"}]});
        assert_eq!(pod_subnet(&whole, ip), "0.0.0.0/0");
    }

    #[test]
    fn bad_mappings_are_named() {
        let ip = "10.85.0.7".parse().unwrap();
        let err = |m| {
            add_rules("ab", ip, "10.85.0.7/32", &[m])
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(mapping("", 70000, 80, "tcp")),
            "host port 70000/tcp: host port 70000 is not between 1 and 65535"
        );
        assert_eq!(
            err(mapping("::1", 80, 80, "tcp")),
            "host port ::1:80/tcp: host IP \"::1\" is not an IPv4 address (crust publishes IPv4 only)"
        );
        assert_eq!(
            err(mapping("", 80, 80, "icmp")),
            "host port 80/icmp: protocol \"icmp\" is not tcp, udp or sctp"
        );
    }
}
