//! The benchmark client (`crust-bench`) works against crust: every workload runs, reports its
//! samples, and finds the per-pod monitors it measures. Times are never asserted here; they
//! are measured by scripts/bench.sh.

use std::process::Command;

use crust_e2e::{Daemon, bin, registry};

fn bench(d: &Daemon, args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin("crust-bench"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["--image", &registry().busybox()])
        .arg("--log-root")
        .arg(d.dir.path().join("bench-logs"))
        .args(["--cgroup-parent", &format!("{}/bench", d.cgroup_root)])
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "crust-bench {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bench_workload_runs_against_crust() {
    let d = Daemon::start().await.unwrap();
    let r = bench(&d, &["lifecycle", "-n", "2"]);
    assert_eq!(r["runtime"], "crust");
    let steps: Vec<&str> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "pod start (runp+create+start)",
            "RunPodSandbox",
            "CreateContainer",
            "StartContainer",
            "ExecSync echo",
            "StopContainer (timeout 0)",
            "StopPodSandbox+RemovePodSandbox"
        ]
    );
    for s in r["results"].as_array().unwrap() {
        assert_eq!(s["samples_ms"].as_array().unwrap().len(), 2);
    }

    let daemon_pid = d.pid().unwrap().to_string();
    let state = d.state.display().to_string();
    let r = bench(
        &d,
        &[
            "density",
            "--pods",
            "3",
            "--daemon-pid",
            &daemon_pid,
            "--helper",
            "crust-monitor",
            "--helper-match",
            &state,
        ],
    );
    assert_eq!(r["failures"], 0, "{r}");
    assert_eq!(r["remove_failures"], 0, "{r}");
    assert_eq!(r["helper_processes"], 3, "one monitor per pod: {r}");
    assert!(r["helper_pss_kib"].as_u64().unwrap() > 0);
    assert!(r["daemon_rss_kib"].as_u64().unwrap() > 0);

    let r = bench(&d, &["list", "--containers", "3", "-n", "2"]);
    assert_eq!(r["results"][0]["step"], "ListContainers (3)");
    assert_eq!(r["results"][1]["step"], "ListContainerStats (3)");

    // Everything the workloads made is gone.
    let mut c = d.cri().await.unwrap();
    let pods = c.list_pods().await.unwrap();
    assert!(pods.is_empty(), "{pods:?}");
    d.shutdown().await;
}
