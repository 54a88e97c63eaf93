//! crustd's configuration: a TOML file, overridden by flags.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Persistent data: images, snapshots, records, container layers.
    pub root: PathBuf,
    /// Runtime state: sockets, pinned namespaces, exit records. Lost on reboot, by design.
    pub state: PathBuf,
    /// The CRI socket kubelet and crictl connect to.
    pub listen: PathBuf,
    /// Log filter for crustd (tracing's EnvFilter syntax), e.g. "info" or "debug,h2=info".
    pub log_level: String,
    /// Parent cgroup of pods that arrive without a cgroup_parent.
    pub cgroup_root: String,
    pub image: ImageConfig,
    pub log: LogConfig,
    pub cni: CniConfig,
    pub streaming: StreamingSection,
    pub telemetry: TelemetrySection,
    /// Runtime handler names kubelet may ask for through a RuntimeClass (besides the default).
    pub runtime_handlers: Vec<String>,
    /// Size of each pod's /dev/shm, in bytes.
    pub shm_size: u64,
    /// "cgroupfs" or "systemd": how kubelet spells cgroup_parent (match kubelet's cgroupDriver).
    pub cgroup_driver: String,
    /// Seccomp profile of containers that name none: "runtime/default" or "unconfined".
    pub seccomp_default: String,
    /// Directories holding CDI device specs (.json/.yaml); later ones override earlier.
    pub cdi_spec_dirs: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CniConfig {
    /// Where the CNI network config lives; the first .conflist/.conf/.json (lexically) is used.
    pub conf_dir: PathBuf,
    /// Where the CNI plugins are looked up, in order.
    pub bin_dirs: Vec<PathBuf>,
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            conf_dir: "/etc/cni/net.d".into(),
            bin_dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageConfig {
    /// Registries (host:port) reached over plain HTTP instead of HTTPS.
    pub insecure_registries: Vec<String>,
    /// Layers downloaded at once per pull.
    pub max_concurrent_downloads: usize,
    /// Images marked pinned: kubelet's image GC never removes them.
    pub pinned_images: Vec<String>,
    /// Retries of a registry request after a transient failure.
    pub retries: u32,
    /// A pull that receives nothing for this long fails (humantime, e.g. "5m").
    pub progress_timeout: String,
    /// Docker-style config.json with registry credentials, for pulls that bring none.
    pub credentials_file: String,
    /// Image archives (OCI layout or docker save tars) dropped here are imported; "" is off.
    pub import_dir: String,
    /// Per registry host: mirrors and TLS settings (containerd's hosts.toml, in one file).
    pub registries: std::collections::BTreeMap<String, RegistryHostSection>,
}

/// `[image.registries."<host>"]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryHostSection {
    /// Tried in order before the registry itself: URLs, or tables with `endpoint`,
    /// `skip_verify` and `ca_file`.
    pub mirrors: Vec<MirrorEntry>,
    /// Never fall back to the registry itself.
    pub skip_upstream: bool,
    /// TLS for the registry itself.
    pub skip_verify: bool,
    pub ca_file: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MirrorEntry {
    Url(String),
    Table {
        endpoint: String,
        #[serde(default)]
        skip_verify: bool,
        #[serde(default)]
        ca_file: String,
    },
}

impl ImageConfig {
    pub fn registry_config(&self) -> anyhow::Result<crust_runtime::image::RegistryConfig> {
        use crust_runtime::image::registry::{Endpoint, HostConfig, TlsOptions};
        let tls = |skip_verify: bool, ca: &str| TlsOptions {
            skip_verify,
            ca_file: (!ca.is_empty()).then(|| ca.into()),
        };
        let mut hosts = std::collections::HashMap::new();
        for (host, h) in &self.registries {
            let mut mirrors = Vec::new();
            for m in &h.mirrors {
                let (url, t) = match m {
                    MirrorEntry::Url(u) => (u.clone(), TlsOptions::default()),
                    MirrorEntry::Table {
                        endpoint,
                        skip_verify,
                        ca_file,
                    } => (endpoint.clone(), tls(*skip_verify, ca_file)),
                };
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    anyhow::bail!(
                        "image.registries.{host:?}: mirror {url:?} must start with http:// or https://"
                    );
                }
                mirrors.push(Endpoint { url, tls: t });
            }
            hosts.insert(
                host.clone(),
                HostConfig {
                    mirrors,
                    skip_upstream: h.skip_upstream,
                    tls: tls(h.skip_verify, &h.ca_file),
                },
            );
        }
        Ok(crust_runtime::image::RegistryConfig {
            insecure: self.insecure_registries.clone(),
            hosts,
            retries: self.retries,
            progress_timeout: humantime::parse_duration(&self.progress_timeout).map_err(|e| {
                anyhow::anyhow!("image.progress_timeout {:?}: {e}", self.progress_timeout)
            })?,
            credentials_file: (!self.credentials_file.is_empty())
                .then(|| self.credentials_file.clone().into()),
        })
    }
}

/// The streaming server behind Exec, Attach and PortForward URLs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamingSection {
    /// Address to listen on (kubelet connects to it; keep it on loopback unless kubelet runs
    /// elsewhere).
    pub address: String,
    /// TCP port; 0 picks a free one at start.
    pub port: u16,
    /// How long an unused URL stays valid (humantime, e.g. "1m").
    pub token_ttl: String,
    /// A session without traffic for this long is closed (e.g. "4h").
    pub idle_timeout: String,
    /// Serve HTTPS with this PEM certificate chain (with `tls_key_file`); empty: plain HTTP.
    pub tls_cert_file: String,
    pub tls_key_file: String,
}

impl Default for StreamingSection {
    fn default() -> Self {
        StreamingSection {
            address: "127.0.0.1".into(),
            port: 0,
            token_ttl: "1m".into(),
            idle_timeout: "4h".into(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
        }
    }
}

impl StreamingSection {
    pub fn to_config(&self) -> anyhow::Result<crate::streaming::StreamingConfig> {
        let ip: std::net::IpAddr = self
            .address
            .parse()
            .map_err(|e| anyhow::anyhow!("streaming.address {:?}: {e}", self.address))?;
        let dur = |v: &str, key: &str| {
            humantime::parse_duration(v).map_err(|e| anyhow::anyhow!("streaming.{key} {v:?}: {e}"))
        };
        let tls = match (self.tls_cert_file.as_str(), self.tls_key_file.as_str()) {
            ("", "") => None,
            ("", _) | (_, "") => {
                anyhow::bail!("streaming.tls_cert_file and streaming.tls_key_file go together")
            }
            (c, k) => Some((c.into(), k.into())),
        };
        Ok(crate::streaming::StreamingConfig {
            addr: std::net::SocketAddr::new(ip, self.port),
            token_ttl: dur(&self.token_ttl, "token_ttl")?,
            idle_timeout: dur(&self.idle_timeout, "idle_timeout")?,
            tls,
        })
    }
}

/// Metrics and traces. The standard `OTEL_*` environment variables override the OTLP keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySection {
    /// `host:port` serving `/metrics` (Prometheus text), `/healthz` and `/readyz`; "" is off.
    pub metrics_address: String,
    /// OTLP collector; "" (and no `OTEL_EXPORTER_OTLP_ENDPOINT`) exports nothing.
    pub otlp_endpoint: String,
    /// "grpc" or "http/protobuf".
    pub otlp_protocol: String,
    /// Fraction of new traces kept (a parent's decision is always followed).
    pub sample_ratio: f64,
    /// How often metrics are pushed over OTLP (humantime).
    pub otlp_metrics_interval: String,
    /// `service.name` of the resource (unless `OTEL_SERVICE_NAME` is set).
    pub service_name: String,
}

impl TelemetrySection {
    pub fn validate(&self) -> anyhow::Result<()> {
        if !self.metrics_address.is_empty() {
            self.metrics_address
                .parse::<std::net::SocketAddr>()
                .map_err(|e| {
                    anyhow::anyhow!(
                        "telemetry.metrics_address {:?}: {e} (expected ip:port)",
                        self.metrics_address
                    )
                })?;
        }
        if !matches!(self.otlp_protocol.as_str(), "grpc" | "http/protobuf") {
            anyhow::bail!(
                "telemetry.otlp_protocol {:?}: expected \"grpc\" or \"http/protobuf\"",
                self.otlp_protocol
            );
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            anyhow::bail!(
                "telemetry.sample_ratio {}: expected 0.0 to 1.0",
                self.sample_ratio
            );
        }
        humantime::parse_duration(&self.otlp_metrics_interval).map_err(|e| {
            anyhow::anyhow!(
                "telemetry.otlp_metrics_interval {:?}: {e}",
                self.otlp_metrics_interval
            )
        })?;
        Ok(())
    }
}

impl Default for TelemetrySection {
    fn default() -> Self {
        TelemetrySection {
            metrics_address: String::new(),
            otlp_endpoint: String::new(),
            otlp_protocol: "grpc".into(),
            sample_ratio: 1.0,
            otlp_metrics_interval: "30s".into(),
            service_name: "crust".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Longest container log line before it is split into partial (P) records.
    pub max_line_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: "/var/lib/crust".into(),
            state: "/run/crust".into(),
            listen: "/run/crust/crust.sock".into(),
            log_level: "info".into(),
            cgroup_root: "/crust".into(),
            image: ImageConfig::default(),
            log: LogConfig::default(),
            cni: CniConfig::default(),
            streaming: StreamingSection::default(),
            telemetry: TelemetrySection::default(),
            runtime_handlers: vec!["crust".into()],
            shm_size: crust_runtime::pod::DEFAULT_SHM_SIZE,
            cgroup_driver: "cgroupfs".into(),
            seccomp_default: "unconfined".into(),
            cdi_spec_dirs: vec!["/etc/cdi".into(), "/var/run/cdi".into()],
        }
    }
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            insecure_registries: vec![],
            max_concurrent_downloads: 3,
            pinned_images: vec![],
            retries: 4,
            progress_timeout: "5m".into(),
            credentials_file: String::new(),
            import_dir: "/var/lib/crust/import".into(),
            registries: Default::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_line_size: crust_runtime::monitor::log_writer::DEFAULT_MAX_LINE,
        }
    }
}

/// The default configuration with comments, as `crustd config default` prints it. A test keeps
/// it equal to `Config::default()`.
pub const DEFAULT_TOML: &str = r#"# crustd configuration. Every key is optional; flags override the file.

# Persistent data: images, layer snapshots, pod and container records, container layers.
root = "/var/lib/crust"

# Runtime state: monitor sockets, pinned pod namespaces, exit records. Lost on reboot.
state = "/run/crust"

# The CRI socket (created 0660 in a 0700 directory). Point kubelet's
# --container-runtime-endpoint and crictl's --runtime-endpoint at unix://<this path>.
listen = "/run/crust/crust.sock"

# Log filter for crustd, in tracing's EnvFilter syntax ("info", "debug", "info,h2=warn").
log_level = "info"

# Parent cgroup (cgroupfs path) of pods that arrive without a cgroup_parent.
cgroup_root = "/crust"

# How kubelet spells cgroup_parent, matching its cgroupDriver: "cgroupfs" (paths) or "systemd"
# (slice names, expanded to systemd's tree; crust makes the cgroups itself, not over D-Bus).
# RuntimeConfig reports it, so kubelet can pick it up.
cgroup_driver = "cgroupfs"

# Runtime handler names a RuntimeClass may select (the default handler "" always works).
# Any other name is refused with InvalidArgument.
runtime_handlers = ["crust"]

# Size of each pod's /dev/shm (a tmpfs shared by the pod's containers), in bytes.
shm_size = 67108864

# Seccomp profile of containers whose request names none (no seccomp field and an empty
# seccomp_profile_path): "unconfined" (what CRI means by no profile, as containerd does and
# critest checks), "runtime/default" (crust's built-in allowlist) or
# "localhost/<absolute path>". kubelet always names a profile (Unconfined unless its
# seccompDefault is on), and crustctl asks for runtime/default as Docker does, so this only
# affects other CRI clients such as crictl.
seccomp_default = "unconfined"

# Directories with CDI device specs (.json or .yaml) for cdi_devices; a later directory
# overrides a device of the same name in an earlier one.
cdi_spec_dirs = ["/etc/cdi", "/var/run/cdi"]

[image]
# Registries (host:port) reached over plain HTTP instead of HTTPS, e.g. ["127.0.0.1:5000"].
insecure_registries = []
# Layers downloaded at once per pull.
max_concurrent_downloads = 3
# Images reported as pinned, so kubelet's image garbage collection keeps them.
pinned_images = []
# Retries of a registry request after a transient failure (connection errors, 5xx, 429 with
# its Retry-After); a blob cut mid-transfer resumes with an HTTP Range request.
retries = 4
# A pull that receives nothing for this long fails with DeadlineExceeded.
progress_timeout = "5m"
# Registry credentials for pulls whose request brings none (kubelet sends imagePullSecrets
# itself): a Docker-style config.json, {"auths": {"host:port": {"auth": "<base64 user:pass>"}}}.
# Read at each pull; keep it 0600.
credentials_file = ""
# Air-gapped nodes: image archives (OCI image layout or `docker save` tars, *.tar) dropped here
# are imported at start and as they appear, then moved to done/ (with a .json of the names)
# or failed/ (with a .error). `crustctl load FILE` goes through it too. "" turns it off.
import_dir = "/var/lib/crust/import"

# Mirrors and TLS per registry host, as image names spell it ("docker.io", "registry.k8s.io",
# "127.0.0.1:5000"). Mirrors are tried in order, then the registry itself unless
# skip_upstream; images keep their original names. For example:
#   [image.registries."registry.k8s.io"]
#   mirrors = ["http://127.0.0.1:5000", { endpoint = "https://mirror.example", ca_file = "/etc/crust/mirror-ca.pem" }]
#   skip_upstream = false
#   skip_verify = false   # TLS to the registry itself
#   ca_file = ""

[log]
# Longest container log line before it is split into partial (P) records.
max_line_size = 16384

[cni]
# CNI network config: the first .conflist/.conf/.json here (lexical order) is used. With none,
# pods get a private network namespace with loopback only and NetworkReady is false.
conf_dir = "/etc/cni/net.d"
# Where CNI plugins are looked up, in order (Debian's containernetworking-plugins: /usr/lib/cni).
bin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]

[streaming]
# Where the URLs of Exec, Attach and PortForward point (plain HTTP upgraded to SPDY/3.1 or
# WebSocket). kubelet connects here; keep it on loopback unless kubelet runs elsewhere.
address = "127.0.0.1"
# 0 picks a free port at start, as containerd does.
port = 0
# How long an unused URL stays valid; each works once.
token_ttl = "1m"
# A session with no traffic for this long is closed.
idle_timeout = "4h"
# Serve HTTPS with this PEM certificate chain and key (both or neither); URLs then say https.
tls_cert_file = ""
tls_key_file = ""

[telemetry]
# Prometheus endpoint: "host:port" serving /metrics, /healthz and /readyz, e.g.
# "127.0.0.1:9090" (keep it on loopback or behind a firewall). "" turns it off.
metrics_address = ""
# OpenTelemetry: traces (every CRI call, with its expensive steps as child spans) and the
# same metrics, pushed to an OTLP collector. "" is off. The standard variables
# OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_HEADERS,
# OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES and OTEL_TRACES_SAMPLER(_ARG) override these keys;
# OTEL_SDK_DISABLED=true, OTEL_TRACES_EXPORTER=none or OTEL_METRICS_EXPORTER=none turn parts off.
otlp_endpoint = ""
# "grpc" (e.g. http://collector:4317) or "http/protobuf" (e.g. http://collector:4318).
otlp_protocol = "grpc"
# Fraction of new traces kept; a traceparent that arrives with a call decides for itself.
sample_ratio = 1.0
# How often metrics are pushed over OTLP.
otlp_metrics_interval = "30s"
service_name = "crust"
"#;

impl Config {
    pub fn driver(&self) -> anyhow::Result<crust_runtime::cgroups::Driver> {
        match self.cgroup_driver.as_str() {
            "cgroupfs" => Ok(crust_runtime::cgroups::Driver::Cgroupfs),
            "systemd" => Ok(crust_runtime::cgroups::Driver::Systemd),
            other => anyhow::bail!("cgroup_driver {other:?}: expected \"cgroupfs\" or \"systemd\""),
        }
    }

    pub fn seccomp_default(
        &self,
    ) -> anyhow::Result<crust_runtime::container::security::SeccompChoice> {
        crust_runtime::container::security::parse_seccomp_string(
            &self.seccomp_default,
            "seccomp_default",
        )
        .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Every check crustd makes of its config at start, without starting anything.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.driver()?;
        self.seccomp_default()?;
        self.image.registry_config()?;
        self.streaming.to_config()?;
        self.telemetry.validate()
    }

    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_default_matches_the_built_in_default() {
        let parsed: Config = toml::from_str(DEFAULT_TOML).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn validate_names_the_bad_key() {
        let mut cfg = Config::default();
        cfg.validate().unwrap();
        cfg.telemetry.metrics_address = "localhost".into();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("telemetry.metrics_address"), "{e}");
        let mut cfg = Config::default();
        cfg.telemetry.sample_ratio = 2.0;
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("sample_ratio")
        );
        let node: Config =
            toml::from_str(include_str!("../../packaging/config.toml")).expect("packaging config");
        node.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<Config>("rot = \"/x\"").is_err());
    }
}
