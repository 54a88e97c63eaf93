//! crustctl's listing and inspection verbs as Docker shows them: ps's columns, filters and
//! --format, images --format, inspect of containers, images and pods, top, cp, system prune.

use std::process::Output;

use crust_e2e::{Daemon, registry};

fn ctl(d: &Daemon, args: &[&str]) -> Output {
    crust_e2e::crustctl(d, args)
}

fn out(o: &Output) -> String {
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn ps_and_images_columns_filters_and_formats() {
    let d = Daemon::start().await.unwrap();
    let image = registry().busybox();
    let web = out(&ctl(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "-l",
            "tier=front",
            &image,
            "sleep",
            "1000",
        ],
    ))
    .trim()
    .to_string();
    let o = ctl(
        &d,
        &[
            "run",
            "--name",
            "done",
            "-l",
            "tier=batch",
            &image,
            "sh",
            "-c",
            "exit 3",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    out(&ctl(
        &d,
        &[
            "create",
            "--name",
            "fresh",
            &image,
            "echo",
            "a-rather-long-command-line",
        ],
    ));

    // Docker's columns, running containers only.
    let ps = out(&ctl(&d, &["ps"]));
    let mut lines = ps.lines();
    let header = lines.next().unwrap();
    let cols: Vec<&str> = header
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cols,
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES"
        ],
        "{ps}"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1, "{ps}");
    assert!(
        rows[0].starts_with(&web[..12])
            && rows[0].contains("\"sleep 1000\"")
            && rows[0].contains("Up ")
            && rows[0].ends_with("web"),
        "{ps}"
    );
    // The NAMES column starts where its header does.
    assert_eq!(header.find("NAMES"), rows[0].find("web"), "{ps}");

    let all = out(&ctl(&d, &["ps", "-a"]));
    assert!(
        all.contains("Exited (3)")
            && all.contains("Created")
            && all.contains("\"echo a-rather-long-…\""),
        "{all}"
    );
    // -q: short ids; --no-trunc: full ones and whole commands.
    assert_eq!(out(&ctl(&d, &["ps", "-q"])), format!("{}\n", &web[..12]));
    assert_eq!(
        out(&ctl(&d, &["ps", "-q", "--no-trunc"])),
        format!("{web}\n")
    );
    let full = out(&ctl(
        &d,
        &["ps", "-a", "--no-trunc", "--format", "{{.Command}}"],
    ));
    assert!(
        full.contains("\"echo a-rather-long-command-line\""),
        "{full}"
    );
    // -n: the last created, whatever their state.
    assert_eq!(
        out(&ctl(&d, &["ps", "-n", "1", "--format", "{{.Names}}"])),
        "fresh\n"
    );
    assert_eq!(
        out(&ctl(&d, &["ps", "-n", "2", "--format", "{{.Names}}"])),
        "fresh\ndone\n"
    );
    // Filters.
    let names = |f: &[&str]| {
        let mut args = vec!["ps", "-a", "--format", "{{.Names}}"];
        for x in f {
            args.extend(["--filter", x]);
        }
        let mut v: Vec<String> = out(&ctl(&d, &args)).lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(names(&["status=exited"]), ["done"]);
    assert_eq!(names(&["status=created"]), ["fresh"]);
    assert_eq!(names(&["label=tier"]), ["done", "web"]);
    assert_eq!(names(&["label=tier=front"]), ["web"]);
    assert_eq!(names(&["name=we"]), ["web"]);
    assert_eq!(
        names(&[&format!("ancestor={image}")]),
        ["done", "fresh", "web"]
    );
    assert_eq!(names(&["ancestor=nosuch/image"]).len(), 0);
    assert_eq!(names(&["label=tier", "status=running"]), ["web"]);
    let o = ctl(&d, &["ps", "--filter", "colour=red"]);
    assert!(
        !o.status.success() && err(&o).contains("unknown filter \"colour\""),
        "{o:?}"
    );
    // --format: fields, table with \t, json.
    let f = out(&ctl(
        &d,
        &[
            "ps",
            "--format",
            "{{.ID}}|{{.Image}}|{{.Status}}|{{.Labels}}|{{.State}}",
        ],
    ));
    assert!(
        f.starts_with(&format!("{}|{image}|Up ", &web[..12]))
            && f.trim_end().ends_with("|tier=front|running"),
        "{f}"
    );
    let t = out(&ctl(
        &d,
        &[
            "ps",
            "--format",
            "table {{.Names}}\\t{{.RunningFor}}\\t{{.CreatedAt}}",
        ],
    ));
    let mut tl = t.lines();
    assert!(tl.next().unwrap().starts_with("NAMES   CREATED"), "{t}");
    let row = tl.next().unwrap();
    assert!(
        row.starts_with("web     ") && row.contains("seconds ago") && row.ends_with("+0000 UTC"),
        "{t}"
    );
    let j: serde_json::Value =
        serde_json::from_str(out(&ctl(&d, &["ps", "--format", "json"])).trim()).unwrap();
    assert_eq!(j["Names"], "web");
    assert_eq!(j["ID"], &web[..12]);
    assert_eq!(j["Labels"], "tier=front");
    let o = ctl(&d, &["ps", "--format", "{{.Nope}}"]);
    assert!(!o.status.success() && err(&o).contains(".Nope"), "{o:?}");

    // images: Docker's columns, -q, --format.
    let images = out(&ctl(&d, &["images"]));
    assert!(images.starts_with("REPOSITORY"), "{images}");
    for col in ["TAG", "IMAGE ID", "DIGEST", "SIZE"] {
        assert!(images.lines().next().unwrap().contains(col), "{images}");
    }
    let id = out(&ctl(&d, &["images", "-q"])).trim().to_string();
    assert_eq!(id.len(), 12, "{id}");
    let repo = image.rsplit_once(':').unwrap().0;
    assert_eq!(
        out(&ctl(
            &d,
            &["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]
        )),
        format!("{repo}:latest {id}\n")
    );
    let j: serde_json::Value =
        serde_json::from_str(out(&ctl(&d, &["images", "--format", "json", "--no-trunc"])).trim())
            .unwrap();
    assert!(
        j["ID"]
            .as_str()
            .unwrap()
            .starts_with(&format!("sha256:{id}")),
        "{j}"
    );
    assert!(j["Digest"].as_str().unwrap().starts_with("sha256:"), "{j}");

    for n in ["web", "done", "fresh"] {
        out(&ctl(&d, &["rm", "-f", n]));
    }
    d.shutdown().await;
}

#[tokio::test]
async fn inspect_top_cp_and_system_prune() {
    let d = Daemon::start().await.unwrap();
    let image = registry().busybox();
    let layered = registry().image("layered");
    out(&ctl(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "box",
            &image,
            "sh",
            "-c",
            "mkdir -p /data/sub && echo inside > /data/sub/f && exec sleep 1000",
        ],
    ));

    // inspect: a container, an image (with its config), a pod, by name or id.
    let c: serde_json::Value =
        serde_json::from_slice(ctl(&d, &["inspect", "box"]).stdout.as_slice()).unwrap();
    assert_eq!(c["metadata"]["name"], "box");
    let i: serde_json::Value = serde_json::from_str(&out(&ctl(&d, &["inspect", &image]))).unwrap();
    assert!(i["id"].as_str().unwrap().starts_with("sha256:"), "{i}");
    let short = i["id"].as_str().unwrap()[7..19].to_string();
    let by_id: serde_json::Value =
        serde_json::from_str(&out(&ctl(&d, &["inspect", "--type", "image", &short]))).unwrap();
    assert_eq!(by_id["id"], i["id"]);
    assert!(!by_id["info"].as_object().unwrap().is_empty(), "{by_id}");
    let p: serde_json::Value =
        serde_json::from_str(&out(&ctl(&d, &["inspect", "--type", "pod", "box"]))).unwrap();
    assert_eq!(p["metadata"]["name"], "box");
    assert_eq!(p["metadata"]["namespace"], "crustctl");
    let o = ctl(&d, &["inspect", "nosuch"]);
    assert!(
        !o.status.success() && err(&o).contains("No such object: nosuch"),
        "{o:?}"
    );

    // top: the container's processes.
    let top = out(&ctl(&d, &["top", "box"]));
    assert!(
        top.lines().next().unwrap().contains("PID") && top.contains("sleep 1000"),
        "{top}"
    );

    // cp: a directory out, a file in under a new name, a file out under a new name.
    crust_e2e::eventually(std::time::Duration::from_secs(10), || async {
        ctl(&d, &["exec", "box", "test", "-f", "/data/sub/f"])
            .status
            .success()
    })
    .await;
    let host = d.dir.path().join("cp");
    std::fs::create_dir_all(&host).unwrap();
    let h = host.display().to_string();
    out(&ctl(&d, &["cp", "box:/data", &h]));
    assert_eq!(
        std::fs::read_to_string(host.join("data/sub/f")).unwrap(),
        "inside\n"
    );
    std::fs::write(host.join("in.txt"), "from the host\n").unwrap();
    out(&ctl(
        &d,
        &["cp", &format!("{h}/in.txt"), "box:/data/renamed.txt"],
    ));
    out(&ctl(&d, &["cp", &format!("{h}/in.txt"), "box:/data/sub"]));
    let o = ctl(
        &d,
        &[
            "exec",
            "box",
            "cat",
            "/data/renamed.txt",
            "/data/sub/in.txt",
        ],
    );
    assert_eq!(out(&o), "from the host\nfrom the host\n");
    out(&ctl(&d, &["cp", "box:/data/sub/f", &format!("{h}/copy")]));
    assert_eq!(
        std::fs::read_to_string(host.join("copy")).unwrap(),
        "inside\n"
    );
    let o = ctl(&d, &["cp", "box:/no/such", &h]);
    assert!(
        !o.status.success()
            && err(&o).contains("Could not find the file /no/such in container box"),
        "{o:?}"
    );
    let o = ctl(&d, &["cp", &h, &h]);
    assert!(
        !o.status.success() && err(&o).contains("CONTAINER:PATH"),
        "{o:?}"
    );

    // system prune: without -f it asks (and "n" changes nothing); -f: stopped containers and
    // dangling images; -a: every unused image too. Running containers and their images stay.
    out(&ctl(&d, &["run", "--name", "gone", &image, "true"]));
    out(&ctl(&d, &["pull", &layered]));
    let o = crust_e2e::crustctl_input(&d, &["system", "prune"], "n\n");
    assert!(
        out(&o).contains("Are you sure you want to continue? [y/N]"),
        "{o:?}"
    );
    assert!(out(&ctl(&d, &["ps", "-a"])).contains("gone"));
    let o = out(&ctl(&d, &["system", "prune", "-f"]));
    assert!(
        o.starts_with("Deleted Containers:\n") && o.contains("Total reclaimed space: 0.0B"),
        "{o}"
    );
    assert!(!out(&ctl(&d, &["ps", "-a"])).contains("gone"));
    assert!(
        out(&ctl(&d, &["images"])).contains("layered"),
        "tagged images stay without -a"
    );
    let o = out(&ctl(&d, &["system", "prune", "-a", "-f"]));
    assert!(
        o.contains("Deleted Images:\nuntagged: ")
            && o.contains("layered")
            && !o.contains("busybox"),
        "{o}"
    );
    let images = out(&ctl(&d, &["images"]));
    assert!(
        images.contains("busybox") && !images.contains("layered"),
        "{images}"
    );
    assert!(out(&ctl(&d, &["ps"])).contains("box"));
    out(&ctl(&d, &["rm", "-f", "box"]));
    d.shutdown().await;
}
