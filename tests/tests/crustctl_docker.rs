//! crustctl's Docker verbs beyond run/ps/logs (tests/crustctl.rs): create and start, restart,
//! run -i/-t, names, exit codes, rmi's refusal, --add-host/--link. Against a real crustd.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crust_e2e::{Daemon, bin, registry};

fn ctl(d: &Daemon, args: &[&str]) -> Output {
    crust_e2e::crustctl(d, args)
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// crustctl with `input` on its stdin.
fn ctl_input(d: &Daemon, args: &[&str], input: &str) -> Output {
    crust_e2e::crustctl_input(d, args, input)
}

/// One line on stderr, with `want` in it, and exit code `code`.
fn fails_with(o: &Output, code: i32, want: &str) {
    assert_eq!(o.status.code(), Some(code), "{o:?}");
    let e = err(o);
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    assert!(e.contains(want), "{want:?} missing in {e}");
}

#[tokio::test]
async fn names_are_unique_generated_and_exit_codes_are_dockers() {
    let d = Daemon::start().await.unwrap();
    let image = registry().busybox();

    let o = ctl(&d, &["run", "-d", "--name", "web", &image, "sleep", "1000"]);
    assert!(o.status.success(), "{o:?}");
    let web = out(&o).trim().to_string();
    let o = ctl(&d, &["run", "-d", "--name", "web", &image, "sleep", "1000"]);
    fails_with(
        &o,
        125,
        &format!("Conflict. The container name \"/web\" is already in use by container \"{web}\""),
    );
    let o = ctl(&d, &["create", "--name", "bad name", &image, "true"]);
    fails_with(&o, 125, "Invalid container name (bad name)");

    // A generated adjective_noun name, usable wherever an id is.
    let o = ctl(&d, &["run", "-d", &image, "sleep", "1000"]);
    assert!(o.status.success(), "{o:?}");
    let id = out(&o).trim().to_string();
    let inspect: serde_json::Value =
        serde_json::from_slice(&ctl(&d, &["inspect", &id]).stdout).unwrap();
    let name = inspect["metadata"]["name"].as_str().unwrap().to_string();
    let (adj, noun) = name.split_once('_').expect("adjective_noun");
    assert!(
        !adj.is_empty()
            && !noun.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()),
        "{name}"
    );
    let o = ctl(&d, &["exec", &name, "hostname"]);
    assert!(o.status.success(), "{o:?}");
    assert!(ctl(&d, &["rm", "-f", &name]).status.success());

    // The container's own code; 127 not found, 126 not executable, 125 the rest.
    let o = ctl(&d, &["run", "--rm", &image, "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7), "{o:?}");
    let o = ctl(&d, &["run", "--rm", &image, "nosuchcmd"]);
    fails_with(&o, 127, "nosuchcmd: executable file not found in $PATH");
    let o = ctl(&d, &["run", "--rm", &image, "/etc/passwd"]);
    fails_with(&o, 126, "/etc/passwd: permission denied");
    let o = ctl(&d, &["run", "--rm", "--memory", "lots", &image, "true"]);
    fails_with(&o, 125, "--memory lots");
    let o = ctl(&d, &["run", "--no-such-flag", &image, "true"]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    let o = ctl(&d, &["run", "--rm", "127.0.0.1:1/none/such:latest", "true"]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    // A created container whose command is missing fails at create, and leaves nothing.
    let o = ctl(&d, &["create", "--name", "nocmd", &image, "nosuchcmd"]);
    fails_with(&o, 127, "nosuchcmd");
    let ps = out(&ctl(&d, &["ps", "-a"]));
    assert!(ps.contains("web") && !ps.contains("nocmd"), "{ps}");
    let pods = out(&ctl(&d, &["pods"]));
    assert_eq!(pods.lines().count(), 2, "the header and web's pod: {pods}");

    assert!(ctl(&d, &["rm", "-f", "web"]).status.success());
    d.shutdown().await;
}

#[tokio::test]
async fn create_start_attach_restart_and_stdin() {
    let d = Daemon::start().await.unwrap();
    let image = registry().busybox();

    // create prints the id; the container is Created until started.
    let o = ctl(
        &d,
        &[
            "create",
            "--name",
            "job",
            &image,
            "sh",
            "-c",
            "echo hi; echo oops >&2; exit 5",
        ],
    );
    assert!(o.status.success(), "{o:?}");
    let id = out(&o).trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    let ps = out(&ctl(&d, &["ps", "-a"]));
    assert!(ps.contains("job") && ps.contains("Created"), "{ps}");
    // start -a: its output and its exit code.
    let o = ctl(&d, &["start", "-a", "job"]);
    assert_eq!(o.status.code(), Some(5), "{o:?}");
    assert_eq!(out(&o), "hi\n");
    assert_eq!(err(&o), "oops\n");
    // Started again once exited: only this run's output.
    let o = ctl(&d, &["start", "-a", "job"]);
    assert_eq!(o.status.code(), Some(5), "{o:?}");
    assert_eq!(out(&o), "hi\n");
    let logs = out(&ctl(&d, &["logs", "job"]));
    assert_eq!(logs, "hi\nhi\n", "the log is kept across starts");
    // start without -a prints the name and leaves it running.
    let o = ctl(
        &d,
        &[
            "create",
            "--name",
            "svc",
            &image,
            "sh",
            "-c",
            "echo up; exec sleep 1000",
        ],
    );
    assert!(o.status.success(), "{o:?}");
    let o = ctl(&d, &["start", "svc"]);
    assert_eq!(out(&o), "svc\n", "{o:?}");
    assert!(out(&ctl(&d, &["ps"])).contains("svc"));
    // restart: stopped, then running again under the same name.
    let o = ctl(&d, &["restart", "-t", "1", "svc"]);
    assert_eq!(out(&o), "svc\n", "{o:?}");
    assert!(
        crust_e2e::eventually(Duration::from_secs(10), || async {
            out(&ctl(&d, &["logs", "svc"])) == "up\nup\n"
        })
        .await,
        "{}",
        out(&ctl(&d, &["logs", "svc"]))
    );
    let ps = out(&ctl(&d, &["ps"]));
    assert!(ps.contains("svc") && ps.contains("Up"), "{ps}");
    // stop, then start brings it back.
    assert!(ctl(&d, &["stop", "-t", "1", "svc"]).status.success());
    assert!(!out(&ctl(&d, &["ps"])).contains("svc"));
    assert!(ctl(&d, &["start", "svc"]).status.success());
    assert!(out(&ctl(&d, &["ps"])).contains("svc"));
    let o = ctl(&d, &["start", "-a", "svc", "job"]);
    fails_with(&o, 125, "cannot start and attach multiple containers");
    let o = ctl(&d, &["start", "nosuch"]);
    fails_with(&o, 125, "nosuch");

    // run -i: stdin reaches the container and its end closes the container's stdin.
    let o = ctl_input(
        &d,
        &["run", "-i", "--rm", &image, "sh", "-c", "cat; echo done"],
        "line one\nline two\n",
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(out(&o), "line one\nline two\ndone\n");
    // create -i, then start -a -i.
    assert!(
        ctl(
            &d,
            &["create", "-i", "--rm", "--name", "wc", &image, "wc", "-l"]
        )
        .status
        .success()
    );
    let o = ctl_input(&d, &["start", "-a", "-i", "wc"], "a\nb\nc\n");
    assert!(o.status.success(), "{o:?}");
    assert_eq!(out(&o).trim(), "3");
    assert!(
        !out(&ctl(&d, &["ps", "-a"])).contains("wc"),
        "--rm removed it"
    );

    // run -it: a terminal with this side's size (under script(1), which gives crustctl one).
    let cmd = format!(
        "stty cols 91 rows 33; {} --socket {} --log-root {} run -it --rm {image} sh -c \
         'tty; for i in $(seq 50); do s=$(stty size); [ \"$s\" = \"33 91\" ] && break; sleep 0.1; done; echo size=$s; exit 3'",
        bin("crustctl").display(),
        d.socket.display(),
        d.logs.display()
    );
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = out(&o);
    assert!(
        text.contains("/dev/pts/") && text.contains("size=33 91"),
        "{o:?}"
    );
    assert_eq!(o.status.code(), Some(3), "{o:?}");

    for n in ["job", "svc"] {
        assert!(ctl(&d, &["rm", "-f", n]).status.success());
    }
    assert_eq!(out(&ctl(&d, &["ps", "-a", "-q"])), "");
    d.shutdown().await;
}

#[tokio::test]
async fn rmi_refuses_images_in_use_unless_forced() {
    let d = Daemon::start().await.unwrap();
    let image = registry().busybox();
    let o = ctl(
        &d,
        &["run", "-d", "--name", "user", &image, "sleep", "1000"],
    );
    assert!(o.status.success(), "{o:?}");
    let ctr = out(&o).trim()[..12].to_string();
    let images = out(&ctl(&d, &["images"]));
    let img_short = images
        .lines()
        .find(|l| l.contains("crust-test/busybox"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap()
        .to_string();
    assert_eq!(img_short.len(), 12, "{images}");
    let o = ctl(&d, &["rmi", &image]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(
        err(&o).trim_end(),
        format!(
            "crustctl: Error response from daemon: conflict: unable to remove repository reference \"{image}\" (must force) - container {ctr} is using its referenced image {img_short}"
        )
    );
    // By short id too; an exited container still holds it.
    assert!(ctl(&d, &["stop", "-t", "0", "user"]).status.success());
    let o = ctl(&d, &["rmi", &img_short]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        err(&o).contains(&format!("container {ctr} is using")),
        "{o:?}"
    );
    assert!(out(&ctl(&d, &["images"])).contains("crust-test/busybox"));
    let o = ctl(&d, &["rmi", "nosuchimage"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(err(&o).contains("No such image: nosuchimage"), "{o:?}");
    // -f removes it anyway, printing what went.
    let o = ctl(&d, &["rmi", "-f", &img_short]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        out(&o).contains(&format!("Untagged: {image}")) && out(&o).contains("Deleted: sha256:"),
        "{o:?}"
    );
    assert!(!out(&ctl(&d, &["images"])).contains("crust-test/busybox"));
    assert!(ctl(&d, &["rm", "-f", "user"]).status.success());
    // Unused: by tag, without -f.
    assert!(ctl(&d, &["pull", &image]).status.success());
    let o = ctl(&d, &["rmi", &image]);
    assert!(o.status.success(), "{o:?}");
    d.shutdown().await;
}

/// --add-host lines land in the container's /etc/hosts, next to its own name.
#[tokio::test]
async fn add_host_resolves_in_the_container() {
    let d = Daemon::start().await.unwrap();
    let image = registry().busybox();
    let o = ctl(
        &d,
        &[
            "run",
            "--rm",
            "--name",
            "hosty",
            "--add-host",
            "db.example:10.1.2.3",
            "--add-host",
            "v6.example:::1",
            &image,
            "cat",
            "/etc/hosts",
        ],
    );
    assert!(o.status.success(), "{o:?}");
    let hosts = out(&o);
    assert!(hosts.contains("10.1.2.3\tdb.example"), "{hosts}");
    assert!(hosts.contains("::1\tv6.example"), "{hosts}");
    assert!(
        hosts.contains("localhost") && hosts.contains("hosty"),
        "{hosts}"
    );
    let o = ctl(&d, &["run", "--rm", "--add-host", "nohost", &image, "true"]);
    fails_with(&o, 125, "--add-host nohost: expected HOST:IP");
    let o = ctl(
        &d,
        &["run", "--rm", "--add-host", "x:notanip", &image, "true"],
    );
    fails_with(&o, 125, "not an IP address");
    let o = ctl(&d, &["run", "--rm", "--link", "nosuch:db", &image, "true"]);
    fails_with(&o, 125, "--link nosuch:db: no such container");
    assert_eq!(out(&ctl(&d, &["ps", "-a", "-q"])), "");
    d.shutdown().await;
}

/// Deletes a bridge the test made, even when it fails.
/// `-p` without a network says so; with the network scripts/demo.sh installs (packaging/cni,
/// isolated: no masquerading, no gateway, ip_forward untouched) a published port answers on
/// 127.0.0.1, and `--link` names another container's address.
/// `crustctl ARGS` (a `run -p`) as soon as crustd has noticed a network config just installed
/// (it does on its own; until then -p is refused).
async fn run_once_the_network_is_seen(d: &Daemon, args: &[&str]) {
    let mut last = None;
    for _ in 0..50 {
        let o = ctl(d, args);
        if o.status.success() {
            return;
        }
        last = Some(o);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run -p never worked: {last:?}\n{}", d.daemon_log());
}

#[tokio::test]
async fn published_ports_answer_on_localhost_with_the_shipped_network() {
    let d = Daemon::start().await.unwrap();
    let image = registry().busybox();
    let port = crust_e2e::free_port().to_string();
    let publish = format!("{port}:80");
    let o = ctl(&d, &["run", "-d", "-p", &publish, &image, "sleep", "1"]);
    fails_with(&o, 125, "crustd has no CNI network config");
    assert_eq!(out(&ctl(&d, &["ps", "-a", "-q"])), "");

    let forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let net = crust_e2e::ShippedNetwork::install(&d);
    let prefix = net.prefix.clone();
    let conf: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.cni_dir().join("10-crust-bridge.conflist")).unwrap(),
    )
    .unwrap();
    let types: Vec<&str> = conf["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    // No loopback plugin: crust brings each pod's lo up itself (checked below). No portmap
    // plugin: crust publishes host ports itself (checked below).
    assert_eq!(types, ["bridge"]);
    assert_eq!(conf["plugins"][0]["ipMasq"], false);
    assert_eq!(conf["plugins"][0]["isGateway"], false);
    assert!(conf["plugins"][0]["ipam"]["routes"].is_null(), "{conf}");

    run_once_the_network_is_seen(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            &publish,
            &image,
            "sh",
            "-c",
            "mkdir /www && echo published > /www/index.html && exec httpd -f -p 80 -h /www",
        ],
    )
    .await;
    let url = format!("http://127.0.0.1:{port}/");
    let answered = crust_e2e::eventually(Duration::from_secs(15), || async {
        Command::new("curl")
            .args(["-fsS", "--max-time", "2", &url])
            .output()
            .map(|o| out(&o).trim() == "published")
            .unwrap_or(false)
    })
    .await;
    assert!(answered, "{url} did not answer");
    // Inside the pod, its own loopback answers too.
    let o = ctl(&d, &["exec", "web", "wget", "-qO-", "http://127.0.0.1:80/"]);
    assert_eq!(out(&o).trim(), "published", "{o:?}");

    let o = ctl(
        &d,
        &[
            "ps",
            "--filter",
            "name=web",
            "--format",
            "{{.Names}} {{.Ports}}",
        ],
    );
    assert_eq!(out(&o), format!("web 0.0.0.0:{port}->80/tcp\n"), "{o:?}");

    let pods = out(&ctl(&d, &["pods"]));
    let web_ip = pods
        .lines()
        .find(|l| l.contains("web"))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with(&prefix)))
        .unwrap_or_else(|| panic!("web's IP in {pods}"))
        .to_string();
    // crust's own rule, in the host's nat table while the pod lives.
    let dnat = format!("--to-destination {web_ip}:80");
    let nat_rules = || {
        out(&Command::new("iptables")
            .args(["-t", "nat", "-S"])
            .output()
            .unwrap())
    };
    assert!(nat_rules().contains(&dnat), "{}", nat_rules());
    // The port is taken: Docker's refusal, and nothing left behind.
    let o = ctl(&d, &["run", "--rm", "-p", &publish, &image, "true"]);
    fails_with(
        &o,
        125,
        &format!("host port {port}/tcp is already allocated"),
    );
    // (From other hosts, and from pods through a host address, the packet is forwarded after
    // its DNAT: that needs ip_forward, which stays off on this machine.)

    // --link: the linked container's pod address under its name and the alias.
    let o = ctl(
        &d,
        &[
            "run",
            "--rm",
            "--link",
            "web:site",
            &image,
            "sh",
            "-c",
            "cat /etc/hosts; nc -w 2 site 80 </dev/null; true",
        ],
    );
    assert!(o.status.success(), "{o:?}");
    assert!(out(&o).contains(&format!("{web_ip}\tsite web")), "{o:?}");

    assert!(ctl(&d, &["rm", "-f", "web"]).status.success());
    assert!(!nat_rules().contains(&dnat), "{}", nat_rules());

    // Three containers asking for one port at the same instant: one gets it, the others are
    // told it is taken (a check of the running pods alone let several through).
    let contested = format!("{}:80", crust_e2e::free_port());
    let runs: Vec<_> = (0..3)
        .map(|i| {
            let name = format!("contender{i}");
            let args = [
                "run", "-d", "--name", &name, "-p", &contested, &image, "sleep", "60",
            ]
            .map(String::from);
            let (socket, logs) = (d.socket.clone(), d.logs.clone());
            std::thread::spawn(move || {
                Command::new(bin("crustctl"))
                    .arg("--socket")
                    .arg(socket)
                    .arg("--log-root")
                    .arg(logs)
                    .args(args)
                    .output()
                    .unwrap()
            })
        })
        .collect();
    let results: Vec<Output> = runs.into_iter().map(|t| t.join().unwrap()).collect();
    let winners = results.iter().filter(|o| o.status.success()).count();
    assert_eq!(winners, 1, "{results:?}");
    for o in results.iter().filter(|o| !o.status.success()) {
        fails_with(o, 125, "is already allocated");
    }
    for i in 0..3 {
        let _ = ctl(&d, &["rm", "-f", &format!("contender{i}")]);
    }
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        forward,
        "ip_forward untouched"
    );
    d.shutdown().await;
    drop(net);
}

/// A UDP client that was already sending to a host port before a pod published it (a resolver
/// retrying while the pod starts) reaches the pod: its first datagrams left a conntrack entry
/// without translation, which every later datagram of the flow would match for as long as it
/// keeps sending, had crust not deleted it after adding its rules (as portmap does).
#[tokio::test]
async fn a_udp_host_port_reaches_its_pod_from_a_client_already_sending() {
    let d = Daemon::start().await.unwrap();
    let net = crust_e2e::ShippedNetwork::install(&d);
    let image = registry().busybox();
    let port = crust_e2e::free_port();
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = || {
        // Nothing listens yet: the host answers "port unreachable", which an unconnected
        // socket does not report.
        let _ = client.send_to(b"query", ("127.0.0.1", port));
    };
    for _ in 0..5 {
        send();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let publish = format!("{port}:53/udp");
    run_once_the_network_is_seen(
        &d,
        &[
            "run", "-d", "--name", "dns", "-p", &publish, &image, "sleep", "300",
        ],
    )
    .await;
    let o = ctl(&d, &["ps", "--format", "{{.Ports}}"]);
    assert_eq!(out(&o), format!("0.0.0.0:{port}->53/udp\n"), "{o:?}");
    // Nothing listens in the pod either: datagrams that reach it are counted as NoPorts.
    let received = || {
        let snmp = out(&ctl(&d, &["exec", "dns", "cat", "/proc/net/snmp"]));
        udp_datagrams_in(&snmp)
    };
    assert_eq!(
        received(),
        0,
        "nothing reached the pod before its port was published"
    );
    let reached = crust_e2e::eventually(Duration::from_secs(10), || {
        send();
        async { received() > 0 }
    })
    .await;
    assert!(reached, "the client's datagrams never reached the pod");
    assert!(ctl(&d, &["rm", "-f", "dns"]).status.success());
    d.shutdown().await;
    drop(net);
}

/// InDatagrams + NoPorts of the Udp lines of /proc/net/snmp.
fn udp_datagrams_in(snmp: &str) -> u64 {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        panic!("no Udp lines in {snmp:?}");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter(|(n, _)| matches!(*n, "InDatagrams" | "NoPorts"))
        .map(|(_, v)| v.parse::<u64>().unwrap())
        .sum()
}
