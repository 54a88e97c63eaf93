//! What kubelet asks of a pod: hooks, probes, resources, volumes, security, logs.

use super::*;

pub(crate) fn init_and_hooks(c: &Cluster) -> Outcome {
    c.wait_phase("lifecycle", "Running", MINUTE)?;
    let init = c.get(
        "pod/lifecycle",
        "{.status.initContainerStatuses[0].state.terminated.reason}",
    );
    if init != "Completed" {
        return Err(format!("init container: {init:?}"));
    }
    c.wait("the container's log", MINUTE, || {
        let logs = c.kubectl_ok(&["logs", "lifecycle"])?;
        contains(&logs, &["from-init"])
    })?;
    let poststart = c.kubectl_ok(&["exec", "lifecycle", "--", "cat", "/work/poststart.txt"])?;
    contains(&poststart, &["from-poststart"])?;
    // Deleting runs preStop, then SIGTERM (the trap), well within the grace period.
    let started = Instant::now();
    c.kubectl_ok(&["delete", "pod", "lifecycle", "--wait=true", "--timeout=60s"])?;
    let took = started.elapsed();
    let host = c.dir.join("hostpath");
    let prestop = std::fs::read_to_string(host.join("prestop.txt")).unwrap_or_default();
    let term = std::fs::read_to_string(host.join("term.txt")).unwrap_or_default();
    contains(&prestop, &["from-prestop"])?;
    contains(&term, &["got-term"])?;
    if took > Duration::from_secs(10) {
        return Err(format!(
            "the container exits on SIGTERM, yet deletion took {took:?} (the grace period)"
        ));
    }
    Ok(())
}

pub(crate) fn probes(c: &Cluster) -> Outcome {
    let busybox = c.image("busybox");
    c.apply(&pod_yaml(
        "probes",
        &format!(
            "containers:
- name: c
  image: {busybox}
  command: [sh, -c, 'mkdir -p /www; echo ok > /www/index.html; httpd -p 9000 -h /www; sleep 3; touch /tmp/started; exec httpd -f -p 8080 -h /www']
  startupProbe:
    exec: {{command: [test, -f, /tmp/started]}}
    periodSeconds: 1
    failureThreshold: 30
  readinessProbe:
    tcpSocket: {{port: 9000}}
    periodSeconds: 1
  livenessProbe:
    httpGet: {{path: /, port: 8080}}
    periodSeconds: 1"
        ),
    ))?;
    // grpc probes need a gRPC health server: an image built on the node with crustctl build,
    // run with imagePullPolicy Never (kubelet finds it in crust's store).
    let grpc = grpc_health_image(c)?;
    c.apply(&pod_yaml(
        "liveness-grpc",
        &format!(
            "terminationGracePeriodSeconds: 2
containers:
- name: c
  image: {grpc}
  imagePullPolicy: Never
  command: [/grpc-health-server, '9090', '8']
  readinessProbe:
    grpc: {{port: 9090}}
    periodSeconds: 1
  livenessProbe:
    grpc: {{port: 9090, service: crust-test}}
    periodSeconds: 1
    failureThreshold: 2"
        ),
    ))?;
    c.wait_ready("liveness-grpc", MINUTE)?;
    c.wait_ready("probes", MINUTE)?;
    let started = c.get("pod/probes", "{.status.containerStatuses[0].started}");
    if started != "true" {
        return Err(format!("started {started:?}"));
    }
    // The failing liveness probes (exec, httpGet, grpc) restart their containers.
    for pod in ["liveness-exec", "liveness-http", "liveness-grpc"] {
        c.wait(&format!("{pod} restarted"), 2 * MINUTE, || {
            let n: u32 = c
                .get(
                    &format!("pod/{pod}"),
                    "{.status.containerStatuses[0].restartCount}",
                )
                .parse()
                .unwrap_or(0);
            if n >= 1 {
                Ok(())
            } else {
                Err(format!("restarts {n}"))
            }
        })?;
    }
    let restarts = c.get("pod/probes", "{.status.containerStatuses[0].restartCount}");
    if restarts != "0" {
        return Err(format!("the healthy pod restarted {restarts} times"));
    }
    c.kubectl_ok(&[
        "delete",
        "pod",
        "probes",
        "liveness-exec",
        "liveness-http",
        "liveness-grpc",
        "--wait=false",
    ])
    .map(drop)
}

/// `crust-built/grpc-health:1`, built by the node's crustd (`crustctl build`) from the tests'
/// grpc-health-server and the host libraries it needs.
fn grpc_health_image(c: &Cluster) -> Result<String, String> {
    let image = "crust-built/grpc-health:1";
    let ctx = tempfile::tempdir().map_err(|e| e.to_string())?;
    let server = std::path::Path::new(env!("CARGO_BIN_EXE_grpc-health-server"));
    std::fs::copy(server, ctx.path().join("grpc-health-server")).map_err(|e| e.to_string())?;
    crust_e2e::copy_host_libraries(server, None, &ctx.path().join("hostlibs"));
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY hostlibs/ /lib/x86_64-linux-gnu/\n\
         COPY hostlibs/ld-linux-x86-64.so.2 /lib64/\nCOPY grpc-health-server /\n\
         EXPOSE 9090\nENTRYPOINT [\"/grpc-health-server\"]\n",
    )
    .map_err(|e| e.to_string())?;
    c.crustctl(&["build", "-t", image, &ctx.path().display().to_string()])?;
    Ok(image.into())
}

/// The number in a cgroup file of a pod's container.
pub(crate) fn cgroup_value(
    c: &Cluster,
    pod: &str,
    controller: &str,
    file: &str,
) -> Result<String, String> {
    let id = c.get(
        &format!("pod/{pod}"),
        "{.status.containerStatuses[0].containerID}",
    );
    let id = id
        .strip_prefix("crust://")
        .ok_or(format!("container id {id:?}"))?;
    let dir = c
        .container_cgroup(controller, id)
        .ok_or(format!("no {controller} cgroup for {pod}'s container {id}"))?;
    // The pod's QoS level is part of the path kubelet gave (cgroupfs driver).
    let path = dir.display().to_string();
    std::fs::read_to_string(dir.join(file))
        .map(|v| format!("{} {path}", v.trim()))
        .map_err(|e| format!("{path}/{file}: {e}"))
}

pub(crate) fn resources(c: &Cluster) -> Outcome {
    let busybox = c.image("busybox");
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let pods = [
        (
            "guaranteed",
            "limits: {cpu: 200m, memory: 64Mi}\n  requests: {cpu: 200m, memory: 64Mi}",
        ),
        (
            "burstable",
            "limits: {memory: 128Mi}\n  requests: {cpu: 100m, memory: 32Mi}",
        ),
        ("besteffort", "{}"),
    ];
    for (name, res) in pods {
        c.apply(&pod_yaml(
            name,
            &format!(
                "containers:\n- name: c\n  image: {busybox}\n  command: [sleep, '1000']\n  resources:\n    {}",
                res.replace("\n  ", "\n    ")
            ),
        ))?;
    }
    for (name, _) in pods {
        c.wait_phase(name, "Running", MINUTE)?;
    }
    let qos = |pod: &str| c.get(&format!("pod/{pod}"), "{.status.qosClass}");
    for (pod, class) in [
        ("guaranteed", "Guaranteed"),
        ("burstable", "Burstable"),
        ("besteffort", "BestEffort"),
    ] {
        if qos(pod) != class {
            return Err(format!("{pod}: qosClass {}", qos(pod)));
        }
    }
    let (mem_file, cpu_controller, cpu_file) = if v2 {
        ("memory.max", "", "cpu.max")
    } else {
        ("memory.limit_in_bytes", "cpu", "cpu.cfs_quota_us")
    };
    let expect = |pod: &str, controller: &str, file: &str, want: &str, qos_dir: &str| {
        let v = cgroup_value(c, pod, controller, file)?;
        let (value, path) = v.split_once(' ').unwrap_or((&v, ""));
        if !value.starts_with(want) {
            return Err(format!("{pod}: {file} = {value}, wanted {want} ({path})"));
        }
        if !path.contains(qos_dir) {
            return Err(format!("{pod}: cgroup {path} is not under {qos_dir}"));
        }
        Ok(())
    };
    expect(
        "guaranteed",
        "memory",
        mem_file,
        "67108864",
        "/kubepods/pod",
    )?;
    expect(
        "guaranteed",
        cpu_controller,
        cpu_file,
        "20000",
        "/kubepods/pod",
    )?;
    expect(
        "burstable",
        "memory",
        mem_file,
        "134217728",
        "/kubepods/burstable/pod",
    )?;
    expect(
        "besteffort",
        "memory",
        mem_file,
        if v2 { "max" } else { "9223372036854" },
        "/kubepods/besteffort/pod",
    )?;

    // In-place resize (on by default since 1.33): the new CPU limit reaches the cgroup.
    c.kubectl_ok(&[
        "patch",
        "pod",
        "guaranteed",
        "--subresource",
        "resize",
        "--patch",
        r#"{"spec":{"containers":[{"name":"c","resources":{"requests":{"cpu":"300m"},"limits":{"cpu":"300m"}}}]}}"#,
    ])?;
    c.wait("the resized CPU limit in the cgroup", MINUTE, || {
        expect(
            "guaranteed",
            cpu_controller,
            cpu_file,
            "30000",
            "/kubepods/pod",
        )
    })?;
    c.wait_for(
        "pod/guaranteed",
        "{.status.containerStatuses[0].resources.limits.cpu}",
        MINUTE,
        |v| v == "300m",
    )?;

    // Over its memory limit: OOMKilled.
    c.wait_for(
        "pod/oom",
        "{.status.containerStatuses[0].state.terminated.reason}",
        MINUTE,
        |r| r == "OOMKilled",
    )
    .map_err(|e| format!("{e}\n{}", c.describe("oom")))?;
    c.kubectl_ok(&[
        "delete",
        "pod",
        "guaranteed",
        "burstable",
        "besteffort",
        "oom",
        "--wait=false",
    ])
    .map(drop)
}

pub(crate) fn volumes(c: &Cluster) -> Outcome {
    let busybox = c.image("busybox");
    let host = c.dir.join("hostpath");
    c.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {greeting: from-configmap}\n",
    )?;
    c.apply(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: sec}\nstringData: {password: from-secret}\n",
    )?;
    c.apply(&pod_yaml(
        "volumes",
        &format!(
            "volumes:
- {{name: disk, emptyDir: {{}}}}
- {{name: mem, emptyDir: {{medium: Memory}}}}
- {{name: host, hostPath: {{path: {}, type: Directory}}}}
- {{name: cm, configMap: {{name: cm}}}}
- {{name: sec, secret: {{secretName: sec}}}}
- name: info
  downwardAPI:
    items:
    - {{path: name, fieldRef: {{fieldPath: metadata.name}}}}
    - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
containers:
- name: c
  image: {busybox}
  command: [sleep, '1000']
  volumeMounts:
  - {{name: disk, mountPath: /disk}}
  - {{name: mem, mountPath: /mem}}
  - {{name: host, mountPath: /host, readOnly: true}}
  - {{name: cm, mountPath: /cm}}
  - {{name: sec, mountPath: /sec}}
  - {{name: info, mountPath: /info}}",
            host.display()
        ),
    ))?;
    c.wait_phase("volumes", "Running", MINUTE)?;
    let out = c.kubectl_ok(&[
        "exec",
        "volumes",
        "--",
        "sh",
        "-c",
        "echo disk > /disk/f && cat /disk/f; grep ' /mem ' /proc/mounts; cat /host/from-host.txt; \
         touch /host/x 2>&1 || echo host-read-only; cat /cm/greeting; echo; cat /sec/password; echo; \
         cat /info/name; echo; cat /info/labels; echo; \
         wc -c < /var/run/secrets/kubernetes.io/serviceaccount/token; \
         cat /var/run/secrets/kubernetes.io/serviceaccount/namespace",
    ])?;
    contains(
        &out,
        &[
            "disk\n",
            " /mem tmpfs ",
            "from-host",
            "host-read-only",
            "from-configmap",
            "from-secret",
            "volumes\n",
            "app=\"volumes\"",
            "default",
        ],
    )?;
    // The service-account token is a JWT kubelet projected (hundreds of bytes).
    let token_len = out
        .lines()
        .filter_map(|l| l.trim().parse::<usize>().ok())
        .next()
        .unwrap_or(0);
    if token_len < 100 {
        return Err(format!("token of {token_len} bytes in {out:?}"));
    }
    // A changed ConfigMap reaches the running pod (kubelet's atomic writer, through the mount).
    c.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {greeting: updated}\n")?;
    c.wait("the updated ConfigMap in the pod", 2 * MINUTE, || {
        let v = c.kubectl_ok(&["exec", "volumes", "--", "cat", "/cm/greeting"])?;
        if v == "updated" { Ok(()) } else { Err(v) }
    })
}

pub(crate) fn security_context(c: &Cluster) -> Outcome {
    let busybox = c.image("busybox");
    c.apply(&pod_yaml(
        "secctx",
        &format!(
            "securityContext:
  runAsUser: 1000
  runAsGroup: 3000
  fsGroup: 2000
  seccompProfile: {{type: RuntimeDefault}}
volumes: [{{name: data, emptyDir: {{}}}}]
containers:
- name: c
  image: {busybox}
  command: [sleep, '1000']
  volumeMounts: [{{name: data, mountPath: /data}}]
  securityContext:
    readOnlyRootFilesystem: true
    allowPrivilegeEscalation: false
    capabilities: {{drop: [ALL], add: [NET_BIND_SERVICE]}}"
        ),
    ))?;
    c.wait_phase("secctx", "Running", MINUTE)?;
    let out = c.kubectl_ok(&[
        "exec",
        "secctx",
        "--",
        "sh",
        "-c",
        "id; touch /rootfs-file 2>&1 || echo rootfs-read-only; touch /data/f && stat -c 'data-group %g' /data/f; \
         grep -E '^(Seccomp|NoNewPrivs|CapEff|CapBnd):' /proc/self/status",
    ])?;
    contains(
        &out,
        &[
            "uid=1000",
            "gid=3000",
            "2000",
            "rootfs-read-only",
            "data-group 2000",
            "NoNewPrivs:\t1",
            "Seccomp:\t2",
            // Only the added capability is left, and a non-root user holds none in effect
            // (as with CRI-O and Docker: file capabilities or root are needed to use it).
            "CapBnd:\t0000000000000400",
            "CapEff:\t0000000000000000",
        ],
    )?;
    c.kubectl_ok(&["delete", "pod", "secctx", "volumes", "--wait=false"])
        .map(drop)
}

pub(crate) fn log_rotation(c: &Cluster) -> Outcome {
    let busybox = c.image("busybox");
    // Four MiB of output against containerLogMaxSize 1Mi: kubelet rotates the file and asks
    // crust to reopen it (ReopenContainerLog). Then a line a second, for ever: kubelet checks
    // sizes every 10 s, so a single last line can land just before a rotation and end up in the
    // rotated file, leaving the new live log empty through no fault of crust's.
    c.apply(&pod_yaml(
        "chatty",
        &format!(
            "containers:\n- name: c\n  image: {busybox}\n  command: [sh, -c, 'for r in 1 2 3 4; do i=0; while [ $i -lt 8000 ]; do echo round-$r-line-$i-padding-padding-padding-padding-padding-padding-padding-padding-padding-padding-padding-padding; i=$((i+1)); done; sleep 8; done; n=0; while true; do echo after-rotation-$n; n=$((n+1)); sleep 1; done']"
        ),
    ))?;
    c.wait_phase("chatty", "Running", MINUTE)?;
    let uid = c.get("pod/chatty", "{.metadata.uid}");
    let dir = c.dir.join(format!("pod-logs/default_chatty_{uid}/c"));
    c.wait("a rotated log file", 2 * MINUTE, || {
        let names: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if names.iter().any(|n| n.starts_with("0.log.")) {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    })?;
    c.wait(
        "output after the rotation in kubectl logs",
        2 * MINUTE,
        || {
            let logs = c.kubectl_ok(&["logs", "chatty", "--tail", "5"])?;
            contains(&logs, &["after-rotation"])
        },
    )?;
    let size = std::fs::metadata(dir.join("0.log"))
        .map(|m| m.len())
        .unwrap_or(0);
    if size > 2 * 1024 * 1024 {
        return Err(format!("the live log is {size} bytes"));
    }
    c.kubectl_ok(&["delete", "pod", "chatty", "--wait=false"])
        .map(drop)
}
