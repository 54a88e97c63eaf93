//! crustctl's verbs over crust's own API (crust.v1): tag, rename, push, build. Against a real
//! crustd and the tests' local registry.

use std::process::Output;

use crust_e2e::{Daemon, registry};

fn ctl(d: &Daemon, args: &[&str]) -> Output {
    crust_e2e::crustctl(d, args)
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{o:?}");
    out(&o)
}

#[tokio::test]
async fn tag_names_an_image_again_and_moves_tags() {
    let d = Daemon::start().await.unwrap();
    let image = registry().busybox();
    ok(ctl(&d, &["pull", &image]));
    ok(ctl(&d, &["tag", &image, "mybox:v1"]));
    let images = ok(ctl(&d, &["images"]));
    assert!(images.contains("mybox"), "{images}");
    // Usable by the new name (by CRI too: run pulls nothing).
    let o = ctl(&d, &["run", "--rm", "mybox:v1", "echo", "tagged"]);
    assert_eq!(out(&o).trim(), "tagged", "{o:?}");
    // By short id; and a tag moves off the image that had it.
    let id = ok(ctl(&d, &["images", "-q"]))
        .lines()
        .next()
        .unwrap()
        .to_string();
    ok(ctl(&d, &["tag", &id, "other"]));
    let insp: serde_json::Value =
        serde_json::from_str(&ok(ctl(&d, &["inspect", "other"]))).unwrap();
    assert!(
        insp.to_string().contains("docker.io/library/other:latest"),
        "{insp}"
    );
    let o = ctl(&d, &["tag", "nosuchimage", "x"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(err(&o).contains("No such image: nosuchimage"), "{o:?}");
    // rmi of one of several tags only untags; by id it needs -f; every name is tried.
    let o = ok(ctl(&d, &["rmi", "mybox:v1"]));
    assert_eq!(o.trim(), "Untagged: docker.io/library/mybox:v1", "{o}");
    assert!(ok(ctl(&d, &["images"])).contains("crust-test/busybox"));
    let o = ctl(&d, &["rmi", &id]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(err(&o).contains("must be forced"), "{o:?}");
    let o = ctl(&d, &["rmi", "nosuchimage", "other"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(err(&o).contains("No such image: nosuchimage"), "{o:?}");
    assert!(
        out(&o).contains("Untagged: docker.io/library/other:latest"),
        "{o:?}"
    );
    let o = ok(ctl(&d, &["rmi", &image]));
    assert!(o.contains("Deleted: sha256:"), "{o}");
    d.shutdown().await;
}

#[tokio::test]
async fn rename_changes_what_ps_and_inspect_show_and_keeps_names_unique() {
    let d = Daemon::start().await.unwrap();
    let image = registry().busybox();
    let web = ok(ctl(
        &d,
        &["run", "-d", "--name", "web", &image, "sleep", "1000"],
    ));
    let web = web.trim().to_string();
    ok(ctl(
        &d,
        &["run", "-d", "--name", "db", &image, "sleep", "1000"],
    ));

    let o = ctl(&d, &["rename", "web", "db"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        err(&o).contains("Conflict. The container name \"/db\" is already in use"),
        "{o:?}"
    );
    let o = ctl(&d, &["rename", "web", "bad name"]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("Invalid container name (bad name)"),
        "{o:?}"
    );
    let o = ctl(&d, &["rename", "nosuch", "x"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(err(&o).contains("No such container: nosuch"), "{o:?}");

    ok(ctl(&d, &["rename", "web", "frontend"]));
    let names = ok(ctl(&d, &["ps", "--format", "{{.ID}} {{.Names}}"]));
    assert!(
        names.contains(&format!("{} frontend", &web[..12])),
        "{names}"
    );
    assert!(!names.lines().any(|l| l.ends_with(" web")), "{names}");
    let insp: serde_json::Value =
        serde_json::from_str(&ok(ctl(&d, &["inspect", "frontend"]))).unwrap();
    assert_eq!(insp["metadata"]["name"], "frontend", "{insp}");
    let o = ctl(&d, &["exec", "frontend", "echo", "hi"]);
    assert_eq!(out(&o).trim(), "hi", "{o:?}");
    // The old name is free again, for a new container.
    ok(ctl(
        &d,
        &["run", "-d", "--name", "web", &image, "sleep", "1000"],
    ));
    // By id too.
    ok(ctl(&d, &["rename", &web[..12], "front2"]));
    assert!(ok(ctl(&d, &["ps"])).contains("front2"));

    for n in ["front2", "db", "web"] {
        ok(ctl(&d, &["rm", "-f", n]));
    }
    assert_eq!(
        ok(ctl(&d, &["pods"])).lines().count(),
        1,
        "only the header left"
    );
    d.shutdown().await;
}

#[tokio::test]
async fn push_then_pull_on_another_crustd_gets_the_same_digest() {
    let d = Daemon::start().await.unwrap();
    let reg = &registry().addr;
    let image = registry().busybox();
    ok(ctl(&d, &["pull", &image]));
    let repo = format!("{reg}/crust-pushed/box{:08x}", rand::random::<u32>());
    let target = format!("{repo}:v1");
    ok(ctl(&d, &["tag", &image, &target]));
    // The registry has the blobs under crust-test/busybox: mounted, not uploaded.
    let o = ok(ctl(&d, &["push", &target]));
    assert!(o.contains("Mounted from another repository"), "{o}");
    let digest = o
        .lines()
        .find_map(|l| l.strip_prefix("v1: digest: "))
        .expect("digest line")
        .to_string();
    // Again: every blob is there already.
    let o = ok(ctl(&d, &["push", &target]));
    assert!(
        o.contains("Layer already exists") && !o.contains("Pushed"),
        "{o}"
    );
    assert!(o.contains(&digest), "{o}");
    let id = ok(ctl(&d, &["images", "-q", "--no-trunc"]));
    d.shutdown().await;

    // Another crust pulls it: the same manifest digest and image id.
    let d2 = Daemon::start().await.unwrap();
    ok(ctl(&d2, &["pull", &target]));
    let insp: serde_json::Value =
        serde_json::from_str(&ok(ctl(&d2, &["inspect", "--type", "image", &target]))).unwrap();
    assert!(
        insp.to_string().contains(&format!("{repo}@{digest}")),
        "{digest} in {insp}"
    );
    assert!(
        id.contains(
            &ok(ctl(&d2, &["images", "-q", "--no-trunc"]))
                .trim()
                .to_string()
        )
    );
    let o = ctl(&d2, &["run", "--rm", &target, "echo", "pushed"]);
    assert_eq!(out(&o).trim(), "pushed", "{o:?}");
    let o = ctl(&d2, &["push", "nosuch/image"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("No such image: nosuch/image"), "{o:?}");
    d2.shutdown().await;
}

/// The seed's hello-world: a static program `FROM scratch`, run; `ls` is not in it (127);
/// an unchanged rebuild is CACHED at every step; bad Dockerfiles stop with the step and
/// reason and leave no image.
#[tokio::test]
async fn build_hello_world_from_scratch_cached_and_bad_dockerfiles() {
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path().join("hello.c");
    std::fs::write(
        &c,
        "#include <stdio.h>\nint main(void){puts(\"Hello from crust!\");return 0;}\n",
    )
    .unwrap();
    let st = std::process::Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(ctx.path().join("hello"))
        .arg(&c)
        .status();
    if !st.is_ok_and(|s| s.success()) {
        eprintln!("skipped: gcc -static is not available");
        return;
    }
    std::fs::write(ctx.path().join(".dockerignore"), "*.c\n").unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "# the seed's hello-world\nFROM scratch\nARG GREETING=hi\nLABEL greeting=$GREETING\nCOPY hello /\nCMD [\"/hello\"]\n",
    )
    .unwrap();
    let d = Daemon::start().await.unwrap();
    let dir = ctx.path().to_str().unwrap();
    let t0 = std::time::Instant::now();
    let o = ok(ctl(&d, &["build", "-t", "hello-world", dir]));
    let cold = t0.elapsed();
    assert!(
        o.contains("Step 5/5 : CMD [\"/hello\"]") && o.contains("Successfully tagged hello-world"),
        "{o}"
    );
    let o = ctl(&d, &["run", "--rm", "hello-world"]);
    assert_eq!(out(&o).trim(), "Hello from crust!", "{o:?}");
    let o = ctl(&d, &["run", "--rm", "hello-world", "ls"]);
    assert_eq!(o.status.code(), Some(127), "{o:?}");
    let t1 = std::time::Instant::now();
    let o = ok(ctl(&d, &["build", "-t", "hello-world", dir]));
    eprintln!(
        "hello-world build: cold {cold:?}, cached {:?}",
        t1.elapsed()
    );
    assert_eq!(o.matches("CACHED").count(), 4, "{o}");
    // .dockerignore kept hello.c out.
    let bad = |df: &str, want: &str| {
        std::fs::write(ctx.path().join("Dockerfile.bad"), df).unwrap();
        let f = ctx.path().join("Dockerfile.bad");
        let o = ctl(&d, &["build", "-t", "bad", "-f", f.to_str().unwrap(), dir]);
        assert_eq!(o.status.code(), Some(1), "{o:?}");
        assert!(err(&o).contains(want), "{want:?} in {o:?}");
    };
    bad(
        "FROM scratch\nFROB x\n",
        "line 2: unknown instruction: FROB",
    );
    bad(
        "FROM scratch\nCOPY nosuch /\n",
        "step 2/2 `COPY nosuch /`: build context: nosuch: no such file",
    );
    bad(
        "FROM scratch\nCOPY ../outside /\n",
        "forbidden path outside the build context",
    );
    bad("FROM scratch\nCOPY hello.c /\n", "hello.c: no such file");
    assert!(!ok(ctl(&d, &["images"])).contains("bad"));
    ok(ctl(&d, &["rmi", "hello-world"]));
    d.shutdown().await;
}

/// RUN steps run in containers of the stage so far: their changes (new files, hard links,
/// deletions as whiteouts, a directory replaced as an opaque one) become layers that another
/// crust pulls back intact (one over push's chunk size); ARGs are in RUN's environment but not the image's; output is
/// streamed; a failing command stops the build with its exit code and leaves no pod behind.
#[tokio::test]
async fn build_run_steps_make_layers_that_survive_push_and_pull() {
    let ctx = tempfile::tempdir().unwrap();
    let base = registry().busybox();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {base}\nARG GREETING=hello\n\
             RUN mkdir -p /data/sub && echo x > /data/sub/f && echo keep > /data/keep \
             && echo \"$GREETING from run\" > /greeting && ln /greeting /greeting.hard\n\
             RUN rm /data/keep && rm -rf /data/sub && mkdir /data/sub && echo new > /data/sub/g \
             && echo to-stdout && echo to-stderr >&2\n\
             RUN head -c 12000000 /dev/urandom > /big && md5sum /big > /big.md5\n\
             CMD [\"sh\", \"-c\", \"ls /data; ls /data/sub; cat /greeting.hard; echo env=$GREETING\"]\n"
        ),
    )
    .unwrap();
    let d = Daemon::start().await.unwrap();
    let dir = ctx.path().to_str().unwrap();
    let reg = &registry().addr;
    let target = format!("{reg}/crust-built/run{:08x}:v1", rand::random::<u32>());
    let o = ok(ctl(
        &d,
        &["build", "-t", &target, "--build-arg", "GREETING=hi", dir],
    ));
    assert!(o.contains("to-stdout") && o.contains("to-stderr"), "{o}");
    let expect = "sub\nsub/g\nhi from run\nenv=";
    let expect = expect.replace("sub/g", "g");
    let o = ctl(&d, &["run", "--rm", &target]);
    assert_eq!(out(&o).trim(), expect, "{o:?}");
    // Every step's pod is gone.
    assert_eq!(ok(ctl(&d, &["pods"])).lines().count(), 1, "only the header");

    // Another crust pulls the layers and sees the same files.
    ok(ctl(&d, &["push", &target]));
    d.shutdown().await;
    let d2 = Daemon::start().await.unwrap();
    ok(ctl(&d2, &["pull", &target]));
    let o = ctl(&d2, &["run", "--rm", &target]);
    assert_eq!(out(&o).trim(), expect, "{o:?}");
    // A layer over push's chunk size went up in PATCH chunks and came back whole.
    let o = ctl(&d2, &["run", "--rm", &target, "md5sum", "-c", "/big.md5"]);
    assert_eq!(out(&o).trim(), "/big: OK", "{o:?}");

    // A failing command: the build stops with its code; no image, no pod.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {base}\nRUN echo before && exit 3\nCMD [\"true\"]\n"),
    )
    .unwrap();
    let o = ctl(&d2, &["build", "-t", "failing", dir]);
    assert!(!o.status.success(), "{o:?}");
    assert!(
        err(&o).contains("returned a non-zero code: 3") && out(&o).contains("before"),
        "{o:?}"
    );
    assert!(!ok(ctl(&d2, &["images"])).contains("failing"));
    assert_eq!(
        ok(ctl(&d2, &["pods"])).lines().count(),
        1,
        "only the header"
    );
    d2.shutdown().await;
}

/// The seed's Redis example: an image built from Debian's redis packages with a multi-stage
/// Dockerfile (RUN unpacks the .debs in one stage, COPY --from takes the server and client),
/// run with a published port: `exec -it redis redis-cli ping` and the host's redis-cli both get
/// PONG; an unchanged rebuild is CACHED; pushed, removed, pulled back and run again.
#[tokio::test]
async fn redis_built_from_debian_packages_runs_pushes_and_pulls_back() {
    let debs = std::path::Path::new("/var/cache/crust/debs");
    let wanted = ["redis-tools_", "redis-server_", "libjemalloc2_", "liblzf1_"];
    let ctx = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ctx.path().join("debs")).unwrap();
    for e in std::fs::read_dir(debs).expect("scripts/setup.sh downloads the redis packages") {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if wanted.iter().any(|w| name.starts_with(w)) {
            std::fs::copy(e.path(), ctx.path().join("debs").join(&name)).unwrap();
        }
    }
    // The host's share of the libraries (libc, libssl, …), found with the packages unpacked
    // here; the image gets them in hostlibs/.
    let host = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(ctx.path().join("debs")).unwrap() {
        let st = std::process::Command::new("dpkg-deb")
            .arg("-x")
            .arg(e.unwrap().path())
            .arg(host.path())
            .status()
            .unwrap();
        assert!(st.success());
    }
    let unpacked_libs = host.path().join("usr/lib/x86_64-linux-gnu");
    crust_e2e::copy_host_libraries(
        &host.path().join("usr/bin/redis-check-rdb"),
        Some(&unpacked_libs),
        &ctx.path().join("hostlibs"),
    );
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "ARG BASE\n\
         FROM $BASE AS unpack\n\
         COPY debs/ /debs/\n\
         RUN mkdir /out && for d in /debs/*.deb; do dpkg-deb -x \"$d\" /out; done && ls /out/usr/bin\n\
         FROM $BASE\n\
         COPY --from=unpack /out/usr/bin/redis-check-rdb /usr/bin/redis-server\n\
         COPY --from=unpack /out/usr/bin/redis-cli /usr/bin/redis-cli\n\
         COPY --from=unpack /out/usr/lib/x86_64-linux-gnu/ /usr/lib/x86_64-linux-gnu/\n\
         COPY hostlibs/ /lib/x86_64-linux-gnu/\n\
         COPY hostlibs/ld-linux-x86-64.so.2 /lib64/\n\
         RUN redis-server --version\n\
         WORKDIR /data\n\
         EXPOSE 6379\n\
         CMD [\"redis-server\", \"--protected-mode\", \"no\", \"--save\", \"\"]\n",
    )
    .unwrap();
    let d = Daemon::start().await.unwrap();
    let net = crust_e2e::ShippedNetwork::install(&d);
    let dir = ctx.path().to_str().unwrap();
    let base = format!("BASE={}", registry().busybox());
    let reg = &registry().addr;
    let image = format!("{reg}/crust-built/redis{:08x}:7", rand::random::<u32>());
    let t0 = std::time::Instant::now();
    let o = ok(ctl(&d, &["build", "-t", &image, "--build-arg", &base, dir]));
    let cold = t0.elapsed();
    assert!(
        o.contains("Step 1/14 : ARG BASE")
            && o.contains("Step 2/14 : FROM $BASE AS unpack")
            && o.contains("redis-check-rdb")
            && o.contains("Redis server v=7"),
        "{o}"
    );
    let t0 = std::time::Instant::now();
    let o = ok(ctl(&d, &["build", "-t", &image, "--build-arg", &base, dir]));
    let cached = t0.elapsed();
    assert_eq!(o.matches("CACHED").count(), 11, "{o}");
    eprintln!(
        "redis image: cold build {:.2} s, cached {:.2} s",
        cold.as_secs_f64(),
        cached.as_secs_f64()
    );
    // --target stops at a stage: the unpacking one has the .debs' files and no server.
    let o = ok(ctl(
        &d,
        &[
            "build",
            "--target",
            "unpack",
            "-t",
            "unpacked",
            "--build-arg",
            &base,
            dir,
        ],
    ));
    assert!(!o.contains("Step 5/14"), "{o}");
    let o = ctl(
        &d,
        &[
            "run",
            "--rm",
            "unpacked",
            "sh",
            "-c",
            "ls /out/usr/bin/redis-cli /usr/bin/redis-server",
        ],
    );
    assert!(out(&o).contains("/out/usr/bin/redis-cli"), "{o:?}");
    assert!(err(&o).contains("/usr/bin/redis-server"), "{o:?}");
    ok(ctl(&d, &["rmi", "unpacked"]));

    let redis_cli = |port: &str| {
        std::process::Command::new(host.path().join("usr/bin/redis-cli"))
            .env("LD_LIBRARY_PATH", &unpacked_libs)
            .args(["-h", "127.0.0.1", "-p", port, "ping"])
            .output()
            .map(|o| out(&o).trim().to_string())
            .unwrap_or_default()
    };
    let run_and_ping = |d: &Daemon| {
        let port = crust_e2e::free_port().to_string();
        let mut started = false;
        // crustd picks up the new network config on its own; until then -p is refused.
        for _ in 0..50 {
            let o = ctl(
                d,
                &[
                    "run",
                    "-d",
                    "--name",
                    "redis",
                    "-p",
                    &format!("{port}:6379"),
                    &image,
                ],
            );
            if o.status.success() {
                started = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(started, "run -d redis: {}", d.daemon_log());
        let cmd = format!(
            "{} --socket {} --log-root {} exec -it redis redis-cli ping",
            crust_e2e::bin("crustctl").display(),
            d.socket.display(),
            d.logs.display()
        );
        let mut pong = String::new();
        for _ in 0..50 {
            let o = std::process::Command::new("script")
                .args(["-qec", &cmd, "/dev/null"])
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            pong = out(&o);
            if pong.contains("PONG") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(pong.contains("PONG"), "exec -it redis-cli ping: {pong}");
        let mut answer = String::new();
        for _ in 0..50 {
            answer = redis_cli(&port);
            if answer == "PONG" {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert_eq!(answer, "PONG", "redis-cli -p {port} ping from the host");
        ok(ctl(d, &["rm", "-f", "redis"]));
    };
    run_and_ping(&d);

    ok(ctl(&d, &["push", &image]));
    ok(ctl(&d, &["rmi", &image]));
    assert!(!ok(ctl(&d, &["images"])).contains("crust-built/redis"));
    ok(ctl(&d, &["pull", &image]));
    run_and_ping(&d);
    assert_eq!(ok(ctl(&d, &["pods"])).lines().count(), 1, "only the header");
    d.shutdown().await;
    drop(net);
}
