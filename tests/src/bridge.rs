//! A CNI bridge network owned by one test (Debian's bridge, host-local and portmap plugins): a
//! private subnet with no gateway, no masquerading and ip_forward left off, so nothing is routed
//! anywhere but between the test's own pods and this host.

use std::process::Command;

use crate::{Cri, Daemon, cri};

/// The network's name in the conflist, and so host-local's lease directory.
pub const NETWORK: &str = "crust-e2e";

/// The bridge device is deleted on drop.
pub struct Bridge {
    pub name: String,
    /// The /24's first three octets, e.g. `10.251.42`.
    pub subnet_prefix: String,
    ipam_dir: std::path::PathBuf,
}

impl Bridge {
    /// Writes the conflist into the daemon's CNI conf dir; crustd picks it up on its own.
    pub fn new(d: &Daemon) -> Bridge {
        Bridge::make(d, true)
    }

    /// The same network without the portmap plugin: crust publishes host ports itself.
    pub fn without_portmap(d: &Daemon) -> Bridge {
        Bridge::make(d, false)
    }

    fn make(d: &Daemon, portmap: bool) -> Bridge {
        let n: u8 = rand::random::<u8>() % 200 + 20;
        let b = Bridge {
            name: format!("crust{:08x}", rand::random::<u32>()),
            subnet_prefix: format!("10.251.{n}"),
            ipam_dir: d.dir.path().join("ipam"),
        };
        std::fs::create_dir_all(d.cni_dir()).unwrap();
        let mut conf = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": b.name,
                    "isGateway": false,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": format!("{}.0/24", b.subnet_prefix)}]],
                        "dataDir": b.ipam_dir,
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        });
        if !portmap {
            conf["plugins"].as_array_mut().unwrap().pop();
        }
        std::fs::write(d.cni_dir().join("10-e2e.conflist"), conf.to_string()).unwrap();
        b
    }

    /// The host side veths plugged into the bridge (none before the first pod).
    pub fn veths(&self) -> Vec<String> {
        std::fs::read_dir(format!("/sys/class/net/{}/brif", self.name))
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The addresses host-local has handed out and not yet released (one lease file each).
    pub fn leases(&self) -> Vec<String> {
        std::fs::read_dir(self.ipam_dir.join(NETWORK))
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&self.subnet_prefix))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // Not every test makes its bridge (no pod ran): a missing one is fine.
        let _ = Command::new("ip")
            .args(["link", "del", &self.name])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Whether crustd reports the NetworkReady condition (it has found a CNI config).
pub async fn network_ready(c: &mut Cri) -> bool {
    c.rt.status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .conditions
        .iter()
        .any(|x| x.r#type == "NetworkReady" && x.status)
}
