//! Workloads and the node: Deployments, Jobs, crash loops, grace periods, restarts of crustd
//! and kubelet.

use super::*;

/// The workloads whose outcome takes a while, applied at the start.
pub(crate) fn background_workloads(c: &Cluster) -> Outcome {
    let busybox = c.image("busybox");
    let host = c.dir.join("hostpath");
    std::fs::create_dir_all(&host).map_err(|e| e.to_string())?;
    std::fs::write(host.join("from-host.txt"), "from-host\n").map_err(|e| e.to_string())?;
    let host = host.display();
    let manifests = [
        pod_yaml(
            "crashloop",
            &format!(
                "restartPolicy: Always
containers:
- name: c
  image: {busybox}
  command: [sh, -c, 'echo attempt-$(date +%s%N); exit 3']"
            ),
        ),
        pod_yaml(
            "liveness-exec",
            &format!(
                "terminationGracePeriodSeconds: 2
containers:
- name: c
  image: {busybox}
  command: [sh, -c, 'touch /tmp/healthy; sleep 6; rm /tmp/healthy; sleep 1000']
  livenessProbe:
    exec: {{command: [cat, /tmp/healthy]}}
    periodSeconds: 1
    failureThreshold: 2"
            ),
        ),
        pod_yaml(
            "liveness-http",
            &format!(
                "terminationGracePeriodSeconds: 2
containers:
- name: c
  image: {busybox}
  command: [sh, -c, 'mkdir -p /www; echo ok > /www/healthz; (sleep 6; rm /www/healthz) & exec httpd -f -p 8080 -h /www']
  livenessProbe:
    httpGet: {{path: /healthz, port: 8080}}
    periodSeconds: 1
    failureThreshold: 2"
            ),
        ),
        format!(
            "apiVersion: batch/v1
kind: Job
metadata: {{name: job}}
spec:
  completions: 2
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: c
        image: {busybox}
        command: [sh, -c, 'echo job-done']"
        ),
        pod_yaml(
            "oom",
            &format!(
                "restartPolicy: Never
containers:
- name: c
  image: {busybox}
  # dd's buffer is bs bytes, filled from /dev/zero: 96 MiB against a 32 MiB limit.
  command: [dd, if=/dev/zero, of=/dev/null, bs=96M, count=4]
  resources:
    limits: {{memory: 32Mi}}"
            ),
        ),
        pod_yaml(
            "lifecycle",
            &format!(
                "terminationGracePeriodSeconds: 10
volumes:
- name: work
  emptyDir: {{}}
- name: host
  hostPath: {{path: {host}, type: Directory}}
initContainers:
- name: init
  image: {busybox}
  command: [sh, -c, 'echo from-init > /work/init.txt']
  volumeMounts: [{{name: work, mountPath: /work}}]
containers:
- name: c
  image: {busybox}
  command: [sh, -c, 'cat /work/init.txt; trap \"echo got-term >> /host/term.txt; exit 0\" TERM; sleep 1000 & wait']
  volumeMounts: [{{name: work, mountPath: /work}}, {{name: host, mountPath: /host}}]
  lifecycle:
    postStart:
      exec: {{command: [sh, -c, 'echo from-poststart > /work/poststart.txt']}}
    preStop:
      exec: {{command: [sh, -c, 'echo from-prestop > /host/prestop.txt']}}"
            ),
        ),
    ];
    for m in manifests {
        c.apply(&m)?;
    }
    Ok(())
}

pub(crate) fn node_ready(c: &Cluster) -> Outcome {
    let node = c.kubectl_ok(&["get", "node", "crust-node", "-o", "json"])?;
    let node: serde_json::Value = serde_json::from_str(&node).map_err(|e| e.to_string())?;
    let ready = node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    if !ready {
        return Err(format!("not Ready: {}", node["status"]["conditions"]));
    }
    let runtime = node["status"]["nodeInfo"]["containerRuntimeVersion"]
        .as_str()
        .unwrap_or("");
    if !runtime.starts_with("crust://") {
        return Err(format!("containerRuntimeVersion {runtime:?}"));
    }
    // Handlers come from RuntimeStatus (kubelet 1.30+ reports them on the node).
    let handlers: Vec<&str> = node["status"]["runtimeHandlers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["name"].as_str())
        .collect();
    if !handlers.contains(&"") {
        return Err(format!("runtimeHandlers {handlers:?}"));
    }
    // The default service account, which every pod needs, exists by now.
    c.wait("the default service account", MINUTE, || {
        c.kubectl_ok(&["get", "serviceaccount", "default"])
            .map(drop)
    })
}

pub(crate) fn deployment(c: &Cluster) -> Outcome {
    let yaml = |image: &str, replicas: u32| {
        format!(
            "apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: httpd
        image: {image}
        imagePullPolicy: IfNotPresent
        command: [sh, -c, 'mkdir -p /www; echo hello-$(hostname) > /www/index.html; exec httpd -f -p 8080 -h /www']
        readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}"
        )
    };
    let rollout = || c.kubectl_ok(&["rollout", "status", "deploy/web", "--timeout=120s"]);
    let busybox = c.image("busybox");
    c.apply(&yaml(&busybox, 3))?;
    rollout()?;
    c.kubectl_ok(&["scale", "deploy/web", "--replicas=10"])?;
    rollout()?;
    let ready = c.get("deploy/web", "{.status.readyReplicas}");
    if ready != "10" {
        return Err(format!("{ready} of 10 ready"));
    }
    c.kubectl_ok(&["scale", "deploy/web", "--replicas=3"])?;
    c.wait("3 web pods left", 2 * MINUTE, || {
        let pods = c.get(
            "pods",
            "{.items[?(@.metadata.labels.app==\"web\")].metadata.name}",
        );
        let n = pods.split_whitespace().count();
        if n == 3 { Ok(()) } else { Err(pods) }
    })?;
    // A new image rolls out.
    let layered = c.image("layered");
    c.kubectl_ok(&["set", "image", "deploy/web", &format!("httpd={layered}")])?;
    rollout()?;
    // The old pods may still be terminating right after the rollout.
    c.wait("3 web pods, all on the new image", MINUTE, || {
        let images = c.get(
            "pods",
            "{.items[?(@.metadata.labels.app==\"web\")].spec.containers[0].image}",
        );
        let all: Vec<&str> = images.split_whitespace().collect();
        if all.len() == 3 && all.iter().all(|i| *i == layered) {
            Ok(())
        } else {
            Err(images.clone())
        }
    })
}

/// The name of one running pod of the web Deployment.
pub(crate) fn web_pod(c: &Cluster) -> Result<String, String> {
    let pods = c.get(
        "pods",
        "{.items[?(@.status.phase==\"Running\")].metadata.name}",
    );
    pods.split_whitespace()
        .find(|p| p.starts_with("web-"))
        .map(str::to_string)
        .ok_or_else(|| format!("no running web pod in {pods:?}"))
}

pub(crate) fn job(c: &Cluster) -> Outcome {
    c.wait_for(
        "job/job",
        "{.status.conditions[?(@.type==\"Complete\")].status}",
        2 * MINUTE,
        |s| s == "True",
    )?;
    let succeeded = c.get("job/job", "{.status.succeeded}");
    if succeeded != "2" {
        return Err(format!("succeeded {succeeded}"));
    }
    let logs = c.kubectl_ok(&["logs", "job/job"])?;
    contains(&logs, &["job-done"])
}

pub(crate) fn crashloop(c: &Cluster) -> Outcome {
    // kubelet's back-off (10 s, then 20 s) between the restarts.
    let mut saw_backoff = false;
    c.wait("two restarts and CrashLoopBackOff", 3 * MINUTE, || {
        let reason = c.get(
            "pod/crashloop",
            "{.status.containerStatuses[0].state.waiting.reason}",
        );
        saw_backoff |= reason == "CrashLoopBackOff";
        let restarts: u32 = c
            .get(
                "pod/crashloop",
                "{.status.containerStatuses[0].restartCount}",
            )
            .parse()
            .unwrap_or(0);
        if restarts >= 2 && saw_backoff {
            Ok(())
        } else {
            Err(format!("restarts {restarts}, reason {reason:?}"))
        }
    })?;
    let code = c.get(
        "pod/crashloop",
        "{.status.containerStatuses[0].lastState.terminated.exitCode}",
    );
    if code != "3" {
        return Err(format!("last exit code {code:?}"));
    }
    // While the newest attempt has exited too, kubelet's container GC (one dead container kept
    // per pod and name) may remove the one the API server's status still names as the last
    // state: kubelet then answers "unable to retrieve container logs" (ContainerStatus:
    // NotFound) until the status catches up, with any runtime. So ask again for a while.
    c.wait("kubectl logs --previous", MINUTE, || {
        let previous = c.kubectl_ok(&["logs", "crashloop", "--previous"])?;
        contains(&previous, &["attempt-"])
    })
}

/// Container IDs and restart counts of the running pods, to compare across restarts (the
/// crash-looping pod restarts on its own, so it is left out).
pub(crate) fn pod_state(c: &Cluster) -> String {
    c.get(
        "pods",
        "{range .items[?(@.status.phase==\"Running\")]}{.metadata.name} {.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    )
    .lines()
    // Pods on their way out (an earlier scenario's `delete --wait=false`) may go at any time.
    .filter(|l| l.split_whitespace().count() == 3)
    .filter(|l| !l.starts_with("crashloop "))
    .map(|l| format!("{}\n", l.trim_end()))
    .collect()
}

pub(crate) fn daemon_restarts(c: &Cluster) -> Outcome {
    let before = pod_state(c);
    if before.lines().count() < 3 {
        return Err(format!("too few running pods to watch: {before:?}"));
    }
    // crustd crashes: its pods keep running, and kubelet reconnects.
    mark_kubelet_log(c, "crustd down");
    c.restart("crustd", "KILL")?;
    std::thread::sleep(Duration::from_secs(5));
    c.wait("node Ready after crustd's restart", MINUTE, || {
        node_ready(c)
    })?;
    // kubelet reports the failed calls of the outage until it has reconnected and synced.
    mark_kubelet_log(c, "crustd up");
    let after = pod_state(c);
    if after != before {
        return Err(format!(
            "pods changed across crustd's crash:\n{before}\n---\n{after}"
        ));
    }
    // A new pod starts on the restarted crustd.
    c.kubectl_ok(&["scale", "deploy/web", "--replicas=4"])?;
    c.kubectl_ok(&["rollout", "status", "deploy/web", "--timeout=60s"])?;
    // kubelet restarts and adopts every pod.
    let before = pod_state(c);
    c.restart("kubelet", "TERM")?;
    std::thread::sleep(Duration::from_secs(5));
    c.wait("node Ready after kubelet's restart", MINUTE, || {
        node_ready(c)
    })?;
    let after = pod_state(c);
    if after != before {
        return Err(format!(
            "pods changed across kubelet's restart:\n{before}\n---\n{after}"
        ));
    }
    Ok(())
}

pub(crate) fn grace_period(c: &Cluster) -> Outcome {
    let busybox = c.image("busybox");
    // PID 1 ignores SIGTERM (no handler): kubelet waits the grace period, then SIGKILL.
    c.apply(&pod_yaml(
        "stubborn",
        &format!(
            "terminationGracePeriodSeconds: 4\ncontainers:\n- name: c\n  image: {busybox}\n  command: [sh, -c, 'trap \"\" TERM; while true; do sleep 1; done']"
        ),
    ))?;
    c.wait_phase("stubborn", "Running", MINUTE)?;
    let started = Instant::now();
    c.kubectl_ok(&["delete", "pod", "stubborn", "--wait=true", "--timeout=60s"])?;
    let took = started.elapsed();
    if took < Duration::from_secs(4) || took > Duration::from_secs(20) {
        return Err(format!(
            "a pod ignoring SIGTERM with a 4 s grace period was gone after {took:?}"
        ));
    }
    Ok(())
}

/// kubelet with the `EventedPLEG` gate: its generic relist runs only every 300 s, so a
/// container's exit noticed within seconds came through crust's GetContainerEvents stream;
/// kubelet's own metrics count the stream's connection and the events' latencies, and no
/// error.
pub(crate) fn evented_pleg(c: &Cluster) -> Outcome {
    let busybox = c.image("busybox");
    c.apply(&pod_yaml(
        "evented",
        &format!(
            "restartPolicy: Never\ncontainers:\n- name: c\n  image: {busybox}\n  command: [sh, -c, 'sleep 5; exit 7']"
        ),
    ))?;
    c.wait_phase("evented", "Running", MINUTE)?;
    let started = Instant::now();
    c.wait_phase("evented", "Failed", Duration::from_secs(40))?;
    let took = started.elapsed();
    let code = c.get(
        "pod/evented",
        "{.status.containerStatuses[0].state.terminated.exitCode}",
    );
    if code != "7" {
        return Err(format!("exit code {code:?}"));
    }
    let node = "/api/v1/nodes/crust-node/proxy";
    let metrics = c.kubectl_ok(&["get", "--raw", &format!("{node}/metrics")])?;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let connected = value("kubelet_evented_pleg_connection_success_count");
    let errors = value("kubelet_evented_pleg_connection_error_count");
    let events = value("kubelet_evented_pleg_connection_latency_seconds_count");
    if connected < 1.0 || errors > 0.0 || events < 1.0 {
        return Err(format!(
            "evented PLEG: {connected} connections, {errors} errors, {events} events"
        ));
    }
    let log = c.kubelet_log();
    if let Some(l) = log
        .lines()
        .find(|l| l.contains("Evented PLEG") && l.starts_with('E'))
    {
        return Err(format!("kubelet: {l}"));
    }
    c.kubectl_ok(&["delete", "pod", "evented", "--wait=false"])?;
    eprintln!("  exit noticed {took:?} after Running (generic relist: every 300 s)");
    Ok(())
}
