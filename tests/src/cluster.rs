//! A real single-node Kubernetes cluster on crust (`scripts/cluster.sh`): etcd, the API
//! server, controller manager, scheduler, a private crustd and a real kubelet, spoken to with
//! the real kubectl. One cluster at a time: they share the bridge, subnet and cgroup parent,
//! so [`Cluster::up`] holds a process-wide lock until the cluster is down again.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{bin_dir, registry, scaled};

static ONE_CLUSTER: Mutex<()> = Mutex::new(());

/// How to bring a cluster up (all optional).
#[derive(Default, Clone)]
pub struct ClusterOptions {
    /// Another kubelet binary (the oldest supported release).
    pub kubelet: Option<PathBuf>,
    /// kubelet feature gates, `Name: true` pairs separated by commas.
    pub feature_gates: String,
    /// kubelet's containerLogMaxSize.
    pub log_max_size: Option<String>,
    /// An OTLP/gRPC collector (`host:port`) for kubelet's and crustd's traces.
    pub otlp: Option<String>,
    /// More plain-HTTP registries (`host:port`) crustd may pull from.
    pub insecure_registries: Vec<String>,
}

pub struct Cluster {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
    /// The test registry's images as `REGISTRY/crust-test/NAME:latest`.
    pub registry: String,
    env: Vec<(String, String)>,
    _one: MutexGuard<'static, ()>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster.sh")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Cluster {
    /// Brings a cluster up in its own directory, its crustd trusting the test registry.
    pub fn up(name: &str, opts: ClusterOptions) -> Cluster {
        let one = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
        let reg = registry();
        let dir = std::env::temp_dir().join(format!("crust-cluster-{name}"));
        let mut env = vec![
            ("CRUST_CLUSTER_DIR".to_string(), dir.display().to_string()),
            ("CRUST_BIN_DIR".to_string(), bin_dir().display().to_string()),
            (
                "CRUST_CLUSTER_INSECURE_REGISTRIES".to_string(),
                std::iter::once(&reg.addr)
                    .chain(&opts.insecure_registries)
                    .map(|r| format!("{r:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            (
                "CRUST_CLUSTER_FEATURE_GATES".to_string(),
                opts.feature_gates.clone(),
            ),
            // An image filesystem kubelet can measure on any machine (its image GC needs the
            // capacity), whatever filesystem the machine's /tmp is on.
            ("CRUST_CLUSTER_IMAGE_FS_SIZE".to_string(), "2g".to_string()),
        ];
        if let Some(k) = &opts.kubelet {
            env.push(("CRUST_CLUSTER_KUBELET".into(), k.display().to_string()));
        }
        if let Some(s) = &opts.log_max_size {
            env.push(("CRUST_CLUSTER_LOG_MAX_SIZE".into(), s.clone()));
        }
        if let Some(otlp) = &opts.otlp {
            env.push(("CRUST_CLUSTER_OTLP".into(), otlp.clone()));
        }
        // A cluster a killed test run left behind goes first.
        let _ = Command::new("bash")
            .arg(script())
            .arg("down")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output();
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(script())
            .arg("up")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/cluster.sh up");
        let mut cluster = Cluster {
            kubeconfig: dir.join("admin.kubeconfig"),
            kubectl: dir.join("bin/kubectl"),
            dir,
            registry: format!("{}/crust-test", reg.addr),
            env,
            _one: one,
        };
        if !out.status.success() {
            let logs = cluster.logs_tail();
            cluster.down();
            panic!("cluster.sh up failed:\n{}\n{logs}", text(&out));
        }
        eprintln!(
            "cluster {name}: up in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        cluster
    }

    /// `REGISTRY/crust-test/NAME:latest`.
    pub fn image(&self, name: &str) -> String {
        format!("{}/{name}:latest", self.registry)
    }

    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.kubectl);
        c.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        c
    }

    /// kubectl with `args`; its exit status and stdout+stderr.
    pub fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let out = self
            .kubectl_cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl");
        (out.status.success(), text(&out))
    }

    /// kubectl with `args`, which must succeed; its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .kubectl_cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("kubectl {}: {}", args.join(" "), text(&out)))
        }
    }

    /// `kubectl apply -f -` with `yaml`.
    pub fn apply(&self, yaml: &str) -> Result<(), String> {
        use std::io::Write;
        let mut child = self
            .kubectl_cmd(&["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl apply");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .expect("write manifest");
        let out = child.wait_with_output().expect("kubectl apply");
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("kubectl apply: {}\n{yaml}", text(&out)))
        }
    }

    /// `kubectl get KIND/NAME -o jsonpath=PATH` (empty when the object is missing).
    pub fn get(&self, object: &str, jsonpath: &str) -> String {
        self.kubectl_ok(&["get", object, "-o", &format!("jsonpath={jsonpath}")])
            .unwrap_or_default()
    }

    /// Polls `cond` (every 250 ms) until it holds or `limit` (scaled) passes; the error says
    /// what was awaited and what was seen last.
    pub fn wait(
        &self,
        what: &str,
        limit: Duration,
        mut cond: impl FnMut() -> Result<(), String>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + scaled(limit);
        loop {
            match cond() {
                Ok(()) => return Ok(()),
                Err(seen) if Instant::now() > deadline => {
                    return Err(format!("{what}: not within {limit:?}; last seen: {seen}"));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }

    /// Waits until `object`'s jsonpath value satisfies `ok`.
    pub fn wait_for(
        &self,
        object: &str,
        jsonpath: &str,
        limit: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let mut last = String::new();
        self.wait(&format!("{object} {jsonpath}"), limit, || {
            last = self.get(object, jsonpath);
            if ok(&last) { Ok(()) } else { Err(last.clone()) }
        })?;
        Ok(last)
    }

    /// A pod's phase is `phase`.
    pub fn wait_phase(&self, pod: &str, phase: &str, limit: Duration) -> Result<(), String> {
        self.wait_for(&format!("pod/{pod}"), "{.status.phase}", limit, |p| {
            p == phase
        })
        .map(drop)
        .map_err(|e| format!("{e}\n{}", self.describe(pod)))
    }

    /// A pod is Ready.
    pub fn wait_ready(&self, pod: &str, limit: Duration) -> Result<(), String> {
        self.wait_for(
            &format!("pod/{pod}"),
            "{.status.conditions[?(@.type==\"Ready\")].status}",
            limit,
            |s| s == "True",
        )
        .map(drop)
        .map_err(|e| format!("{e}\n{}", self.describe(pod)))
    }

    /// `kubectl describe pod` (for failure messages).
    pub fn describe(&self, pod: &str) -> String {
        self.kubectl(&["describe", "pod", pod]).1
    }

    /// kubelet's log so far.
    pub fn kubelet_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/kubelet.log")).unwrap_or_default()
    }

    /// Sets top-level keys of kubelet's configuration file; they take effect at kubelet's next
    /// start ([`Cluster::restart`]).
    pub fn set_kubelet_config(&self, settings: &[(&str, &str)]) -> Result<(), String> {
        let path = self.dir.join("kubelet/config.yaml");
        let old = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut lines: Vec<String> = old.lines().map(str::to_string).collect();
        for (key, value) in settings {
            let line = format!("{key}: {value}");
            let prefix = format!("{key}:");
            match lines.iter_mut().find(|l| l.starts_with(&prefix)) {
                Some(l) => *l = line,
                None => lines.push(line),
            }
        }
        std::fs::write(&path, lines.join("\n") + "\n")
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// `crustctl ARGS` against the node's crustd: its standard output, or what went wrong.
    pub fn crustctl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(crate::bin("crustctl"))
            .arg("--socket")
            .arg(self.dir.join("crust/crust.sock"))
            .args(args)
            .output()
            .map_err(|e| format!("crustctl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("crustctl {}: {}", args.join(" "), text(&out)))
        }
    }

    /// `scripts/cluster.sh restart NAME` (after `signal`, e.g. KILL for a crash).
    pub fn restart(&self, name: &str, signal: &str) -> Result<(), String> {
        let out = Command::new("bash")
            .arg(script())
            .args(["restart", name])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("CRUST_CLUSTER_SIGNAL", signal)
            .output()
            .expect("run cluster.sh restart");
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("cluster.sh restart {name}: {}", text(&out)))
        }
    }

    /// The cgroup directory of a pod's container on this host (cgroup v2, or v1's `controller`
    /// hierarchy), found from its container ID.
    pub fn container_cgroup(&self, controller: &str, container_id: &str) -> Option<PathBuf> {
        let base = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            PathBuf::from("/sys/fs/cgroup/crust-cluster")
        } else {
            std::fs::canonicalize(format!("/sys/fs/cgroup/{controller}"))
                .ok()?
                .join("crust-cluster")
        };
        find_dir(&base, container_id, 5)
    }

    /// The last lines of every component's log (for a failed start).
    fn logs_tail(&self) -> String {
        let mut s = String::new();
        for name in ["kube-apiserver", "crustd", "kubelet"] {
            let log = std::fs::read_to_string(self.dir.join(format!("logs/{name}.log")))
                .unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            s.push_str(&format!("--- {name}\n{tail}\n"));
        }
        s
    }

    /// Keeps every component's log and each pod monitor's log in `target/cluster-logs/NAME`
    /// (the cluster's own directory goes with `down`).
    fn save_logs(&self) {
        let name = self.dir.file_name().unwrap_or_default().to_string_lossy();
        let keep = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/cluster-logs")
            .join(name.as_ref());
        let _ = std::fs::remove_dir_all(&keep);
        if std::fs::create_dir_all(&keep).is_err() {
            return;
        }
        for e in std::fs::read_dir(self.dir.join("logs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::copy(e.path(), keep.join(e.file_name()));
        }
        let pods = self.dir.join("crust/state/pods");
        for e in std::fs::read_dir(pods).into_iter().flatten().flatten() {
            let id = e
                .file_name()
                .to_string_lossy()
                .chars()
                .take(12)
                .collect::<String>();
            let _ = std::fs::copy(
                e.path().join("monitor.log"),
                keep.join(format!("monitor-{id}.log")),
            );
        }
        eprintln!("cluster logs kept in {}", keep.display());
    }

    fn down(&mut self) {
        self.save_logs();
        let out = Command::new("bash")
            .arg(script())
            .arg("down")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output();
        if let Ok(out) = out
            && !out.status.success()
        {
            eprintln!("cluster.sh down: {}", text(&out));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.down();
    }
}

fn find_dir(base: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    if depth == 0 {
        return None;
    }
    for e in std::fs::read_dir(base).ok()?.flatten() {
        if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        if e.file_name().to_string_lossy() == name {
            return Some(e.path());
        }
        if let Some(p) = find_dir(&e.path(), name, depth - 1) {
            return Some(p);
        }
    }
    None
}
