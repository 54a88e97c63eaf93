//! Reaching pods through the API server and kubelet: kubectl's streams, kubelet's stats.

use super::*;

pub(crate) fn streaming(c: &Cluster) -> Outcome {
    let pod = web_pod(c)?;
    // exec, with a terminal (script(1) gives kubectl one) and without.
    let out = c.kubectl_ok(&["exec", &pod, "--", "sh", "-c", "echo exec-ok; exit 0"])?;
    contains(&out, &["exec-ok"])?;
    let (ok, out) = c.kubectl(&["exec", &pod, "--", "sh", "-c", "exit 4"]);
    if ok || !out.contains("exit code 4") {
        return Err(format!("exit 4 reported as {out:?}"));
    }
    let tty_cmd = format!(
        "{} --kubeconfig {} exec -it {pod} -- sh -c 'tty; echo in-tty'",
        c.kubectl.display(),
        c.kubeconfig.display()
    );
    let tty = std::process::Command::new("script")
        .args(["-qec", &tty_cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    contains(
        &String::from_utf8_lossy(&tty.stdout),
        &["/dev/pts/", "in-tty"],
    )?;

    // logs and logs -f.
    let logs = c.kubectl_ok(&["logs", &pod])?;
    if !logs.is_empty() {
        return Err(format!("httpd -f logs nothing, yet: {logs:?}"));
    }
    let busybox = c.image("busybox");
    c.apply(&pod_yaml(
        "ticker",
        &format!(
            "containers:\n- name: c\n  image: {busybox}\n  command: [sh, -c, 'i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done']\n  stdin: true"
        ),
    ))?;
    c.wait_phase("ticker", "Running", MINUTE)?;
    let mut follow = c
        .kubectl_cmd(&["logs", "-f", "ticker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let lines = BufReader::new(follow.stdout.take().unwrap());
    let mut seen = vec![];
    for line in lines.lines().map_while(Result::ok) {
        seen.push(line);
        if seen.len() >= 15 {
            break;
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    if seen.len() < 15 || !seen.iter().all(|l| l.starts_with("tick-")) {
        return Err(format!("logs -f gave {seen:?}"));
    }

    // attach: output of the running container.
    let mut attach = c
        .kubectl_cmd(&["attach", "ticker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let first = BufReader::new(attach.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("tick-"));
    let _ = attach.kill();
    let _ = attach.wait();
    if first.is_none() {
        return Err("kubectl attach printed no tick".into());
    }

    // port-forward to the web pod's httpd.
    let port = free_port();
    let mut pf = c
        .kubectl_cmd(&["port-forward", &pod, &format!("{port}:8080")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut pf_out = BufReader::new(pf.stdout.take().unwrap());
    let mut line = String::new();
    let _ = pf_out.read_line(&mut line);
    let got = std::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .map_err(|e| e.to_string())?;
    let _ = pf.kill();
    let _ = pf.wait();
    contains(&String::from_utf8_lossy(&got.stdout), &["hello-web-"])?;

    // cp both ways.
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let src = tmp.path().join("to-pod.txt");
    std::fs::write(&src, "copied-in\n").map_err(|e| e.to_string())?;
    c.kubectl_ok(&[
        "cp",
        &src.display().to_string(),
        &format!("{pod}:/tmp/to-pod.txt"),
    ])?;
    let back = tmp.path().join("back.txt");
    c.kubectl_ok(&[
        "cp",
        &format!("{pod}:/tmp/to-pod.txt"),
        &back.display().to_string(),
    ])?;
    let copied = std::fs::read_to_string(&back).unwrap_or_default();
    if copied != "copied-in\n" {
        return Err(format!("cp round trip gave {copied:?}"));
    }

    // debug: an ephemeral container in the pod, sharing the target's PID namespace.
    c.kubectl_ok(&[
        "debug",
        &pod,
        "--image",
        &busybox,
        "-c",
        "dbg",
        "--target",
        "httpd",
        "--",
        "sh",
        "-c",
        "echo debug-ok; ps; sleep 2",
    ])?;
    c.wait("the ephemeral container's output", MINUTE, || {
        let logs = c.kubectl_ok(&["logs", &pod, "-c", "dbg"])?;
        contains(&logs, &["debug-ok", "httpd -f"])
    })
}

pub(crate) fn stats(c: &Cluster) -> Outcome {
    let node = "/api/v1/nodes/crust-node/proxy";
    let check = || -> Outcome {
        let summary = c.kubectl_ok(&["get", "--raw", &format!("{node}/stats/summary")])?;
        let summary: serde_json::Value =
            serde_json::from_str(&summary).map_err(|e| e.to_string())?;
        let pod = summary["pods"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["podRef"]["name"] == "ticker")
            .ok_or("no ticker pod in /stats/summary")?;
        let ctr = &pod["containers"][0];
        let cpu = ctr["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap_or(0);
        let mem = ctr["memory"]["workingSetBytes"].as_u64().unwrap_or(0);
        let rootfs = ctr["rootfs"]["usedBytes"].as_u64();
        let logs = ctr["logs"]["usedBytes"].as_u64().unwrap_or(0);
        let pod_cpu = pod["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap_or(0);
        let pod_mem = pod["memory"]["workingSetBytes"].as_u64().unwrap_or(0);
        if cpu == 0 || mem == 0 || rootfs.is_none() || logs == 0 || pod_cpu == 0 || pod_mem == 0 {
            return Err(format!("ticker's stats: {pod}"));
        }
        // The image filesystem as kubelet sees it through crust's ImageFsInfo: its image GC
        // and eviction act on these figures.
        let image_fs = &summary["node"]["runtime"]["imageFs"];
        let figure = |k: &str| image_fs[k].as_u64().unwrap_or(0);
        if figure("capacityBytes") == 0 || figure("usedBytes") == 0 {
            return Err(format!("the node's image filesystem: {image_fs}"));
        }
        Ok(())
    };
    c.wait(
        "CPU, memory and disk figures for the ticker pod",
        MINUTE,
        check,
    )?;
    let resource = c.kubectl_ok(&["get", "--raw", &format!("{node}/metrics/resource")])?;
    contains(
        &resource,
        &[
            "container_cpu_usage_seconds_total{container=\"c\",namespace=\"default\",pod=\"ticker\"}",
            "container_memory_working_set_bytes{container=\"c\",namespace=\"default\",pod=\"ticker\"}",
            "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"ticker\"}",
        ],
    )?;
    let metrics = c.kubectl_ok(&["get", "--raw", &format!("{node}/metrics")])?;
    contains(&metrics, &["kubelet_pod_start_sli_duration_seconds_count"])
}
