//! Exec, attach and port-forward through crust's streaming server, each over SPDY/3.1 and
//! over WebSocket, with crust's own client as the peer (and crustctl on top of it).

use std::time::Duration;

use crust_e2e::{Cri, PodFixture, container_config, cri, eventually, pod_config};
use crust_shim::streaming::StreamOptions;
use crust_shim::streaming::client::{self, PortForwarder, Session, Transport};
use tonic::Code;

const LONG: Duration = Duration::from_secs(30);
const BOTH: [Transport; 2] = [Transport::Spdy, Transport::WebSocket];

async fn exec_url(c: &mut Cri, id: &str, cmd: &[&str], tty: bool, stdin: bool) -> String {
    c.rt.exec(cri::ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        stdout: true,
        stderr: !tty,
    })
    .await
    .expect("Exec")
    .into_inner()
    .url
}

fn opts(tty: bool, stdin: bool) -> StreamOptions {
    StreamOptions {
        stdin,
        stdout: true,
        stderr: !tty,
        tty,
    }
}

/// Reads output until `want` appears in the stream `ch` (or any stream when 0).
async fn read_until(s: &mut Session, want: &str) -> String {
    let mut seen = String::new();
    let found = tokio::time::timeout(crust_e2e::scaled(LONG), async {
        while let Some((_, d)) = s.output.recv().await {
            seen.push_str(&String::from_utf8_lossy(&d));
            if seen.contains(want) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "{want:?} never came; got {seen:?}"
    );
    seen
}

/// Sends `line` until `want` appears in the output (each try waits up to a second).
async fn poll_until(
    s: &mut Session,
    stdin: &tokio::sync::mpsc::Sender<Vec<u8>>,
    line: &[u8],
    want: &str,
) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + crust_e2e::scaled(LONG);
    while tokio::time::Instant::now() < deadline {
        stdin.send(line.to_vec()).await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some((_, d)) = s.output.recv().await {
                seen.push_str(&String::from_utf8_lossy(&d));
                if seen.contains(want) {
                    return;
                }
            }
        })
        .await;
        if seen.contains(want) {
            return seen;
        }
    }
    panic!("{want:?} never came; got {seen:?}");
}

/// All output, split by stream, and the exit status.
async fn finish(mut s: Session) -> (String, String, Result<i32, String>) {
    let (mut out, mut err) = (String::new(), String::new());
    let drained = tokio::time::timeout(crust_e2e::scaled(LONG), async {
        while let Some((ch, d)) = s.output.recv().await {
            let text = String::from_utf8_lossy(&d).into_owned();
            if ch == 2 {
                err.push_str(&text)
            } else {
                out.push_str(&text)
            }
        }
    })
    .await;
    assert!(
        drained.is_ok(),
        "the session did not end; output so far {out:?} {err:?}"
    );
    let status = tokio::time::timeout(crust_e2e::scaled(LONG), s.status)
        .await
        .expect("status in time")
        .expect("status sent");
    (out, err, status)
}

#[tokio::test]
async fn exec_streams_output_stdin_and_exit_codes_over_spdy_and_websocket() {
    let PodFixture {
        d: _d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("exec-stream").await;
    let id = c
        .run(
            &pod,
            &pc,
            container_config("target", &image, &["sleep", "1000"]),
        )
        .await
        .unwrap();
    for t in BOTH {
        let url = exec_url(
            &mut c,
            &id,
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
            false,
            false,
        )
        .await;
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let s = client::remotecommand(&url, t, opts(false, false))
            .await
            .unwrap();
        let (out, err, status) = finish(s).await;
        assert_eq!(
            (out.as_str(), err.as_str(), status),
            ("out\n", "err\n", Ok(3)),
            "{t:?}"
        );

        // stdin reaches the command and its close ends it.
        let url = exec_url(&mut c, &id, &["sh", "-c", "tr a-z A-Z"], false, true).await;
        let mut s = client::remotecommand(&url, t, opts(false, true))
            .await
            .unwrap();
        let stdin = s.stdin.take().unwrap();
        stdin.send(b"hello ".to_vec()).await.unwrap();
        stdin.send(b"stream\n".to_vec()).await.unwrap();
        drop(stdin);
        let (out, _, status) = finish(s).await;
        assert_eq!((out.as_str(), status), ("HELLO STREAM\n", Ok(0)), "{t:?}");
    }
}

#[tokio::test]
async fn exec_with_a_terminal_sees_resizes() {
    let PodFixture {
        d: _d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("exec-tty").await;
    let id = c
        .run(
            &pod,
            &pc,
            container_config("target", &image, &["sleep", "1000"]),
        )
        .await
        .unwrap();
    for (t, (w, h)) in BOTH.into_iter().zip([(100u16, 40u16), (132, 50)]) {
        let url = exec_url(&mut c, &id, &["sh"], true, true).await;
        let mut s = client::remotecommand(&url, t, opts(true, true))
            .await
            .unwrap();
        s.resize.send((w, h)).await.unwrap();
        let stdin = s.stdin.take().unwrap();
        // Poll until the resize has landed: it travels to the monitor apart from stdin, so
        // the shell may read a command before the terminal has its size (stty then fails).
        let seen = poll_until(&mut s, &stdin, b"tty; stty size\n", &format!("{h} {w}")).await;
        assert!(seen.contains("/dev/pts/"), "a terminal: {seen}");
        s.resize.send((w + 1, h + 1)).await.unwrap();
        poll_until(
            &mut s,
            &stdin,
            b"stty size\n",
            &format!("{} {}", h + 1, w + 1),
        )
        .await;
        stdin.send(b"exit 7\n".to_vec()).await.unwrap();
        let (_, _, status) = finish(s).await;
        assert_eq!(status, Ok(7), "{t:?}");
    }
}

fn processes_named(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

#[tokio::test]
async fn urls_are_single_use_expire_and_disconnects_kill_the_command() {
    let PodFixture {
        d: _d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start_with(
        "tokens",
        "[streaming]\ntoken_ttl = \"2s\"\nidle_timeout = \"2s\"",
    )
    .await;
    let id = c
        .run(
            &pod,
            &pc,
            container_config("target", &image, &["sleep", "1000"]),
        )
        .await
        .unwrap();

    let url = exec_url(&mut c, &id, &["true"], false, false).await;
    let (_, _, status) = finish(
        client::remotecommand(&url, Transport::Spdy, opts(false, false))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, Ok(0));
    for t in BOTH {
        let e = client::remotecommand(&url, t, opts(false, false))
            .await
            .err()
            .expect("reused URL refused");
        assert!(format!("{e:#}").contains("404"), "{e:#}");
    }
    let stale = exec_url(&mut c, &id, &["true"], false, false).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let e = client::remotecommand(&stale, Transport::Spdy, opts(false, false))
        .await
        .err()
        .expect("expired URL refused");
    assert!(format!("{e:#}").contains("404"), "{e:#}");
    let forged = url.rsplit_once('/').unwrap().0.to_string() + "/00";
    assert!(
        client::remotecommand(&forged, Transport::WebSocket, opts(false, false))
            .await
            .is_err()
    );

    // A client that goes away mid-exec leaves nothing running.
    for t in BOTH {
        let marker = if t == Transport::Spdy { "4241" } else { "4242" };
        let url = exec_url(
            &mut c,
            &id,
            &["sh", "-c", &format!("sleep {marker}")],
            false,
            false,
        )
        .await;
        let s = client::remotecommand(&url, t, opts(false, false))
            .await
            .unwrap();
        let needle = format!("sleep {marker}");
        assert!(
            eventually(LONG, || async { !processes_named(&needle).is_empty() }).await,
            "exec did not start"
        );
        let t0 = std::time::Instant::now();
        drop(s);
        // Dropping the session's channels ends its tasks, which closes the connection.
        assert!(
            eventually(LONG, || async { processes_named(&needle).is_empty() }).await,
            "{t:?}: the exec survived its client"
        );
        eprintln!("{t:?}: exec gone {:?} after its client", t0.elapsed());
    }

    // Idle sessions end (and their command with them); traffic in either direction counts.
    for t in BOTH {
        let url = exec_url(
            &mut c,
            &id,
            &[
                "sh",
                "-c",
                "for i in 1 2 3 4 5 6; do echo tick; sleep 0.5; done",
            ],
            false,
            false,
        )
        .await;
        let (out, _, status) = finish(
            client::remotecommand(&url, t, opts(false, false))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (out.matches("tick").count(), status),
            (6, Ok(0)),
            "{t:?}: output kept it alive"
        );
        let url = exec_url(&mut c, &id, &["sh", "-c", "sleep 4343"], false, false).await;
        let s = client::remotecommand(&url, t, opts(false, false))
            .await
            .unwrap();
        let (_, _, status) = finish(s).await;
        assert!(
            status.is_err(),
            "{t:?}: an idle session must not end as a success: {status:?}"
        );
        assert!(
            eventually(LONG, || async { processes_named("sleep 4343").is_empty() }).await,
            "{t:?}: the idle session's command survived"
        );
    }

    // Bad requests.
    let bad =
        c.rt.exec(cri::ExecRequest {
            container_id: id.clone(),
            cmd: vec!["sh".into()],
            tty: true,
            stderr: true,
            stdout: true,
            stdin: false,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    let bad =
        c.rt.exec(cri::ExecRequest {
            container_id: "nope".into(),
            cmd: vec!["sh".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::NotFound, "{bad:?}");
    let bad =
        c.rt.port_forward(cri::PortForwardRequest {
            pod_sandbox_id: "nope".into(),
            port: vec![80],
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::NotFound, "{bad:?}");
    let bad =
        c.rt.attach(cri::AttachRequest {
            container_id: id.clone(),
            stdin: true,
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::FailedPrecondition, "no stdin: {bad:?}");
}

#[tokio::test]
async fn attach_reads_output_and_writes_stdin_for_several_clients() {
    let PodFixture {
        d: _d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("attach").await;
    let mut cfg = container_config(
        "echoer",
        &image,
        &[
            "sh",
            "-c",
            "while read l; do echo got:$l; echo err:$l >&2; done; echo bye",
        ],
    );
    cfg.stdin = true;
    // The first attach that closes its stdin closes the container's.
    cfg.stdin_once = true;
    let id = c.run(&pod, &pc, cfg).await.unwrap();
    let attach = |stdin: bool| cri::AttachRequest {
        container_id: id.clone(),
        stdin,
        tty: false,
        stdout: true,
        stderr: true,
    };
    let url = c.rt.attach(attach(true)).await.unwrap().into_inner().url;
    let mut writer = client::remotecommand(&url, Transport::Spdy, opts(false, true))
        .await
        .unwrap();
    let url = c.rt.attach(attach(false)).await.unwrap().into_inner().url;
    let mut watcher = client::remotecommand(&url, Transport::WebSocket, opts(false, false))
        .await
        .unwrap();
    let stdin = writer.stdin.take().unwrap();
    stdin.send(b"one\n".to_vec()).await.unwrap();
    read_until(&mut writer, "got:one").await;
    // The watcher sees output from the moment its attach reached the monitor, which its
    // client cannot observe: keep writing until a line shows up there.
    let mut attached = false;
    for i in 0..100 {
        stdin.send(format!("ping{i}\n").into_bytes()).await.unwrap();
        if let Ok(Some((_, d))) =
            tokio::time::timeout(Duration::from_millis(100), watcher.output.recv()).await
            && String::from_utf8_lossy(&d).contains("ping")
        {
            attached = true;
            break;
        }
    }
    assert!(attached, "the second attach never saw output");
    stdin.send(b"two\n".to_vec()).await.unwrap();
    // stdout and stderr are separate pipes: either may arrive first.
    let seen = read_until(&mut watcher, "got:two").await;
    if !seen.contains("err:two") {
        read_until(&mut watcher, "err:two").await;
    }
    // The container's output is logged as usual while attached.
    let log = format!("{}/echoer/0.log", pc.log_directory);
    assert!(
        eventually(LONG, || async {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("got:two")
        })
        .await
    );
    // With stdin_once, closing the attach's stdin closes the container's: `read` sees EOF.
    drop(stdin);
    let (out, _, status) = finish(watcher).await;
    assert!(out.contains("bye"), "{out}");
    assert_eq!(status, Ok(0));
    c.wait_exited(&id, LONG).await.unwrap();
}

async fn http_get(fwd: client::Forwarded) -> String {
    let mut fwd = fwd;
    fwd.tx
        .send(b"GET / HTTP/1.0\r\n\r\n".to_vec())
        .await
        .unwrap();
    let mut body = Vec::new();
    let _ = tokio::time::timeout(crust_e2e::scaled(LONG), async {
        while let Some(d) = fwd.rx.recv().await {
            body.extend_from_slice(&d);
        }
    })
    .await;
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test]
async fn port_forward_reaches_pods_and_host_network_pods() {
    let PodFixture {
        d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("pf").await;
    c.run(
        &pod,
        &pc,
        container_config(
            "web",
            &image,
            &[
                "sh",
                "-c",
                "mkdir -p /www && echo hello-pf > /www/index.html && exec httpd -f -p 8080 -h /www",
            ],
        ),
    )
    .await
    .unwrap();
    let pf_url = |c: &mut Cri, pod: String| {
        let mut rt = c.rt.clone();
        async move {
            rt.port_forward(cri::PortForwardRequest {
                pod_sandbox_id: pod,
                port: vec![8080],
            })
            .await
            .unwrap()
            .into_inner()
            .url
        }
    };
    // SPDY: several connections at once on one session, and an error for a closed port.
    let url = pf_url(&mut c, pod.clone()).await;
    let pf = PortForwarder::connect(&url).await.unwrap();
    let mut served = false;
    for _ in 0..50 {
        let (a, b) = tokio::join!(http_get(pf.open(8080).await), http_get(pf.open(8080).await));
        if a.contains("hello-pf") && b.contains("hello-pf") {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        served,
        "httpd in the pod never answered through port-forward"
    );
    let closed = pf.open(8081).await;
    let err = tokio::time::timeout(LONG, closed.error)
        .await
        .unwrap()
        .unwrap();
    assert!(err.contains("8081"), "{err}");

    // WebSocket: the ports are in the URL.
    let url = pf_url(&mut c, pod.clone()).await;
    let mut conns = client::port_forward_ws(&url, &[8080]).await.unwrap();
    assert!(http_get(conns.remove(0)).await.contains("hello-pf"));

    // A host-network pod forwards to the host's loopback.
    let port = crust_e2e::free_port();
    let mut hpc = pod_config("pf-host", &d.logs);
    crust_e2e::pod_namespaces(&mut hpc).network = cri::NamespaceMode::Node as i32;
    let hpod = c.run_pod(&hpc).await.unwrap();
    let script = format!(
        "mkdir -p /www && echo hello-host > /www/index.html && exec httpd -f -p 127.0.0.1:{port} -h /www"
    );
    c.run(
        &hpod,
        &hpc,
        container_config("web", &image, &["sh", "-c", &script]),
    )
    .await
    .unwrap();
    let url =
        c.rt.port_forward(cri::PortForwardRequest {
            pod_sandbox_id: hpod.clone(),
            port: vec![port.into()],
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let pf = PortForwarder::connect(&url).await.unwrap();
    let mut ok = false;
    for _ in 0..50 {
        if http_get(pf.open(port).await).await.contains("hello-host") {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "host-network httpd never answered");
}

#[tokio::test]
async fn crustctl_exec_attach_and_port_forward() {
    let PodFixture {
        d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("ctl-stream").await;
    let script =
        "mkdir -p /www && echo via-crustctl > /www/index.html && exec httpd -f -p 8080 -h /www";
    let id = c
        .run(
            &pod,
            &pc,
            container_config("web", &image, &["sh", "-c", script]),
        )
        .await
        .unwrap();
    for transport in ["spdy", "websocket"] {
        let mut child = std::process::Command::new(crust_e2e::bin("crustctl"))
            .args(["--socket"])
            .arg(&d.socket)
            .args([
                "exec",
                "-i",
                "--transport",
                transport,
                &id[..12],
                "sh",
                "-c",
                "cat; exit 5",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"piped through\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(5), "{transport}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "piped through\n");
    }
    // attach: this process's stdin reaches a container created with stdin.
    let mut cfg = container_config(
        "reader",
        &image,
        &["sh", "-c", "read l; echo got:$l; exit 4"],
    );
    cfg.stdin = true;
    cfg.stdin_once = true;
    let rid = c.run(&pod, &pc, cfg).await.unwrap();
    let mut child = std::process::Command::new(crust_e2e::bin("crustctl"))
        .args(["--socket"])
        .arg(&d.socket)
        .args(["attach", &rid[..12]])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        // Input only reaches the container through the monitor's attach session, which
        // subscribes to the output first: the answer cannot be missed.
        stdin.write_all(b"typed\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "got:typed\n",
        "{out:?}"
    );
    assert_eq!(out.status.code(), Some(4), "{out:?}");

    let local = crust_e2e::free_port();
    let mut pf = std::process::Command::new(crust_e2e::bin("crustctl"))
        .args(["--socket"])
        .arg(&d.socket)
        .args(["port-forward", "ctl-stream", &format!("{local}:8080")])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut body = String::new();
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", local)) {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            body.clear();
            let _ = s.read_to_string(&mut body);
            if body.contains("via-crustctl") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = pf.kill();
    let _ = pf.wait();
    assert!(body.contains("via-crustctl"), "{body}");
}

/// kubectl (the Go client, its SPDY and WebSocket code) against crust, through a fake API
/// server that proxies the upgraded connection the way kubelet does. Multi-threaded: the
/// fake server keeps serving while this test blocks on kubectl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_and_port_forward_work_against_crust() {
    let Some(kubectl) = ["/usr/bin/kubectl", "/usr/local/bin/kubectl"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        eprintln!("SKIP: kubectl is not installed");
        return;
    };
    let PodFixture {
        d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("kubectl").await;
    let script =
        "mkdir -p /www && echo via-kubectl > /www/index.html && exec httpd -f -p 8080 -h /www";
    let id = c
        .run(
            &pod,
            &pc,
            container_config("web", &image, &["sh", "-c", script]),
        )
        .await
        .unwrap();
    let api = crust_e2e::kubeapi::serve(
        d.cri().await.unwrap(),
        crust_e2e::kubeapi::FakePod {
            name: "web".into(),
            pod_id: pod.clone(),
            container_id: id.clone(),
        },
    )
    .await;
    let cache = d.dir.path().join("kube-cache");
    let kubectl_cmd = |args: &[&str], websockets: bool| {
        let mut cmd = std::process::Command::new(kubectl);
        cmd.env("HOME", d.dir.path())
            .env("KUBECONFIG", "/dev/null")
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets.to_string())
            .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
            .arg("--server")
            .arg(&api)
            .arg("--cache-dir")
            .arg(&cache)
            .args(args);
        cmd
    };
    for websockets in [false, true] {
        let mut child = kubectl_cmd(
            &[
                "exec",
                "-i",
                "web",
                "--",
                "sh",
                "-c",
                "cat; echo to-stderr >&2; exit 3",
            ],
            websockets,
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
        {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"through kubectl\n")
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "through kubectl\n",
            "websockets={websockets}: {stderr}"
        );
        assert!(stderr.contains("to-stderr"), "{stderr}");
        assert_eq!(
            out.status.code(),
            Some(3),
            "websockets={websockets}: {stderr}"
        );
    }
    let local = crust_e2e::free_port();
    let mut pf = kubectl_cmd(
        &["port-forward", "pod/web", &format!("{local}:8080")],
        false,
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let mut body = String::new();
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", local)) {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            body.clear();
            let _ = s.read_to_string(&mut body);
            if body.contains("via-kubectl") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = pf.kill();
    let _ = pf.wait();
    assert!(
        body.contains("via-kubectl"),
        "kubectl port-forward: {body:?}"
    );
}

/// With `streaming.tls_cert_file`/`tls_key_file` the URLs are https and both protocols run
/// over TLS; a client must trust the CA.
#[tokio::test]
async fn streaming_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path().display().to_string();
    let script = format!(
        "set -e; cd {dir}; \
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=crust-test-ca 2>/dev/null; \
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out req.csr -subj /CN=127.0.0.1 2>/dev/null; \
         printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext.cnf; \
         openssl x509 -req -in req.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 1 -extfile ext.cnf 2>/dev/null"
    );
    assert!(
        std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .status()
            .unwrap()
            .success(),
        "openssl"
    );
    let PodFixture {
        d: _d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start_with(
        "tls",
        &format!(
            "[streaming]\ntls_cert_file = \"{dir}/cert.pem\"\ntls_key_file = \"{dir}/key.pem\""
        ),
    )
    .await;
    let id = c
        .run(
            &pod,
            &pc,
            container_config("target", &image, &["sleep", "1000"]),
        )
        .await
        .unwrap();
    let url = exec_url(&mut c, &id, &["echo", "secure"], false, false).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    // Plain HTTP to a TLS server gets nowhere.
    let plain = url.replacen("https://", "http://", 1);
    assert!(
        client::remotecommand(&plain, Transport::Spdy, opts(false, false))
            .await
            .is_err()
    );
    crust_shim::streaming::tls::trust_ca_file(&certs.path().join("ca.pem")).unwrap();
    for t in BOTH {
        let url = exec_url(&mut c, &id, &["echo", "secure"], false, false).await;
        let (out, _, status) = finish(
            client::remotecommand(&url, t, opts(false, false))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((out.as_str(), status), ("secure\n", Ok(0)), "{t:?}");
    }
}

/// Attach to a container with a terminal: input goes to its pty and resizes reach it.
#[tokio::test]
async fn attach_to_a_terminal_container_with_resizes() {
    let PodFixture {
        d: _d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("attach-tty").await;
    for (t, (w, h)) in BOTH.into_iter().zip([(90u16, 30u16), (120, 45)]) {
        // A shell of its own per protocol: nothing one session typed is left for the next.
        let mut cfg = container_config(&format!("shell-{w}"), &image, &["sh"]);
        cfg.stdin = true;
        cfg.tty = true;
        let id = c.run(&pod, &pc, cfg).await.unwrap();
        let url =
            c.rt.attach(cri::AttachRequest {
                container_id: id.clone(),
                stdin: true,
                tty: true,
                stdout: true,
                stderr: false,
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        let mut s = client::remotecommand(&url, t, opts(true, true))
            .await
            .unwrap();
        s.resize.send((w, h)).await.unwrap();
        let stdin = s.stdin.take().unwrap();
        // The resize and the input travel separately: ask until the new size shows.
        let mut seen = String::new();
        for _ in 0..50 {
            stdin.send(b"stty size\n".to_vec()).await.unwrap();
            if let Ok(Some((_, d))) =
                tokio::time::timeout(Duration::from_millis(200), s.output.recv()).await
            {
                seen.push_str(&String::from_utf8_lossy(&d));
                if seen.contains(&format!("{h} {w}")) {
                    break;
                }
            }
        }
        assert!(seen.contains(&format!("{h} {w}")), "{t:?}: {seen:?}");
    }
}
