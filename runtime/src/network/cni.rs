//! A CNI client (spec 0.4.0 and 1.0.0 results): loads the network list, runs each plugin with
//! the CNI_* environment and the config on stdin, chains prevResult, and passes the
//! capability args (`portMappings`, `dns`) plugins ask for.

use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::Instrument;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// Where crust finds CNI configuration and plugins.
#[derive(Debug, Clone)]
pub struct CniConfig {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("no CNI network config in {0}")]
    NoConfig(String),
    #[error("CNI config {path}: {message}")]
    BadConfig { path: String, message: String },
    #[error("CNI plugin {plugin:?} not found in {dirs}")]
    PluginMissing { plugin: String, dirs: String },
    #[error("CNI plugin {plugin} {command} failed (code {code}): {message}")]
    Plugin {
        plugin: String,
        command: String,
        code: i64,
        message: String,
    },
    #[error("CNI plugin {plugin} {command} did not finish within {secs}s")]
    Timeout {
        plugin: String,
        command: String,
        secs: u64,
    },
    #[error("CNI plugin {plugin}: {source}")]
    Io {
        plugin: String,
        #[source]
        source: std::io::Error,
    },
}

/// A loaded network configuration list.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkList {
    pub name: String,
    pub cni_version: String,
    pub plugins: Vec<Value>,
    pub source: PathBuf,
}

impl NetworkList {
    /// Whether a plugin of the chain publishes host ports (asks for `portMappings`).
    pub fn publishes_ports(&self) -> bool {
        self.plugins
            .iter()
            .any(|p| p["capabilities"]["portMappings"].as_bool() == Some(true))
    }
}

/// The host side of a pod's network in a CNI result: the interfaces outside the pod (a
/// bridge, the host end of a veth).
pub fn host_interfaces(result: &Value) -> Vec<String> {
    result["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["sandbox"].as_str().is_none_or(str::is_empty))
        .filter_map(|i| i["name"].as_str().map(str::to_string))
        .collect()
}

/// One host port forwarded into the pod (the `portMappings` capability).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: i32,
    pub container_port: i32,
    pub protocol: String,
    #[serde(rename = "hostIP", skip_serializing_if = "String::is_empty", default)]
    pub host_ip: String,
}

/// Who the network is for.
#[derive(Debug, Clone, Default)]
pub struct PodArgs {
    pub pod_id: String,
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    pub netns: String,
    pub port_mappings: Vec<PortMapping>,
    pub dns: Option<Value>,
    /// The `bandwidth` capability (from the pod's kubernetes.io/*-bandwidth annotations).
    pub bandwidth: Option<Value>,
}

const INGRESS_ANNOTATION: &str = "kubernetes.io/ingress-bandwidth";
const EGRESS_ANNOTATION: &str = "kubernetes.io/egress-bandwidth";

/// Parses a Kubernetes quantity of bits per second ("10M", "500k", "1Gi", "1000").
pub fn parse_bandwidth(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(q.len());
    let (num, unit) = q.split_at(split);
    let value: f64 = num.parse().ok()?;
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bits = value * mult;
    (bits >= 1.0 && bits.is_finite()).then_some(bits as u64)
}

/// The `bandwidth` capability arg from pod annotations, as kubelet's annotations mean it
/// (bits per second; a generous burst, as containerd and CRI-O use). Invalid values are an
/// error rather than silently unlimited.
pub fn bandwidth_from_annotations(
    a: &std::collections::HashMap<String, String>,
) -> Result<Option<Value>, String> {
    const BURST: u64 = i32::MAX as u64;
    let mut bw = serde_json::Map::new();
    for (key, rate, burst) in [
        (INGRESS_ANNOTATION, "ingressRate", "ingressBurst"),
        (EGRESS_ANNOTATION, "egressRate", "egressBurst"),
    ] {
        if let Some(v) = a.get(key) {
            let bits = parse_bandwidth(v)
                .ok_or_else(|| format!("annotation {key}={v:?} is not a bandwidth quantity"))?;
            bw.insert(rate.into(), json!(bits));
            bw.insert(burst.into(), json!(BURST));
        }
    }
    Ok((!bw.is_empty()).then_some(Value::Object(bw)))
}

/// What ADD gave the pod, kept for status and for DEL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodNetwork {
    pub network: String,
    /// Pod IPs without prefix length, IPv4 first.
    pub ips: Vec<String>,
    /// The final plugin result (DEL's prevResult).
    pub result: Value,
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// Whether crust published `port_mappings` itself (the network has no portmap plugin).
    #[serde(default)]
    pub host_ports_by_crust: bool,
}

const IFNAME: &str = "eth0";
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

impl CniConfig {
    /// The first valid config file in lexical order (as containerd and CRI-O pick it).
    pub fn load(&self) -> Result<NetworkList, CniError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.conf_dir)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| {
            p.extension()
                .is_some_and(|x| x == "conflist" || x == "conf" || x == "json")
        });
        files.sort();
        let mut first_err = None;
        for f in files {
            match parse_file(&f) {
                Ok(list) => return Ok(list),
                Err(e) => {
                    tracing::warn!(err = %e, "skipping CNI config");
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| CniError::NoConfig(self.conf_dir.display().to_string())))
    }

    fn find_plugin(&self, kind: &str) -> Result<PathBuf, CniError> {
        let missing = || CniError::PluginMissing {
            plugin: kind.to_string(),
            dirs: self
                .bin_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(":"),
        };
        if kind.is_empty() || kind.contains('/') || kind.starts_with('.') {
            return Err(missing());
        }
        self.bin_dirs
            .iter()
            .map(|d| d.join(kind))
            .find(|p| p.is_file())
            .ok_or_else(missing)
    }

    /// ADD through the chain. If a plugin fails, DEL runs over the whole chain (as the CNI
    /// spec asks) so no interface or address is left behind, and the first error is returned.
    pub async fn add(&self, list: &NetworkList, pod: &PodArgs) -> Result<PodNetwork, CniError> {
        let started = std::time::Instant::now();
        let result = self
            .add_chain(list, pod)
            .instrument(tracing::info_span!("cni.add", network = %list.name))
            .await;
        crate::metrics::engine().cni_operation("add", started.elapsed(), result.is_ok());
        result
    }

    async fn add_chain(&self, list: &NetworkList, pod: &PodArgs) -> Result<PodNetwork, CniError> {
        let mut prev: Option<Value> = None;
        for plugin in &list.plugins {
            match self.invoke("ADD", list, plugin, pod, prev.as_ref()).await {
                Ok(out) => prev = Some(out),
                Err(e) => {
                    if let Err(del) = self.del(list, pod, prev.as_ref()).await {
                        tracing::warn!(err = %del, "cleanup DEL after a failed ADD also failed");
                    }
                    return Err(e);
                }
            }
        }
        let result = prev.unwrap_or_else(|| json!({}));
        Ok(PodNetwork {
            network: list.name.clone(),
            ips: result_ips(&result),
            result,
            port_mappings: pod.port_mappings.clone(),
            host_ports_by_crust: false,
        })
    }

    /// CHECK through the chain with the ADD result (CNI 0.4.0 and later): whether the pod's
    /// network is still as ADD left it.
    pub async fn check(
        &self,
        list: &NetworkList,
        pod: &PodArgs,
        prev: &Value,
    ) -> Result<(), CniError> {
        if list.cni_version.starts_with("0.1")
            || list.cni_version.starts_with("0.2")
            || list.cni_version.starts_with("0.3")
        {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let result = async {
            for plugin in &list.plugins {
                self.invoke("CHECK", list, plugin, pod, Some(prev)).await?;
            }
            Ok(())
        }
        .instrument(tracing::info_span!("cni.check", network = %list.name))
        .await;
        crate::metrics::engine().cni_operation("check", started.elapsed(), result.is_ok());
        result
    }

    /// DEL in reverse plugin order. Plugins must tolerate repeated DELs (the spec says so), so
    /// this is safe to call again after a crash.
    pub async fn del(
        &self,
        list: &NetworkList,
        pod: &PodArgs,
        prev: Option<&Value>,
    ) -> Result<(), CniError> {
        let started = std::time::Instant::now();
        let mut first_err = None;
        let span = tracing::info_span!("cni.del", network = %list.name);
        async {
            for plugin in list.plugins.iter().rev() {
                if let Err(e) = self.invoke("DEL", list, plugin, pod, prev).await {
                    tracing::warn!(err = %e, "CNI DEL failed");
                    first_err.get_or_insert(e);
                }
            }
        }
        .instrument(span)
        .await;
        crate::metrics::engine().cni_operation("del", started.elapsed(), first_err.is_none());
        first_err.map_or(Ok(()), Err)
    }

    async fn invoke(
        &self,
        command: &str,
        list: &NetworkList,
        plugin: &Value,
        pod: &PodArgs,
        prev: Option<&Value>,
    ) -> Result<Value, CniError> {
        let kind = plugin["type"].as_str().unwrap_or("").to_string();
        let exe = self.find_plugin(&kind)?;
        let mut conf = plugin.clone();
        conf["name"] = json!(list.name);
        conf["cniVersion"] = json!(list.cni_version);
        if let Some(p) = prev {
            conf["prevResult"] = p.clone();
        }
        let caps = plugin["capabilities"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut runtime = serde_json::Map::new();
        if caps.get("portMappings").and_then(Value::as_bool) == Some(true)
            && !pod.port_mappings.is_empty()
        {
            runtime.insert("portMappings".into(), json!(pod.port_mappings));
        }
        if caps.get("dns").and_then(Value::as_bool) == Some(true)
            && let Some(dns) = &pod.dns
        {
            runtime.insert("dns".into(), dns.clone());
        }
        if caps.get("bandwidth").and_then(Value::as_bool) == Some(true)
            && let Some(bw) = &pod.bandwidth
        {
            runtime.insert("bandwidth".into(), bw.clone());
        }
        if !runtime.is_empty() {
            conf["runtimeConfig"] = Value::Object(runtime);
        }
        let cni_args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            pod.pod_namespace, pod.pod_name, pod.pod_id, pod.pod_uid
        );
        let path = std::env::join_paths(&self.bin_dirs).unwrap_or_default();
        let io_err = |source| CniError::Io {
            plugin: kind.clone(),
            source,
        };
        let started = std::time::Instant::now();
        let mut child = tokio::process::Command::new(&exe)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &pod.pod_id)
            .env("CNI_NETNS", &pod.netns)
            .env("CNI_IFNAME", IFNAME)
            .env("CNI_ARGS", cni_args)
            .env("CNI_PATH", path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(io_err)?;
        let input = serde_json::to_vec(&conf).expect("JSON value serialises");
        if let Some(mut stdin) = child.stdin.take() {
            // A plugin that exits without reading its config (usually to report an error)
            // closes the pipe early; its exit status and output tell what happened.
            match stdin.write_all(&input).await {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(io_err(e)),
                _ => {}
            }
        }
        let out = tokio::time::timeout(PLUGIN_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| CniError::Timeout {
                plugin: kind.clone(),
                command: command.into(),
                secs: PLUGIN_TIMEOUT.as_secs(),
            })?
            .map_err(io_err)?;
        // Plugins run as processes and are most of a networked pod's start: say what each cost.
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::debug!(plugin = %kind, command, ms, ok = out.status.success(), "cni plugin");
        if !out.status.success() {
            let err: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let mut message = err["msg"].as_str().unwrap_or("").to_string();
            if let Some(d) = err["details"].as_str().filter(|d| !d.is_empty()) {
                message = format!("{message}: {d}");
            }
            if message.is_empty() {
                message = String::from_utf8_lossy(&out.stderr).trim().to_string();
            }
            return Err(CniError::Plugin {
                plugin: kind,
                command: command.into(),
                code: err["code"].as_i64().unwrap_or(-1),
                message,
            });
        }
        if command != "ADD" || out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(prev.cloned().unwrap_or_else(|| json!({})));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| CniError::Plugin {
            plugin: kind,
            command: command.into(),
            code: -1,
            message: format!("result is not JSON: {e}"),
        })
    }
}

fn parse_file(path: &Path) -> Result<NetworkList, CniError> {
    let bad = |message: String| CniError::BadConfig {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let name = v["name"].as_str().unwrap_or("").to_string();
    let cni_version = v["cniVersion"].as_str().unwrap_or("").to_string();
    if name.is_empty() {
        return Err(bad("no network name".into()));
    }
    if cni_version.is_empty() {
        return Err(bad("no cniVersion".into()));
    }
    let plugins = match v.get("plugins") {
        Some(Value::Array(p)) => p.clone(),
        Some(_) => return Err(bad("plugins is not a list".into())),
        // A single-plugin .conf is a list of one.
        None => vec![v.clone()],
    };
    if plugins.is_empty()
        || plugins
            .iter()
            .any(|p| p["type"].as_str().unwrap_or("").is_empty())
    {
        return Err(bad("every plugin needs a type".into()));
    }
    Ok(NetworkList {
        name,
        cni_version,
        plugins,
        source: path.to_path_buf(),
    })
}

/// Pod IPs from a 0.4.0 / 1.0.0 result (`ips[].address` with prefix), IPv4 first.
pub fn result_ips(result: &Value) -> Vec<String> {
    let mut ips: Vec<String> = result["ips"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|ip| ip["address"].as_str())
                .map(|addr| addr.split('/').next().unwrap_or(addr).to_string())
                .collect()
        })
        .unwrap_or_default();
    ips.sort_by_key(|ip| ip.contains(':'));
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_the_first_valid_config_in_lexical_order() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("00-broken.conflist"), "{not json").unwrap();
        std::fs::write(
            d.path().join("10-single.conf"),
            r#"{"cniVersion":"0.4.0","name":"single","type":"bridge"}"#,
        )
        .unwrap();
        std::fs::write(
            d.path().join("20-list.conflist"),
            r#"{"cniVersion":"1.0.0","name":"list","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
        )
        .unwrap();
        std::fs::write(d.path().join("99-ignored.txt"), "x").unwrap();
        let cfg = CniConfig {
            conf_dir: d.path().into(),
            bin_dirs: vec![],
        };
        let list = cfg.load().unwrap();
        assert_eq!(list.name, "single");
        assert_eq!(list.plugins.len(), 1);
        std::fs::remove_file(d.path().join("10-single.conf")).unwrap();
        assert_eq!(cfg.load().unwrap().plugins.len(), 2);
    }

    #[test]
    fn no_config_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let cfg = CniConfig {
            conf_dir: d.path().into(),
            bin_dirs: vec![],
        };
        assert!(matches!(cfg.load(), Err(CniError::NoConfig(_))));
    }

    #[test]
    fn bandwidth_annotations_become_bits_per_second() {
        assert_eq!(parse_bandwidth("10M"), Some(10_000_000));
        assert_eq!(parse_bandwidth("1Gi"), Some(1 << 30));
        assert_eq!(parse_bandwidth("500k"), Some(500_000));
        assert_eq!(parse_bandwidth("2.5M"), Some(2_500_000));
        for bad in ["", "fast", "10X", "0", "-5M"] {
            assert_eq!(parse_bandwidth(bad), None, "{bad}");
        }
        let a = [(INGRESS_ANNOTATION.to_string(), "1M".to_string())].into();
        let bw = bandwidth_from_annotations(&a).unwrap().unwrap();
        assert_eq!(bw["ingressRate"], 1_000_000);
        assert!(bw.get("egressRate").is_none());
        let bad = [(EGRESS_ANNOTATION.to_string(), "lots".to_string())].into();
        assert!(bandwidth_from_annotations(&bad).is_err());
    }

    #[test]
    fn ips_come_from_the_result_v4_first() {
        let r = json!({"ips":[{"address":"fd00::5/64"},{"address":"10.1.2.3/24","gateway":"10.1.2.1"}]});
        assert_eq!(result_ips(&r), vec!["10.1.2.3", "fd00::5"]);
    }

    #[test]
    fn plugin_names_cannot_escape_the_bin_dirs() {
        let cfg = CniConfig {
            conf_dir: "/nonexistent".into(),
            bin_dirs: vec!["/usr/lib/cni".into()],
        };
        for bad in ["../../bin/sh", "/bin/sh", "", ".hidden"] {
            assert!(cfg.find_plugin(bad).is_err(), "{bad}");
        }
    }
}
