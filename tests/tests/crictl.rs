//! The README's crictl walk-through, run by the real crictl — the newest release and an old
//! one (v1.30, whose gRPC-Go sends the socket path as the HTTP/2 `:authority`, which h2 alone
//! refuses) — checking what each command prints, not only its exit code. Python's grpcio,
//! which also sends the socket path, calls the socket too.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crust_e2e::{Daemon, free_port, k8s_tool, registry, scaled};

const LIMIT: Duration = Duration::from_secs(60);

struct Crictl {
    bin: PathBuf,
    socket: PathBuf,
}

impl Crictl {
    fn command(&self, args: &[&str]) -> Command {
        let endpoint = format!("unix://{}", self.socket.display());
        let mut cmd = Command::new(&self.bin);
        cmd.args([
            "--runtime-endpoint",
            &endpoint,
            "--image-endpoint",
            &endpoint,
            "--timeout",
            "60s",
        ])
        .args(args)
        // No /etc/crictl.yaml is needed or read.
        .env("CRI_CONFIG_FILE", "/dev/null");
        cmd
    }

    /// Runs a command to its end (killed after [`LIMIT`]), with `stdin` written to it.
    fn run_with_input(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start crictl");
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).unwrap();
        drop(input);
        wait_output(child, args)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with_input(args, "")
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{} {args:?} failed ({}): {}{}",
            self.bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a command that runs until killed and waits for a line of its stdout that
    /// `want` accepts; returns that line. The command is killed either way.
    fn until_line(&self, args: &[&str], want: impl Fn(&str) -> bool) -> String {
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start crictl");
        let lines = read_lines(&mut child);
        let deadline = Instant::now() + scaled(LIMIT);
        let mut seen = Vec::new();
        let found = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if want(&line) => break Some(line),
                Ok(line) => seen.push(line),
                Err(_) => break None,
            }
        };
        let _ = child.kill();
        let _ = child.wait();
        found.unwrap_or_else(|| {
            panic!("crictl {args:?} never printed the line wanted; saw {seen:?}")
        })
    }
}

fn wait_output(mut child: Child, args: &[&str]) -> Output {
    let deadline = Instant::now() + scaled(LIMIT);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("crictl {args:?} did not finish in {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn write_json(dir: &Path, name: &str, v: serde_json::Value) -> String {
    let p = dir.join(name);
    std::fs::write(&p, v.to_string()).unwrap();
    p.display().to_string()
}

/// Every command of the README's crictl section, with one crictl binary.
fn walk_through(d: &Daemon, bin: PathBuf, attach_works: bool) {
    let name = bin.display().to_string();
    let c = Crictl {
        bin,
        socket: d.socket.clone(),
    };
    let image = registry().busybox();
    let (repo, tag) = image.rsplit_once(':').unwrap();

    let version = c.ok(&["version"]);
    assert!(version.contains("RuntimeName:  crust"), "{name}: {version}");
    assert!(
        version.contains("RuntimeApiVersion:  v1"),
        "{name}: {version}"
    );

    let info: serde_json::Value = serde_json::from_str(&c.ok(&["info"])).unwrap();
    let conditions = info["status"]["conditions"].as_array().unwrap();
    assert!(
        conditions
            .iter()
            .any(|x| x["type"] == "RuntimeReady" && x["status"] == true),
        "{name}: {info}"
    );

    let pulled = c.ok(&["pull", &image]);
    assert!(
        pulled.contains("Image is up to date for sha256:"),
        "{name}: {pulled}"
    );
    let images = c.ok(&["images"]);
    assert!(
        images
            .lines()
            .any(|l| l.starts_with(repo) && l.split_whitespace().nth(1) == Some(tag)),
        "{name}: {images}"
    );

    let dir = tempfile::tempdir().unwrap();
    let pod_json = write_json(
        dir.path(),
        "pod.json",
        serde_json::json!({
            "metadata": {"name": "crictl-web", "namespace": "default", "uid": "crictl-web-uid", "attempt": 0},
            "log_directory": d.logs.join("crictl-web"),
            "linux": {}
        }),
    );
    let ctr_json = write_json(
        dir.path(),
        "ctr.json",
        serde_json::json!({
            "metadata": {"name": "web"},
            "image": {"image": image},
            "command": ["sh", "-c", "mkdir -p /www && echo hello-pf > /www/index.html && httpd -p 8080 -h /www && i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"],
            "log_path": "web.log",
            "linux": {}
        }),
    );
    let pod = c.ok(&["runp", &pod_json]).trim().to_string();
    assert!(is_id(&pod), "{name}: runp printed {pod:?}");
    let ctr = c
        .ok(&["create", &pod, &ctr_json, &pod_json])
        .trim()
        .to_string();
    assert!(is_id(&ctr), "{name}: create printed {ctr:?}");
    assert_eq!(c.ok(&["start", &ctr]).trim(), ctr, "{name}");

    let ps = c.ok(&["ps"]);
    let row = ps
        .lines()
        .find(|l| l.starts_with(&ctr[..13]))
        .unwrap_or_else(|| panic!("{name}: ps lacks {ctr}: {ps}"));
    assert!(
        row.contains("Running") && row.contains("web"),
        "{name}: {row}"
    );
    let inspect: serde_json::Value = serde_json::from_str(&c.ok(&["inspect", &ctr])).unwrap();
    assert_eq!(inspect["status"]["state"], "CONTAINER_RUNNING", "{name}");
    assert_eq!(inspect["status"]["metadata"]["name"], "web", "{name}");
    let inspectp: serde_json::Value = serde_json::from_str(&c.ok(&["inspectp", &pod])).unwrap();
    assert_eq!(inspectp["status"]["state"], "SANDBOX_READY", "{name}");
    assert_eq!(
        inspectp["status"]["metadata"]["name"], "crictl-web",
        "{name}"
    );

    // Logs: what is there, then -f sees a line written after it started.
    let logs = c.until_line(&["logs", &ctr], |l| l.starts_with("tick "));
    let first: u64 = logs.trim_start_matches("tick ").parse().unwrap();
    let later = c.until_line(&["logs", "-f", &ctr], |l| {
        l.strip_prefix("tick ")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > first + 5)
    });
    assert!(later.starts_with("tick "), "{name}: {later}");

    // ExecSync, streaming exec with stdin, and with a terminal (under script(1), which gives
    // crictl one).
    assert_eq!(c.ok(&["exec", &ctr, "echo", "hi"]).trim(), "hi", "{name}");
    let piped = c.run_with_input(&["exec", "-i", &ctr, "sh"], "echo from-stdin\nexit 0\n");
    assert!(piped.status.success(), "{name}: {piped:?}");
    assert_eq!(String::from_utf8_lossy(&piped.stdout).trim(), "from-stdin");
    let endpoint = format!("unix://{}", d.socket.display());
    let tty_cmd = format!(
        "{} --runtime-endpoint {endpoint} --image-endpoint {endpoint} exec -it {ctr} sh -c 'tty; echo in-tty'",
        c.bin.display()
    );
    let tty = Command::new("script")
        .args(["-qec", &tty_cmd, "/dev/null"])
        .env("CRI_CONFIG_FILE", "/dev/null")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let tty_out = String::from_utf8_lossy(&tty.stdout);
    assert!(
        tty_out.contains("/dev/pts/") && tty_out.contains("in-tty"),
        "{name}: exec -it printed {tty_out:?}"
    );

    // Attach: the container's own output. crictl 1.30's attach cannot work with any runtime:
    // it never hands its --transport to the executor (cmd/crictl/attach.go builds its options
    // without it) and fails with "unknown transport: " before it calls the runtime.
    if attach_works {
        let attached = c.until_line(&["attach", &ctr], |l| l.starts_with("tick "));
        assert!(attached.starts_with("tick "), "{name}");
    }

    // Port-forward into the pod's loopback.
    let port = free_port();
    let mut pf = c
        .command(&["port-forward", &pod, &format!("{port}:8080")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + scaled(LIMIT);
    let body = loop {
        let got = Command::new("curl")
            .args([
                "-fsS",
                "--max-time",
                "3",
                &format!("http://127.0.0.1:{port}/"),
            ])
            .output()
            .unwrap();
        if got.status.success() {
            break String::from_utf8_lossy(&got.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "{name}: port-forward never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = pf.kill();
    let _ = pf.wait();
    assert_eq!(body.trim(), "hello-pf", "{name}");

    let stats = c.ok(&["stats"]);
    assert!(
        stats
            .lines()
            .any(|l| l.starts_with(&ctr[..13]) && l.contains("web")),
        "{name}: {stats}"
    );
    let statsp = c.ok(&["statsp"]);
    assert!(
        statsp.lines().any(|l| l.contains("crictl-web")),
        "{name}: {statsp}"
    );

    // Events: the stop shows up in a running `crictl events`.
    let mut events = c
        .command(&["events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = read_lines(&mut events);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.ok(&["stop", "-t", "1", &ctr]).trim(), ctr, "{name}");
    let deadline = Instant::now() + scaled(LIMIT);
    let mut event_text = String::new();
    while !event_text.contains("CONTAINER_STOPPED_EVENT") {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) => event_text.push_str(&l),
            Err(_) => panic!("{name}: events printed no stop: {event_text}"),
        }
    }
    let _ = events.kill();
    let _ = events.wait();
    assert!(event_text.contains(&ctr), "{name}: {event_text}");

    let exited = c.ok(&["ps", "-a", "-q"]);
    assert!(exited.lines().any(|l| l == ctr), "{name}: {exited}");
    assert_eq!(c.ok(&["rm", &ctr]).trim(), ctr, "{name}");
    assert!(
        c.ok(&["stopp", &pod])
            .contains(&format!("Stopped sandbox {pod}"))
    );
    assert!(
        c.ok(&["rmp", &pod])
            .contains(&format!("Removed sandbox {pod}"))
    );
    assert!(c.ok(&["pods", "-q"]).trim().is_empty(), "{name}");

    let fsinfo: serde_json::Value = serde_json::from_str(&c.ok(&["imagefsinfo"])).unwrap();
    let mountpoint = fsinfo["status"]["imageFilesystems"][0]["fsId"]["mountpoint"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        mountpoint.starts_with(&d.root.display().to_string()),
        "{name}: {fsinfo}"
    );

    let pruned = c.ok(&["rmi", "--prune"]);
    assert!(pruned.contains("Deleted: "), "{name}: {pruned}");
    assert!(!c.ok(&["images", "-q"]).contains("sha256"), "{name}");
}

#[tokio::test]
async fn crictl_newest_runs_the_readme_walk_through() {
    let d = Daemon::start().await.unwrap();
    walk_through(&d, k8s_tool("crictl"), true);
    d.shutdown().await;
}

#[tokio::test]
async fn crictl_v1_30_sends_the_socket_path_as_authority_and_is_served() {
    let d = Daemon::start().await.unwrap();
    walk_through(&d, k8s_tool("crictl-old"), false);
    d.shutdown().await;
}

/// Python's grpcio with a `unix:` target and default options sends the socket path as the
/// `:authority` too. The call is made with raw bytes (an empty VersionRequest), so no stubs.
#[tokio::test]
async fn python_grpcio_is_served() {
    let d = Daemon::start().await.unwrap();
    let script = r#"
import sys, grpc
ch = grpc.insecure_channel("unix://" + sys.argv[1])
call = ch.unary_unary("/runtime.v1.RuntimeService/Version")
reply = call(b"", timeout=10)
sys.stdout.write(reply.decode("latin-1"))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&d.socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "grpcio: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("crust"));
    d.shutdown().await;
}
