//! critest — cri-tools' CRI validation suite, the newest release (pinned in
//! tests/tools/cri-tools) — against a fresh crustd. The images it names on registry.k8s.io,
//! k8s.gcr.io and gcr.io come from the local registry through crustd's registry mirrors
//! (stand-ins built by tests/fixtures/critest-images.py); pods get a CNI bridge whose host side
//! has an address on the pod subnet, so the host reaches pod IPs and host ports without
//! forwarding or masquerading anything.

use std::process::{Command, Stdio};

use crust_e2e::bridge::Bridge;
use crust_e2e::{Daemon, fixtures_dir, k8s_tool, registry};

/// Specs that cannot pass on this machine, each with the reason (README.md lists them too).
const CANNOT_RUN_HERE: &[(&str, &str)] = &[(
    "public image with digest should be pulled and removed",
    "pulls gcr.io/k8s-staging-cri-tools/test-image-digest by the digest of the upstream \
     index; only the upstream bytes have it, and no public registry is reachable",
)];

/// The mirrors that send critest's registries to the local one.
fn mirrors(addr: &str) -> String {
    ["registry.k8s.io", "k8s.gcr.io", "gcr.io"]
        .iter()
        .map(|host| {
            format!(
                "[image.registries.\"{host}\"]\nmirrors = [\"http://{addr}\"]\nskip_upstream = true\n"
            )
        })
        .collect()
}

struct Counts {
    tests: usize,
    failed: Vec<String>,
    /// Each skipped spec with the reason critest gave.
    skipped: Vec<(String, String)>,
}

fn unescape(s: &str) -> String {
    s.replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Counts from ginkgo's JUnit report (no XML crate needed: one testcase element per spec).
fn counts(junit: &str) -> Counts {
    let mut c = Counts {
        tests: 0,
        failed: Vec::new(),
        skipped: Vec::new(),
    };
    for case in junit.split("<testcase ").skip(1) {
        let body = case.split("</testcase>").next().unwrap_or(case);
        let name = body
            .split("name=\"")
            .nth(1)
            .and_then(|n| n.split('"').next())
            .unwrap_or("?");
        // ginkgo reports its suite-level nodes as testcases too; count only specs.
        if name.starts_with("[BeforeSuite]")
            || name.starts_with("[AfterSuite]")
            || name.starts_with("[SynchronizedBeforeSuite]")
            || name.starts_with("[SynchronizedAfterSuite]")
            || name.starts_with("[ReportAfterSuite]")
        {
            continue;
        }
        c.tests += 1;
        if body.contains("<failure") || body.contains("<error") {
            c.failed.push(unescape(name));
        } else if let Some(skip) = body.split("<skipped").nth(1) {
            let why = skip
                .split("message=\"")
                .nth(1)
                .and_then(|m| m.split('"').next())
                .unwrap_or("");
            c.skipped.push((unescape(name), unescape(why)));
        }
    }
    c
}

#[tokio::test]
async fn critest_passes_every_spec_this_machine_can_run() {
    let d = critest_daemon().await;
    let bridge = Bridge::new(&d);
    let skip = CANNOT_RUN_HERE
        .iter()
        .map(|(spec, _)| regex_quote(spec))
        .collect::<Vec<_>>()
        .join("|");
    let c = run_critest(&d, &bridge, &format!("-ginkgo.skip={skip}")).await;
    // The suite really ran: most of its specs are for any Linux runtime.
    assert!(c.passed >= 100, "only {} critest specs passed", c.passed);
    // Pods critest left (none, if it cleaned up) go with the daemon, then the bridge.
    d.shutdown().await;
    drop(bridge);
}

/// critest's port mapping specs on a network without the portmap plugin, where crust publishes
/// the host ports itself (critest fetches through 127.0.0.1:hostPort).
#[tokio::test]
async fn critest_port_mapping_passes_with_crusts_own_host_ports() {
    let d = critest_daemon().await;
    let bridge = Bridge::without_portmap(&d);
    let c = run_critest(&d, &bridge, "-ginkgo.focus=port mapping").await;
    assert_eq!(c.passed, 2, "critest's two port mapping specs");
    d.shutdown().await;
    drop(bridge);
}

/// A crustd that pulls critest's images from the test registry.
async fn critest_daemon() -> Daemon {
    let reg = registry();
    // One push at a time: both tests start at once, and two pushes of the same images into
    // the one registry failed once (of six runs).
    static PUSH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let pushed = {
        let _push = PUSH.lock().unwrap_or_else(|e| e.into_inner());
        Command::new("python3")
            .arg(fixtures_dir().join("critest-images.py"))
            .arg(&reg.addr)
            .status()
            .unwrap()
    };
    assert!(pushed.success(), "critest-images.py failed");
    Daemon::start_config("", &mirrors(&reg.addr)).await.unwrap()
}

struct Run {
    passed: usize,
}

/// critest against `d` on `bridge` with `select` (a ginkgo focus or skip); fails on any failed
/// spec.
async fn run_critest(d: &Daemon, bridge: &Bridge, select: &str) -> Run {
    // One critest at a time: their host port specs publish the same port.
    static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = ONE.lock().await;
    let critest = k8s_tool("critest");
    // The bridge plugin adopts an existing bridge: made here with a host address on the pod
    // subnet, the host reaches pod IPs (critest fetches from them) by local delivery.
    for args in [
        vec!["link", "add", &bridge.name, "type", "bridge"],
        vec![
            "addr",
            "add",
            &format!("{}.254/24", bridge.subnet_prefix),
            "dev",
            &bridge.name,
        ],
        vec!["link", "set", &bridge.name, "up"],
    ] {
        assert!(Command::new("ip").args(&args).status().unwrap().success());
    }

    let report = d.dir.path().join("critest-junit.xml");
    let endpoint = format!("unix://{}", d.socket.display());
    let work = d.dir.path().join("critest-tmp");
    std::fs::create_dir_all(&work).unwrap();
    let out = tokio::task::spawn_blocking({
        let report = report.clone();
        let select = select.to_string();
        move || {
            Command::new(&critest)
                .args([
                    "-runtime-endpoint",
                    &endpoint,
                    "-image-endpoint",
                    &endpoint,
                    "-ginkgo.no-color",
                    "-ginkgo.timeout",
                    "40m",
                ])
                .arg(select)
                .arg(format!("-ginkgo.junit-report={}", report.display()))
                // critest writes seccomp profiles and host paths under TMPDIR.
                .env("TMPDIR", &work)
                .stdin(Stdio::null())
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let log = d.dir.path().join("critest.log");
    std::fs::write(&log, [&out.stdout[..], &out.stderr[..]].concat()).unwrap();
    let junit = std::fs::read_to_string(&report).unwrap_or_else(|e| {
        panic!(
            "critest wrote no report ({e}); its output:\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let c = counts(&junit);
    let passed = c.tests - c.failed.len() - c.skipped.len();
    eprintln!(
        "critest {} ({select}): {passed} specs passed, {} failed, {} skipped (of {})",
        critest_version(),
        c.failed.len(),
        c.skipped.len(),
        c.tests
    );
    for (spec, why) in &c.skipped {
        eprintln!("  skipped: {spec}: {why}");
    }
    assert!(
        c.failed.is_empty(),
        "critest specs failed: {:#?}\n(the whole output is in {}; its tail:)\n{}",
        c.failed,
        log.display(),
        tail(&String::from_utf8_lossy(&out.stdout), 120)
    );
    Run { passed }
}

fn critest_version() -> String {
    Command::new(k8s_tool("critest"))
        .arg("-version")
        .output()
        .map(|o| {
            let out = String::from_utf8_lossy(&o.stdout);
            out.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_default()
}

fn regex_quote(s: &str) -> String {
    s.chars()
        .map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                format!("\\{c}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn junit_counting_sees_failures_and_skips() {
    let xml = r#"<testsuites><testsuite>
<testcase name="[BeforeSuite]" status="passed"></testcase>
<testcase name="[It] a" status="passed"></testcase>
<testcase name="[It] b &#34;q&#34;" status="failed"><failure message="x">boom</failure></testcase>
<testcase name="[It] c" status="skipped"><skipped message="skipped - no &#39;x&#39;"></skipped></testcase>
</testsuite></testsuites>"#;
    let c = counts(xml);
    assert_eq!(c.tests, 3);
    assert_eq!(c.failed, vec!["[It] b \"q\"".to_string()]);
    assert_eq!(
        c.skipped,
        vec![("[It] c".to_string(), "skipped - no 'x'".to_string())]
    );
}
