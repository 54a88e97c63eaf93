//! A real Kubernetes cluster runs its pods on crust: `scripts/cluster.sh` brings up etcd, the
//! API server, controller manager, scheduler, a private crustd and a real kubelet (the newest
//! release, and the oldest supported one), and every check goes through the real kubectl and
//! kubelet's own API — never crust's client.
//!
//! Each scenario returns its failure instead of panicking, so one run reports every scenario
//! that fails; the slow ones (crash loops, probes that restart, a Job) are applied first and
//! checked later.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crust_e2e::cluster::{Cluster, ClusterOptions};
use crust_e2e::{free_port, k8s_tool};

mod access;
mod images;
mod observe;
mod pods;
mod workloads;

use access::*;
use images::*;
use observe::*;
use pods::*;
use workloads::*;

const MINUTE: Duration = Duration::from_secs(60);

type Outcome = Result<(), String>;

/// Runs scenarios in order, printing each result; fails at the end with every failure.
struct Scenarios {
    failed: Vec<String>,
    passed: usize,
}

impl Scenarios {
    fn new() -> Scenarios {
        Scenarios {
            failed: vec![],
            passed: 0,
        }
    }

    fn run(&mut self, name: &str, f: impl FnOnce() -> Outcome) {
        let started = Instant::now();
        let result = f();
        let secs = started.elapsed().as_secs_f64();
        match result {
            Ok(()) => {
                self.passed += 1;
                eprintln!("scenario {name}: ok ({secs:.1} s)");
            }
            Err(e) => {
                eprintln!("scenario {name}: FAILED ({secs:.1} s): {e}");
                self.failed.push(format!("{name}: {e}"));
            }
        }
    }

    fn finish(self, c: &Cluster) {
        let errors = cri_errors(&c.kubelet_log());
        let mut failed = self.failed;
        if !errors.is_empty() {
            failed.push(format!("kubelet logged CRI errors:\n{}", errors.join("\n")));
        }
        assert!(
            failed.is_empty(),
            "{} scenarios passed; failed:\n{}",
            self.passed,
            failed.join("\n\n")
        );
    }
}

/// kubelet's log lines that report a CRI call crust failed. Left out: NotFound for
/// containers kubelet asks about after they are gone (its log GC walks the host-wide
/// /var/log/containers, and its status loop races deletions: containerd answers the same),
/// and the errors a test provokes on purpose (a missing image; calls while crustd was down).
fn cri_errors(log: &str) -> Vec<String> {
    let mut in_outage = false;
    log.lines()
        .filter(|l| {
            if l.contains("crust-test: crustd down") {
                in_outage = true;
            } else if l.contains("crust-test: crustd up") {
                in_outage = false;
            }
            !in_outage
        })
        .filter(|l| l.contains("rpc error"))
        .filter(|l| !l.contains("code = NotFound"))
        // crust never answers Canceled: it is kubelet's own request context
        // ending (a `kubectl logs -f` the test stops, a pod worker torn down)
        // while a call is on its way.
        .filter(|l| !l.contains("code = Canceled"))
        .filter(|l| !l.contains("crust-test/does-not-exist"))
        .filter(|l| !l.contains("crust-test/private-without-secret"))
        .map(|l| l.chars().take(600).collect())
        .collect()
}

/// A marker in kubelet's log (to leave out what a deliberate outage makes it log).
fn mark_kubelet_log(c: &Cluster, what: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .open(c.dir.join("logs/kubelet.log"))
    {
        let _ = writeln!(f, "crust-test: {what}");
    }
}

fn pod_yaml(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\nspec:\n{}",
        indent(spec, 2)
    )
}

fn indent(s: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    s.lines().map(|l| format!("{pad}{l}\n")).collect::<String>()
}

fn contains(haystack: &str, needles: &[&str]) -> Outcome {
    for n in needles {
        if !haystack.contains(n) {
            return Err(format!("{n:?} missing in {haystack:?}"));
        }
    }
    Ok(())
}

#[test]
fn a_cluster_with_the_newest_kubelet_runs_its_pods_on_crust() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let collector = Collector::start();
    // The test registry behind Basic auth, for imagePullSecrets.
    let (user, password) = ("kube", "pull-s3cret");
    let private = rt.block_on(async {
        let p = crust_e2e::faultproxy::FaultProxy::start(&crust_e2e::registry().addr).await;
        *p.faults.basic_auth.lock().unwrap() = Some(format!("{user}:{password}"));
        p
    });
    let c = Cluster::up(
        "newest",
        ClusterOptions {
            log_max_size: Some("1Mi".into()),
            otlp: Some(collector.addr.clone()),
            insecure_registries: vec![private.addr.clone()],
            ..Default::default()
        },
    );
    let mut s = Scenarios::new();
    s.run("node Ready with crust's runtime and handlers", || {
        node_ready(&c)
    });
    s.run("long-running workloads applied", || {
        background_workloads(&c)
    });
    let mut gc_victim = None;
    s.run(
        "image GC: a pod of an image nothing else uses, deleted",
        || {
            gc_victim = Some(image_gc_victim(&c)?);
            Ok(())
        },
    );
    s.run("Deployment: 3 replicas, 10, back to 3, new image", || {
        deployment(&c)
    });
    s.run("Job runs to completion", || job(&c));
    s.run("resources: QoS cgroups, in-place resize, OOMKilled", || {
        resources(&c)
    });
    s.run(
        "volumes: emptyDir, hostPath, configMap, secret, token, downward API",
        || volumes(&c),
    );
    s.run("securityContext", || security_context(&c));
    s.run("init containers, postStart and preStop hooks", || {
        init_and_hooks(&c)
    });
    s.run("probes: startup, readiness, liveness restarts", || {
        probes(&c)
    });
    let mut image_gc = None;
    if let Some(id) = &gc_victim {
        s.run("image GC: threshold at 1 %, kubelet restarted", || {
            image_gc = Some(image_gc_arm(&c, id)?);
            Ok(())
        });
    }
    s.run("CrashLoopBackOff with --previous logs", || crashloop(&c));
    s.run(
        "kubectl exec, logs -f, attach, port-forward, cp, debug",
        || streaming(&c),
    );
    s.run("kubelet's stats and metrics", || stats(&c));
    s.run("images: pull policies and a missing image", || images(&c));
    s.run("imagePullSecrets for a registry that wants auth", || {
        private_registry(&c, &private.addr, user, password)
    });
    s.run("log rotation through ReopenContainerLog", || {
        log_rotation(&c)
    });
    s.run("grace period: SIGTERM, then SIGKILL", || grace_period(&c));
    s.run("the Helm chart: lint, template, server dry run", || {
        helm_chart(&c)
    });
    s.run("Prometheus finds crustd through the API server", || {
        prometheus_scrapes_crust(&c)
    });
    s.run("kubelet's traces continue in crust's spans", || {
        traces_continue_kubelets(&c, &collector)
    });
    if let Some(gc) = &image_gc {
        s.run("image garbage collection through crust", || {
            image_gc_removed(&c, gc)
        });
    }
    s.run("crustd crash and kubelet restart keep every pod", || {
        daemon_restarts(&c)
    });
    s.finish(&c);
}

#[test]
fn a_cluster_with_the_oldest_supported_kubelet_runs_its_pods_on_crust() {
    let kubelet = k8s_tool("kubelet-old");
    let c = Cluster::up(
        "oldest",
        ClusterOptions {
            kubelet: Some(kubelet),
            // This kubelet learns of container changes from GetContainerEvents.
            feature_gates: "EventedPLEG: true".into(),
            ..Default::default()
        },
    );
    let mut s = Scenarios::new();
    s.run("node Ready with crust's runtime and handlers", || {
        node_ready(&c)
    });
    s.run("long-running workloads applied", || {
        background_workloads(&c)
    });
    s.run("Deployment: 3 replicas, 10, back to 3, new image", || {
        deployment(&c)
    });
    s.run("volumes", || volumes(&c));
    s.run("securityContext", || security_context(&c));
    s.run("init containers, postStart and preStop hooks", || {
        init_and_hooks(&c)
    });
    s.run("CrashLoopBackOff with --previous logs", || crashloop(&c));
    s.run(
        "kubectl exec, logs -f, attach, port-forward, cp, debug",
        || streaming(&c),
    );
    s.run("kubelet's stats and metrics", || stats(&c));
    s.run(
        "EventedPLEG: exits arrive through GetContainerEvents",
        || evented_pleg(&c),
    );
    s.finish(&c);
}
