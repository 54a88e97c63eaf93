//! Fixtures for crust's end-to-end tests: a real registry with images built offline, a real
//! crustd with its own root/state/socket/cgroup parent, and a CRI client. Every fixture cleans
//! up what it made: pods (through CRI), then any leftover process in its own cgroup parent,
//! mounts under its own directories, its cgroups and its temp dirs.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cri::image_service_client::ImageServiceClient;
use cri::runtime_service_client::RuntimeServiceClient;
pub use crust_proto::cri;
use tonic::transport::{Channel, Endpoint, Uri};

pub mod bridge;
pub mod cluster;
pub mod faultproxy;
mod footprint;
pub use footprint::{Footprint, footprint};
pub mod kubeapi;
pub mod prometheus;

/// Stretches a test time limit by E2E_TIMEOUT_SCALE (e.g. 10 under qemu's software
/// emulation, where everything runs 5-50x slower). Limits only: nothing waits longer than it
/// must.
pub fn scaled(limit: Duration) -> Duration {
    let factor = std::env::var("E2E_TIMEOUT_SCALE")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|f| *f >= 1)
        .unwrap_or(1);
    limit * factor
}

/// Directory with crustd and crustctl (built by `cargo build --bins` before the tests).
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("CRUST_BIN_DIR") {
        return PathBuf::from(d);
    }
    // target/<profile>/deps/<test binary>
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not found: run `cargo build --bins` first (or set CRUST_BIN_DIR)",
        p.display()
    );
    p
}

/// A real Kubernetes client built from its pinned Go module (`scripts/k8s-tools.sh`, cached by
/// version): `tool` is the script's name for it (`crictl`, `crictl-old`, `critest`), and the
/// variable it prints (`CRICTL`, …) may be set in the environment to use a binary from elsewhere.
pub fn k8s_tool(tool: &str) -> PathBuf {
    let var = tool.to_ascii_uppercase().replace('-', "_");
    if let Ok(p) = std::env::var(&var) {
        return PathBuf::from(p);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/k8s-tools.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(tool)
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/k8s-tools.sh");
    assert!(out.status.success(), "scripts/k8s-tools.sh {tool} failed");
    let prefix = format!("{var}=");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(PathBuf::from))
        .unwrap_or_else(|| panic!("scripts/k8s-tools.sh printed no {prefix}"))
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A loopback TCP port nothing listens on (at the time of asking).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A docker-registry on 127.0.0.1 with the test images, shared by the tests of one binary.
pub struct Registry {
    pub addr: String,
}

impl Registry {
    pub fn busybox(&self) -> String {
        format!("{}/crust-test/busybox:latest", self.addr)
    }
    pub fn stopsig(&self) -> String {
        format!("{}/crust-test/stopsig:latest", self.addr)
    }
    /// Any of the fixture's repositories (see fixtures/build-images.sh).
    pub fn image(&self, repo: &str) -> String {
        format!("{}/crust-test/{repo}:latest", self.addr)
    }
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// Starts the shared registry (once) and pushes the test images. Set CRUST_TEST_REGISTRY to
/// use a registry that already has them.
pub fn registry() -> &'static Registry {
    REGISTRY.get_or_init(|| {
        if let Ok(addr) = std::env::var("CRUST_TEST_REGISTRY") {
            return Registry { addr };
        }
        let port = free_port();
        // The registry is killed when this process exits, before anything here could clean up
        // after it: its data goes in a per-process dir, and dirs of dead processes are removed.
        let base = std::env::temp_dir().join("crust-e2e-registries");
        if let Ok(rd) = std::fs::read_dir(&base) {
            for e in rd.flatten() {
                let pid = e.file_name().to_string_lossy().to_string();
                if !Path::new("/proc").join(&pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = base.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).expect("registry dir");
        let dir2 = dir.clone();
        // The registry dies with the thread that started it (PDEATHSIG), so that thread lives
        // for the whole test process; its data dir is removed when the registry exits.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut child = registry_command(port, &dir2, &[])
                .spawn()
                .expect("start docker-registry (is it installed?)");
            tx.send(()).expect("signal registry start");
            let _ = child.wait();
        });
        rx.recv().expect("registry thread");
        let addr = format!("127.0.0.1:{port}");
        assert!(
            wait_listening(&addr, scaled(Duration::from_secs(20))),
            "docker-registry did not start on {addr}"
        );
        let st = Command::new(fixtures_dir().join("build-images.sh"))
            .arg(&addr)
            .stdout(Stdio::null())
            .status()
            .expect("run build-images.sh");
        assert!(st.success(), "building the test images failed");
        Registry { addr }
    })
}

/// tests/fixtures/registry.sh on 127.0.0.1:`port` with its data in `dir` (and registry.sh's
/// extra `options`), quiet, killed when the thread that starts it ends (PDEATHSIG).
fn registry_command(port: u16, dir: &Path, options: &[&str]) -> Command {
    let mut cmd = Command::new(fixtures_dir().join("registry.sh"));
    cmd.arg(port.to_string())
        .arg(dir)
        .args(options)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

/// Whether something accepts TCP connections on `addr` within `limit`.
pub fn wait_listening(addr: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// A docker-registry of one test's own (e.g. with Docker schema 1 manifests enabled), empty,
/// on a free loopback port; stopped and its data removed when dropped.
pub struct PrivateRegistry {
    pub addr: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl PrivateRegistry {
    /// `options`: registry.sh's extra arguments (`schema1`).
    pub fn start(options: &[&str]) -> PrivateRegistry {
        let dir = tempfile::Builder::new()
            .prefix("crust-e2e-registry-")
            .tempdir()
            .expect("registry dir");
        let port = free_port();
        let child = registry_command(port, dir.path(), options)
            .spawn()
            .expect("start docker-registry");
        let addr = format!("127.0.0.1:{port}");
        let reg = PrivateRegistry {
            addr,
            child,
            _dir: dir,
        };
        assert!(
            wait_listening(&reg.addr, scaled(Duration::from_secs(20))),
            "docker-registry did not start"
        );
        reg
    }
}

impl Drop for PrivateRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One crustd with private dirs, socket and cgroup parent.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub logs: PathBuf,
    pub cgroup_root: String,
    pub config: PathBuf,
    /// Extra environment of crustd (e.g. OTEL_* variables).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

#[derive(Clone)]
pub struct Cri {
    pub rt: RuntimeServiceClient<Channel>,
    pub img: ImageServiceClient<Channel>,
    /// For RPCs the bindings do not have.
    pub channel: Channel,
}

impl Daemon {
    pub async fn start() -> anyhow::Result<Daemon> {
        Daemon::start_with("").await
    }

    /// Starts a daemon with extra top-level config lines (before any table).
    pub async fn start_with(extra: &str) -> anyhow::Result<Daemon> {
        Self::start_config(extra, "").await
    }

    /// A daemon with `extra` at the top of its config and `image` lines in its `[image]`
    /// table (which always trusts the test registry over plain HTTP).
    pub async fn start_config(extra: &str, image: &str) -> anyhow::Result<Daemon> {
        Self::start_env(extra, image, &[]).await
    }

    /// [`Daemon::start_config`] with extra environment variables for crustd.
    pub async fn start_env(
        extra: &str,
        image: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Daemon> {
        let reg = registry();
        let dir = tempfile::Builder::new().prefix("crust-e2e-").tempdir()?;
        let root = dir.path().join("root");
        let state = dir.path().join("state");
        let socket = state.join("crust.sock");
        let logs = dir.path().join("logs");
        let cgroup_root = format!("/crust-e2e-{:08x}", rand::random::<u32>());
        let config = dir.path().join("crustd.toml");
        std::fs::write(
            &config,
            format!(
                "root = {root:?}\nstate = {state:?}\nlisten = {socket:?}\ncgroup_root = {cgroup_root:?}\nlog_level = \"info\"\n{extra}\n[image]\ninsecure_registries = [{:?}]\nimport_dir = {:?}\n{image}\n[cni]\nconf_dir = {:?}\nbin_dirs = [{:?}, \"/usr/lib/cni\"]\n",
                reg.addr,
                dir.path().join("import"),
                dir.path().join("cni"),
                dir.path().join("cni-bin"),
            ),
        )?;
        let mut d = Daemon {
            dir,
            root,
            state,
            socket,
            logs,
            cgroup_root,
            config,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        };
        d.spawn().await?;
        Ok(d)
    }

    /// The daemon's CNI conf dir (empty at start: pods get loopback only).
    pub fn cni_dir(&self) -> PathBuf {
        self.dir.path().join("cni")
    }

    /// An extra CNI plugin dir searched before Debian's /usr/lib/cni.
    pub fn cni_bin_dir(&self) -> PathBuf {
        self.dir.path().join("cni-bin")
    }

    /// Starts crustd (again) on the same dirs and waits for its socket to answer.
    pub async fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("crustd.log"))?;
        let child = Command::new(bin("crustd"))
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start crustd")?;
        self.child = Some(child);
        let deadline = Instant::now() + scaled(Duration::from_secs(20));
        loop {
            if let Ok(mut c) = self.cri().await
                && c.rt.version(cri::VersionRequest::default()).await.is_ok()
            {
                return Ok(());
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                bail!("crustd exited at start ({st}); log:\n{}", self.daemon_log());
            }
            if Instant::now() > deadline {
                bail!("crustd did not answer; log:\n{}", self.daemon_log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("crustd.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL the daemon (containers and monitors keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM the daemon and wait for it; returns its exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        // SAFETY: kill with a pid we spawned and still own (not yet reaped).
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        c.wait().ok().and_then(|s| s.code())
    }

    pub async fn cri(&self) -> anyhow::Result<Cri> {
        Daemon::connect(&self.socket).await
    }

    async fn connect(socket: &Path) -> anyhow::Result<Cri> {
        let socket = socket.to_path_buf();
        let ch = Endpoint::try_from("http://[::]:0")?
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(socket).await?,
                    ))
                }
            }))
            .await?;
        // ExecSync may return 2 × 16 MiB of output.
        const MAX: usize = 64 << 20;
        Ok(Cri {
            rt: RuntimeServiceClient::new(ch.clone()).max_decoding_message_size(MAX),
            img: ImageServiceClient::new(ch.clone()).max_decoding_message_size(MAX),
            channel: ch,
        })
    }

    /// Removes every pod through CRI, then stops the daemon and clears what is left.
    pub async fn shutdown(mut self) {
        if self.child.is_some()
            && let Ok(mut c) = self.cri().await
            && let Ok(pods) =
                c.rt.list_pod_sandbox(cri::ListPodSandboxRequest::default())
                    .await
        {
            for p in pods.into_inner().items {
                let _ =
                    c.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                        pod_sandbox_id: p.id,
                    })
                    .await;
            }
        }
        self.terminate();
        self.cleanup();
    }

    /// Removes every pod through CRI from a thread of its own (so it works from Drop, even in
    /// an async test that panicked): that is what releases CNI addresses and port mappings.
    fn remove_pods_blocking(&self) {
        if self.child.is_none() {
            return;
        }
        let socket = self.socket.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let probe = Daemon::connect(&socket);
                let Ok(Ok(mut c)) = tokio::time::timeout(Duration::from_secs(5), probe).await
                else {
                    return;
                };
                let Ok(pods) =
                    c.rt.list_pod_sandbox(cri::ListPodSandboxRequest::default())
                        .await
                else {
                    return;
                };
                for p in pods.into_inner().items {
                    let req = cri::RemovePodSandboxRequest {
                        pod_sandbox_id: p.id,
                    };
                    let _ =
                        tokio::time::timeout(Duration::from_secs(30), c.rt.remove_pod_sandbox(req))
                            .await;
                }
            });
        })
        .join();
    }

    /// Cleanup that needs no daemon: kills processes left in this daemon's cgroup parent, and
    /// unmounts anything mounted under its directories, then removes its cgroups.
    fn cleanup(&mut self) {
        self.remove_pods_blocking();
        self.kill9();
        for _ in 0..3 {
            let pids = cgroup_pids(&self.cgroup_root);
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // SAFETY: these processes are in this fixture's own cgroup, so they are ours.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Monitors are not in the cgroup: end those this daemon started (their pid files).
        if let Ok(rd) = std::fs::read_dir(self.state.join("pods")) {
            for e in rd.flatten() {
                if let Ok(pid) = std::fs::read_to_string(e.path().join("monitor.pid"))
                    && let Ok(pid) = pid.trim().parse::<i32>()
                    && is_our_monitor(pid, &e.path())
                {
                    // SAFETY: the pid file names a monitor of this fixture, checked above.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        unmount_under(self.dir.path());
        remove_cgroup_tree(&self.cgroup_root);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn is_our_monitor(pid: i32, pod_dir: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains(&pod_dir.display().to_string()))
        .unwrap_or(false)
}

/// Every v1 controller mount plus the v2 root, for fixture cleanup and checks.
pub fn cgroup_mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            Some(PathBuf::from(left.split_whitespace().nth(4)?))
        })
        .collect()
}

/// True when cgroup `path` exists in any hierarchy.
pub fn cgroup_exists(path: &str) -> bool {
    cgroup_mounts()
        .iter()
        .any(|m| m.join(path.trim_start_matches('/')).is_dir())
}

pub fn cgroup_pids(path: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for m in cgroup_mounts() {
        let mut stack = vec![m.join(path.trim_start_matches('/'))];
        while let Some(d) = stack.pop() {
            if let Ok(s) = std::fs::read_to_string(d.join("cgroup.procs")) {
                out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
            if let Ok(rd) = std::fs::read_dir(&d) {
                stack.extend(rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn remove_cgroup_tree(path: &str) {
    for m in cgroup_mounts() {
        let top = m.join(path.trim_start_matches('/'));
        let mut dirs = Vec::new();
        let mut stack = vec![top];
        while let Some(d) = stack.pop() {
            if !d.is_dir() {
                continue;
            }
            if let Ok(rd) = std::fs::read_dir(&d) {
                stack.extend(rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
            }
            dirs.push(d);
        }
        for d in dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// A daemon, a client, and the busybox image pulled: the start of most tests.
pub async fn with_busybox() -> (Daemon, Cri, String) {
    let d = Daemon::start().await.expect("start crustd");
    let mut c = d.cri().await.expect("connect to crustd");
    let image = registry().busybox();
    c.pull(&image).await.expect("pull busybox");
    (d, c, image)
}

/// The common start of a test: a daemon, a client, the busybox image pulled and one ready pod.
pub struct PodFixture {
    pub d: Daemon,
    pub c: Cri,
    pub image: String,
    pub pod: String,
    pub pc: cri::PodSandboxConfig,
}

impl PodFixture {
    pub async fn start(pod_name: &str) -> PodFixture {
        Self::start_with(pod_name, "").await
    }

    /// [`PodFixture::start`] with extra crustd config (see [`Daemon::start_with`]).
    pub async fn start_with(pod_name: &str, extra: &str) -> PodFixture {
        let d = Daemon::start_with(extra).await.expect("start crustd");
        let mut c = d.cri().await.expect("connect to crustd");
        let image = registry().busybox();
        c.pull(&image).await.expect("pull busybox");
        let pc = pod_config(pod_name, &d.logs);
        let pod = c.run_pod(&pc).await.expect("run pod");
        PodFixture {
            d,
            c,
            image,
            pod,
            pc,
        }
    }
}

// ------------------------------------------------------------------ request helpers

pub fn pod_config(name: &str, log_dir: &Path) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}-{:08x}", rand::random::<u32>()),
            namespace: "e2e".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: log_dir.join(name).display().to_string(),
        labels: [("app".to_string(), name.to_string())].into(),
        annotations: [("note".to_string(), "kept as given".to_string())].into(),
        // As kubelet sends it for a pod without shareProcessNamespace.
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces(cri::NamespaceMode::Container)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pod's Linux security context (pod_config always has one).
pub fn pod_security(pc: &mut cri::PodSandboxConfig) -> &mut cri::LinuxSandboxSecurityContext {
    pc.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}

/// The pod's namespace options.
pub fn pod_namespaces(pc: &mut cri::PodSandboxConfig) -> &mut cri::NamespaceOption {
    pod_security(pc)
        .namespace_options
        .get_or_insert_with(Default::default)
}

/// A container's Linux security context.
pub fn ctr_security(cfg: &mut cri::ContainerConfig) -> &mut cri::LinuxContainerSecurityContext {
    cfg.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}

/// Namespace options with the given PID mode (network and IPC: the pod's).
pub fn namespaces(pid: cri::NamespaceMode) -> cri::NamespaceOption {
    cri::NamespaceOption {
        pid: pid as i32,
        ..Default::default()
    }
}

pub fn container_config(name: &str, image: &str, command: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        labels: [("ctr".to_string(), name.to_string())].into(),
        annotations: [("ctr-note".to_string(), "unchanged".to_string())].into(),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(namespaces(cri::NamespaceMode::Container)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Cri {
    pub async fn pull(&mut self, image: &str) -> anyhow::Result<String> {
        Ok(self
            .img
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?
            .into_inner()
            .image_ref)
    }

    pub async fn run_pod(&mut self, config: &cri::PodSandboxConfig) -> anyhow::Result<String> {
        Ok(self
            .rt
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await?
            .into_inner()
            .pod_sandbox_id)
    }

    pub async fn create(
        &mut self,
        pod: &str,
        pod_config: &cri::PodSandboxConfig,
        config: cri::ContainerConfig,
    ) -> anyhow::Result<String> {
        Ok(self
            .rt
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.into(),
                config: Some(config),
                sandbox_config: Some(pod_config.clone()),
            })
            .await?
            .into_inner()
            .container_id)
    }

    pub async fn start(&mut self, id: &str) -> anyhow::Result<()> {
        self.rt
            .start_container(cri::StartContainerRequest {
                container_id: id.into(),
            })
            .await?;
        Ok(())
    }

    /// Creates and starts a container; returns its id.
    pub async fn run(
        &mut self,
        pod: &str,
        pod_config: &cri::PodSandboxConfig,
        config: cri::ContainerConfig,
    ) -> anyhow::Result<String> {
        let id = self.create(pod, pod_config, config).await?;
        self.start(&id).await?;
        Ok(id)
    }

    pub async fn status(&mut self, id: &str) -> anyhow::Result<cri::ContainerStatus> {
        self.rt
            .container_status(cri::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .context("no status")
    }

    /// UpdatePodSandboxResources (CRI of Kubernetes 1.33+).
    pub async fn update_pod_resources(
        &self,
        req: cri::UpdatePodSandboxResourcesRequest,
    ) -> Result<(), tonic::Status> {
        let mut rt = self.rt.clone();
        rt.update_pod_sandbox_resources(req).await.map(drop)
    }

    /// The host pid of a container's init, from ContainerStatus's verbose info.
    pub async fn container_pid(&mut self, id: &str) -> anyhow::Result<i32> {
        let st = self
            .rt
            .container_status(cri::ContainerStatusRequest {
                container_id: id.into(),
                verbose: true,
            })
            .await?
            .into_inner();
        let info: serde_json::Value =
            serde_json::from_str(st.info.get("info").context("no verbose info")?)?;
        info["pid"]
            .as_i64()
            .map(|p| p as i32)
            .context("no pid in the verbose info")
    }

    pub async fn stop(&mut self, id: &str, timeout: i64) -> anyhow::Result<()> {
        self.rt
            .stop_container(cri::StopContainerRequest {
                container_id: id.into(),
                timeout,
            })
            .await?;
        Ok(())
    }

    /// Waits until the container has exited and returns its final status.
    pub async fn wait_exited(
        &mut self,
        id: &str,
        limit: Duration,
    ) -> anyhow::Result<cri::ContainerStatus> {
        let deadline = Instant::now() + scaled(limit);
        loop {
            let st = self.status(id).await?;
            if st.state == cri::ContainerState::ContainerExited as i32 {
                return Ok(st);
            }
            if Instant::now() > deadline {
                bail!("container {id} still in state {} after {limit:?}", st.state);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A pod's status (PodSandboxStatus).
    pub async fn pod_status(&mut self, pod: &str) -> anyhow::Result<cri::PodSandboxStatus> {
        self.rt
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod.into(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .ok_or_else(|| anyhow::anyhow!("pod {pod}: no status"))
    }

    /// A pod's verbose status info (netns, cgroup, monitor pid, config) as JSON.
    pub async fn pod_info(&mut self, pod: &str) -> serde_json::Value {
        let info = self
            .rt
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod.into(),
                verbose: true,
            })
            .await
            .expect("pod status")
            .into_inner()
            .info;
        serde_json::from_str(&info["info"]).expect("pod info is JSON")
    }

    pub async fn exec(
        &mut self,
        id: &str,
        cmd: &[&str],
        timeout: i64,
    ) -> Result<cri::ExecSyncResponse, tonic::Status> {
        self.rt
            .exec_sync(cri::ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout,
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn list_containers(
        &mut self,
        filter: cri::ContainerFilter,
    ) -> anyhow::Result<Vec<cri::Container>> {
        Ok(self
            .rt
            .list_containers(cri::ListContainersRequest {
                filter: Some(filter),
            })
            .await?
            .into_inner()
            .containers)
    }

    /// Every pod sandbox the runtime lists.
    pub async fn list_pods(&mut self) -> anyhow::Result<Vec<cri::PodSandbox>> {
        Ok(self
            .rt
            .list_pod_sandbox(cri::ListPodSandboxRequest::default())
            .await?
            .into_inner()
            .items)
    }

    /// StopPodSandbox then RemovePodSandbox, as kubelet ends a pod.
    pub async fn remove_pod(&mut self, pod: &str) -> anyhow::Result<()> {
        self.rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.into(),
            })
            .await?;
        self.rt
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod.into(),
            })
            .await?;
        Ok(())
    }
}

/// Detaches every mount below `base` (deepest first).
pub fn unmount_under(base: &Path) {
    let base = base.display().to_string();
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&base))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let c = std::ffi::CString::new(m).unwrap();
        // SAFETY: a valid C string path; MNT_DETACH on our own mount points.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Runs crustctl against `d` and returns its output.
pub fn crustctl(d: &Daemon, args: &[&str]) -> std::process::Output {
    Command::new(bin("crustctl"))
        .arg("--socket")
        .arg(&d.socket)
        .arg("--log-root")
        .arg(&d.logs)
        .args(args)
        .output()
        .expect("run crustctl")
}

/// Runs crustctl against `d` with `input` on its stdin.
pub fn crustctl_input(d: &Daemon, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(bin("crustctl"))
        .arg("--socket")
        .arg(&d.socket)
        .arg("--log-root")
        .arg(&d.logs)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run crustctl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write crustctl's stdin");
    child.wait_with_output().expect("wait for crustctl")
}

/// Content lines of a CRI log (the part after "<ts> <stream> <tag> "), checking the format.
pub fn log_lines(path: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let mut p = l.splitn(4, ' ');
            let ts = p.next().unwrap_or("");
            let stream = p.next().unwrap_or("");
            let tag = p.next().unwrap_or("");
            let content = p.next().unwrap_or("");
            assert!(
                ts.len() >= 20 && ts.ends_with('Z') && ts.contains('T'),
                "bad timestamp in log line {l:?}"
            );
            assert!(
                stream == "stdout" || stream == "stderr",
                "bad stream in {l:?}"
            );
            assert!(tag == "F" || tag == "P", "bad tag in {l:?}");
            (stream.to_string(), content.to_string())
        })
        .collect()
}

/// Waits for `cond` to hold, polling.
pub async fn eventually<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + scaled(limit);
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The CNI network crust ships (packaging/cni), installed for `d` in its isolated form (no
/// masquerading, no gateway, ip_forward untouched) on a bridge of its own; the bridge goes when
/// this is dropped.
pub struct ShippedNetwork {
    pub bridge: String,
    /// The first three octets of the pod subnet (`10.253.N`).
    pub prefix: String,
}

impl ShippedNetwork {
    pub fn install(d: &Daemon) -> ShippedNetwork {
        let net = ShippedNetwork {
            bridge: format!("crustt{:06x}", rand::random::<u32>() & 0xff_ffff),
            prefix: format!("10.253.{}", rand::random::<u8>() % 200 + 20),
        };
        let script = fixtures_dir().join("../../packaging/cni/install-network.sh");
        let o = Command::new(&script)
            .arg("--isolated")
            .arg("--conf-dir")
            .arg(d.cni_dir())
            .arg("--ipam-dir")
            .arg(d.dir.path().join("ipam"))
            .args(["--bridge", &net.bridge, "--subnet-prefix", &net.prefix])
            .output()
            .expect("run install-network.sh");
        assert!(o.status.success(), "{o:?}");
        net
    }
}

impl Drop for ShippedNetwork {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
    }
}

/// Copies the host's shared libraries that `binary` needs (as `ldd` finds them, with
/// `lib_path` searched first; libraries under it are left out) into `into`, by file name,
/// symlinks followed: with them in /lib/x86_64-linux-gnu and the loader in /lib64 of an
/// image, a host-built dynamic binary runs there.
pub fn copy_host_libraries(binary: &Path, lib_path: Option<&Path>, into: &Path) {
    let mut ldd = Command::new("ldd");
    ldd.arg(binary);
    if let Some(p) = lib_path {
        ldd.env("LD_LIBRARY_PATH", p);
    }
    let out = ldd.output().expect("run ldd");
    assert!(out.status.success(), "ldd {}: {out:?}", binary.display());
    std::fs::create_dir_all(into).unwrap();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let path = line
            .split("=>")
            .last()
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("");
        if path.starts_with('/') && !lib_path.is_some_and(|p| Path::new(path).starts_with(p)) {
            let name = Path::new(path).file_name().unwrap();
            std::fs::copy(path, into.join(name)).unwrap_or_else(|e| panic!("copy {path}: {e}"));
        }
    }
}
