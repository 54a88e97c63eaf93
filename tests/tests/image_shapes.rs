//! Images in the shapes real builders make (Debian's buildah, umoci and skopeo; BuildKit-style
//! attestation indexes; nested indexes; empty and command-less images; a 1 GiB layer; Docker
//! schema 1), pulled and run by crust, and one layer unpacked by crust and by containerd 1.6
//! compared entry by entry with the tree it was tarred from.
//!
//! Shapes `manifest_kinds_platforms_and_layers_unpack_right` in images.rs covers already (a
//! hand-made OCI index without mediaType, a Docker list with an uncompressed layer, whiteouts
//! and opaque dirs, a zstd layer) are not repeated.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crust_e2e::{
    Daemon, PrivateRegistry, container_config, cri, crustctl, fixtures_dir, log_lines, pod_config,
    registry,
};
use tonic::Code;

/// The registry with the shapes of build-shapes.sh and index-shapes.py pushed (once).
fn shapes() -> &'static str {
    static DONE: OnceLock<String> = OnceLock::new();
    DONE.get_or_init(|| {
        let addr = registry().addr.clone();
        let st = Command::new(fixtures_dir().join("build-shapes.sh"))
            .arg(&addr)
            .stdout(Stdio::null())
            .status()
            .expect("run build-shapes.sh (needs buildah, umoci and skopeo: scripts/setup.sh)");
        assert!(st.success(), "build-shapes.sh failed");
        let st = Command::new("python3")
            .arg(fixtures_dir().join("index-shapes.py"))
            .arg(&addr)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "index-shapes.py failed");
        addr
    })
}

fn image(repo: &str) -> String {
    format!("{}/crust-test/{repo}:latest", shapes())
}

/// GETs a manifest or index from the registry as JSON.
fn get_manifest(addr: &str, repo: &str, reference: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-fsS", "-H"])
        .arg(
            "Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.list.v2+json, \
             application/vnd.docker.distribution.manifest.v2+json",
        )
        .arg(format!("http://{addr}/v2/crust-test/{repo}/manifests/{reference}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{repo}@{reference}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The linux/amd64 image manifest under `repo:latest`, found independently of crust: through
/// indexes (and an index's platform-less index entries), never an attestation.
fn amd64_manifest(addr: &str, repo: &str) -> serde_json::Value {
    let mut doc = get_manifest(addr, repo, "latest");
    for _ in 0..4 {
        let Some(entries) = doc["manifests"].as_array() else {
            return doc;
        };
        let next = entries
            .iter()
            .find(|e| e["platform"]["architecture"] == "amd64" && e["platform"]["os"] == "linux")
            .or_else(|| entries.iter().find(|e| e["platform"].is_null()))
            .expect("an amd64 entry");
        doc = get_manifest(addr, repo, next["digest"].as_str().unwrap());
    }
    panic!("{repo}: indexes nested too deep");
}

/// What CRI's Image.size must be: the config and layer blobs as the registry serves them.
fn manifest_size(m: &serde_json::Value) -> u64 {
    m["config"]["size"].as_u64().unwrap()
        + m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["size"].as_u64().unwrap())
            .sum::<u64>()
}

async fn image_record(c: &mut crust_e2e::Cri, name: &str) -> cri::Image {
    c.img
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: name.into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
        .unwrap_or_else(|| panic!("{name} is not listed"))
}

async fn chain_ids(c: &mut crust_e2e::Cri, name: &str) -> Vec<String> {
    let st = c
        .img
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: name.into(),
                ..Default::default()
            }),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&st.info["info"]).unwrap();
    info["chain_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

async fn image_fs_bytes(c: &mut crust_e2e::Cri) -> u64 {
    c.img
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .image_filesystems[0]
        .used_bytes
        .unwrap()
        .value
}

/// Bytes allocated under `dir` (st_blocks), walked here independently of crustd.
fn allocated(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let m = e.metadata().unwrap();
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// Runs `config` in `pod` to its end and returns its output lines.
async fn run_to_end(
    c: &mut crust_e2e::Cri,
    pod: &str,
    pc: &cri::PodSandboxConfig,
    config: cri::ContainerConfig,
) -> Vec<String> {
    let name = config.metadata.as_ref().unwrap().name.clone();
    let id = c
        .run(pod, pc, config)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let st = c.wait_exited(&id, Duration::from_secs(60)).await.unwrap();
    let out = log_lines(&st.log_path)
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    assert_eq!(st.exit_code, 0, "{name}: {out:?}");
    out
}

/// Every builder's image pulls and runs with its own command; the platform picked from lists,
/// attestation and nested indexes is linux/amd64; sizes are the served blobs' and the image
/// filesystem's usage is what is on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_from_real_builders_pull_and_run() {
    let addr = shapes();
    let d = Daemon::start().await.unwrap();
    let mut c = d.cri().await.unwrap();
    let pc = pod_config("shapes", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();
    let buildah = ["shape-buildah-oci"];
    let cases: &[(&str, &[&str])] = &[
        ("shape-buildah-oci", &buildah),
        (
            "shape-buildah-docker",
            &["second layer", "shape-buildah-docker"],
        ),
        ("shape-buildah-list", &["shape-buildah-list"]),
        ("shape-umoci", &["umoci second layer", "shape-umoci"]),
        ("shape-skopeo-v2s2", &buildah),
        ("shape-skopeo-zstd", &buildah),
        ("shape-skopeo-chunked", &buildah),
        ("shape-skopeo-plain", &buildah),
        ("shape-attest", &["shape-attest"]),
        ("shape-nested", &["shape-nested"]),
        ("shape-emptylayers", &["shape-emptylayers"]),
    ];
    // The fixtures made what they say.
    let layer_type = |repo: &str| -> Vec<String> {
        amd64_manifest(addr, repo)["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["mediaType"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        layer_type("shape-buildah-docker"),
        vec!["application/vnd.docker.image.rootfs.diff.tar.gzip"; 2]
    );
    assert_eq!(layer_type("shape-umoci").len(), 2);
    assert_eq!(
        layer_type("shape-skopeo-zstd"),
        vec!["application/vnd.oci.image.layer.v1.tar+zstd"]
    );
    assert!(
        amd64_manifest(addr, "shape-skopeo-chunked")["layers"][0]["annotations"]
            ["io.containers.zstd-chunked.manifest-checksum"]
            .is_string()
    );
    assert_eq!(
        layer_type("shape-skopeo-plain"),
        vec!["application/vnd.oci.image.layer.v1.tar"]
    );
    assert_eq!(
        get_manifest(addr, "shape-buildah-list", "latest")["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_eq!(
        get_manifest(addr, "shape-attest", "latest")["manifests"][0]["platform"]["os"],
        "unknown"
    );

    let mut sizes = BTreeMap::new();
    for (repo, expected) in cases {
        let name = image(repo);
        let id = c
            .pull(&name)
            .await
            .unwrap_or_else(|e| panic!("pull {repo}: {e:#}"));
        let served = amd64_manifest(addr, repo);
        assert_eq!(id, served["config"]["digest"].as_str().unwrap(), "{repo}");
        // skopeo's conversions keep buildah's config: one image (one id) under several
        // names, whose size is that of the manifest it was first pulled by (as containerd's
        // CRI keeps it); their layers are not fetched again, the snapshot being there.
        let first = *sizes.entry(id.clone()).or_insert(manifest_size(&served));
        let img = image_record(&mut c, &name).await;
        assert_eq!(img.size, first, "{repo}: size");
        let out = run_to_end(
            &mut c,
            &pod,
            &pc,
            container_config(&repo.replace("shape-", ""), &name, &[]),
        )
        .await;
        assert_eq!(out, *expected, "{repo}");
    }

    // Disk accounting: ImageFsInfo is what the store holds on disk, measured here too, and
    // `crustctl images` shows the CRI sizes.
    let fs = image_fs_bytes(&mut c).await;
    let walked = allocated(&d.root.join("content")) + allocated(&d.root.join("snapshots"));
    assert!(
        fs.abs_diff(walked) <= walked / 100,
        "ImageFsInfo {fs} vs {walked} on disk"
    );
    let o = crustctl(
        &d,
        &["images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}"],
    );
    assert!(o.status.success(), "{o:?}");
    let listed = String::from_utf8_lossy(&o.stdout);
    let docker = manifest_size(&amd64_manifest(addr, "shape-buildah-docker"));
    let line = format!(
        "{}/crust-test/shape-buildah-docker:latest {:.1}MB",
        addr,
        docker as f64 / (1 << 20) as f64
    );
    assert!(
        listed.lines().any(|l| l == line),
        "{line:?} not in {listed}"
    );
    // Removing an image frees exactly its own blobs and snapshots (umoci's share nothing).
    c.remove_pod(&pod).await.unwrap();
    let umoci = image("shape-umoci");
    let served = amd64_manifest(addr, "shape-umoci");
    let mut own = 0;
    for chain in chain_ids(&mut c, &umoci).await {
        let snap = d.root.join("snapshots").join(&chain[7..]);
        own += allocated(&snap) + std::fs::metadata(&snap).unwrap().blocks() * 512;
    }
    let blobs = served["layers"]
        .as_array()
        .unwrap()
        .iter()
        .chain([&served["config"]])
        .map(|b| b["digest"].as_str().unwrap()[7..].to_string());
    for b in blobs {
        let m = std::fs::metadata(d.root.join("content/blobs/sha256").join(b)).unwrap();
        own += m.blocks() * 512;
    }
    let before = image_fs_bytes(&mut c).await;
    c.img
        .remove_image(cri::RemoveImageRequest {
            image: Some(cri::ImageSpec {
                image: umoci,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let after = image_fs_bytes(&mut c).await;
    assert_eq!(before - after, own, "{before} -> {after}");
    d.shutdown().await;
}

/// Docker schema 1 manifests are refused saying so; an image without Cmd or Entrypoint pulls
/// and a container without a command gets InvalidArgument (crustd stays up); an image of no
/// layers at all runs a binary mounted into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema1_commandless_and_layerless_images() {
    // A schema 1 manifest, converted by skopeo (which signs it) into a registry that takes it.
    let old = PrivateRegistry::start(&["schema1"]);
    let st = Command::new("skopeo")
        .args([
            "copy",
            "-q",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--format",
            "v2s1",
        ])
        .arg(format!("docker://{}", image("shape-buildah-docker")))
        .arg(format!("docker://{}/crust-test/schema1:latest", old.addr))
        .status()
        .unwrap();
    assert!(st.success(), "skopeo copy --format v2s1");
    let d = Daemon::start_config(
        "",
        &format!(
            "[image.registries.\"schema1.test\"]\nmirrors = [\"http://{}\"]\nskip_upstream = true",
            old.addr
        ),
    )
    .await
    .unwrap();
    let mut c = d.cri().await.unwrap();
    let e = c
        .pull("schema1.test/crust-test/schema1:latest")
        .await
        .unwrap_err();
    let s = e.downcast_ref::<tonic::Status>().unwrap();
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    assert!(
        s.message().contains("Docker schema 1 manifest"),
        "{}",
        s.message()
    );

    let pc = pod_config("odd", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();
    let nocmd = image("shape-nocmd");
    c.pull(&nocmd).await.unwrap();
    let e = c
        .create(&pod, &pc, container_config("nocmd", &nocmd, &[]))
        .await
        .unwrap_err();
    let s = e.downcast_ref::<tonic::Status>().unwrap();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("no command"), "{}", s.message());
    let out = run_to_end(
        &mut c,
        &pod,
        &pc,
        container_config("withcmd", &nocmd, &["echo", "given a command"]),
    )
    .await;
    assert_eq!(out, ["given a command"]);

    let empty = image("shape-empty");
    c.pull(&empty).await.unwrap();
    assert!(chain_ids(&mut c, &empty).await.is_empty());
    let mut cfg = container_config("empty", &empty, &[]);
    cfg.mounts.push(cri::Mount {
        container_path: "/busybox".into(),
        host_path: "/bin/busybox".into(),
        readonly: true,
        ..Default::default()
    });
    let out = run_to_end(&mut c, &pod, &pc, cfg).await;
    assert_eq!(out, ["shape-empty"]);
    c.remove_pod(&pod).await.unwrap();
    d.shutdown().await;
}

/// crustd's peak resident memory (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

/// A layer of 2 MB on the wire that unpacks to 1 GiB: crustd's memory stays bounded while it
/// streams, ImageFsInfo grows by the gigabyte and gives it back when the image goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gigabyte_layer_in_bounded_memory() {
    let addr = &registry().addr;
    let st = Command::new("python3")
        .arg(fixtures_dir().join("big-layer.py"))
        .arg(addr)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "big-layer.py");
    let d = Daemon::start().await.unwrap();
    let mut c = d.cri().await.unwrap();
    let before = image_fs_bytes(&mut c).await;
    let name = format!("{addr}/crust-test/shape-1gb:latest");
    let started = std::time::Instant::now();
    c.pull(&name).await.unwrap();
    let took = started.elapsed();
    let peak = peak_rss(d.pid().unwrap());
    assert!(peak < 200 << 20, "crustd peaked at {} MiB", peak >> 20);
    let grown = image_fs_bytes(&mut c).await - before;
    assert!(
        (1 << 30..(1 << 30) + (16 << 20)).contains(&grown),
        "ImageFsInfo grew by {grown}"
    );
    let img = image_record(&mut c, &name).await;
    assert!(
        img.size < 4 << 20,
        "CRI size is the wire size: {}",
        img.size
    );
    let pc = pod_config("big", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();
    let out = run_to_end(&mut c, &pod, &pc, container_config("big", &name, &[])).await;
    assert_eq!(out, [(1u64 << 30).to_string()]);
    c.remove_pod(&pod).await.unwrap();
    c.img
        .remove_image(cri::RemoveImageRequest {
            image: Some(cri::ImageSpec {
                image: name.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let after = image_fs_bytes(&mut c).await;
    assert!(after <= before + (1 << 20), "{before} -> {after}");
    eprintln!(
        "1 GiB layer: pulled in {took:?}, crustd peak RSS {} MiB",
        peak >> 20
    );
    d.shutdown().await;
}

/// One JSON line per entry below `dir` (tree-walk.py), keyed by path, without the allocated
/// block count (containerd writes holes out as zeros; compared on its own below).
fn walk(dir: &Path) -> BTreeMap<String, serde_json::Value> {
    let out = Command::new("python3")
        .arg(fixtures_dir().join("tree-walk.py"))
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tree-walk.py {}: {out:?}",
        dir.display()
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("blocks");
            (v["path"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

/// A path as tree-walk.py keys it (its bytes in hex).
fn hex(path: &str) -> String {
    path.bytes().map(|b| format!("{b:02x}")).collect()
}

/// A name cut to 60 characters for messages (the deep ones are ~3.9 KB).
fn short(name: &serde_json::Value) -> String {
    let n = name.as_str().unwrap_or_default();
    match n.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &n[..i]),
        None => n.to_string(),
    }
}

/// The entries where two trees differ, described for a failure message.
fn differences(
    a_name: &str,
    a: &BTreeMap<String, serde_json::Value>,
    b_name: &str,
    b: &BTreeMap<String, serde_json::Value>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (path, va) in a {
        match b.get(path) {
            None => out.push(format!("only in {a_name}: {}", short(&va["name"]))),
            Some(vb) if vb != va => {
                let fields: Vec<String> = va
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, v)| vb.get(k.as_str()) != Some(v))
                    .map(|(k, v)| format!("{k}: {a_name} {v}, {b_name} {}", vb[k.as_str()]))
                    .collect();
                out.push(format!("{}: {}", short(&va["name"]), fields.join("; ")));
            }
            _ => {}
        }
    }
    for (path, vb) in b {
        if !a.contains_key(path) {
            out.push(format!("only in {b_name}: {}", short(&vb["name"])));
        }
    }
    out
}

/// A private containerd (its own root, state and socket, no CRI plugin) that pulls into its
/// overlayfs snapshotter with ctr; stopped and removed when dropped.
struct Containerd {
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("crust-ctd-")
            .tempdir()
            .unwrap();
        let p = dir.path();
        let config = format!(
            "version = 2\nroot = {:?}\nstate = {:?}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = {:?}\n[plugins.\"io.containerd.internal.v1.opt\"]\n  path = {:?}\n",
            p.join("root"),
            p.join("state"),
            p.join("containerd.sock"),
            p.join("opt"),
        );
        std::fs::write(p.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(p.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(p.join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd (Debian's package; scripts/setup.sh installs it)");
        let ctd = Containerd { dir, child };
        let sock = ctd.dir.path().join("containerd.sock");
        let deadline = std::time::Instant::now() + crust_e2e::scaled(Duration::from_secs(20));
        while !sock.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "containerd did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        ctd
    }

    /// `ctr images pull --plain-http`, which unpacks too; returns the one snapshot's dir
    /// (the image must have a single layer).
    fn pull_single_layer(&self, image: &str) -> PathBuf {
        let o = Command::new("ctr")
            .arg("--address")
            .arg(self.dir.path().join("containerd.sock"))
            .args(["-n", "crust-test", "images", "pull", "--plain-http", image])
            .output()
            .unwrap();
        assert!(o.status.success(), "ctr pull: {o:?}");
        let snaps = self
            .dir
            .path()
            .join("root/io.containerd.snapshotter.v1.overlayfs/snapshots");
        let dirs: Vec<PathBuf> = std::fs::read_dir(snaps)
            .unwrap()
            .flatten()
            .map(|e| e.path().join("fs"))
            .collect();
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        dirs.into_iter().next().unwrap()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // SAFETY: kill with the pid of the containerd this value started and still owns.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        crust_e2e::unmount_under(self.dir.path());
    }
}

/// One layer tarred by GNU tar from a staged tree (set-id and sticky modes, owners past the
/// header's octal fields, xattrs including security.capability, hard links, 255-byte and
/// non-UTF-8 names, a ~3.9 KB path, sparse files, a fifo and a device, nanosecond and odd
/// mtimes, directory mtimes set after their children) unpacks in crust exactly as the tree
/// was and as in containerd 1.6 (but for the capability containerd drops from a hard-linked
/// file): names, types, modes, owners, mtimes, xattrs, sizes, contents and link structure. Holes stay holes in crust (containerd writes them out). The
/// capability works: a non-root user pings with the capable copy of busybox, not without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpack_matches_containerd_and_the_source_tree() {
    let addr = &registry().addr;
    let work = tempfile::Builder::new()
        .prefix("crust-fidelity-")
        .tempdir()
        .unwrap();
    let st = Command::new("python3")
        .arg(fixtures_dir().join("fidelity-image.py"))
        .arg(addr)
        .arg(work.path())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "fidelity-image.py");
    let source = walk(&work.path().join("tree"));
    assert!(source.len() > 60, "{} entries", source.len());

    let d = Daemon::start().await.unwrap();
    let mut c = d.cri().await.unwrap();
    let name = format!("{addr}/crust-test/fidelity:latest");
    c.pull(&name).await.unwrap();
    let chains = chain_ids(&mut c, &name).await;
    assert_eq!(chains.len(), 1);
    let snapshot = d.root.join("snapshots").join(&chains[0][7..]);
    let crust = walk(&snapshot);
    let diff = differences("source", &source, "crust", &crust);
    assert!(diff.is_empty(), "crust vs source:\n{}", diff.join("\n"));

    let ctd = Containerd::start();
    let mut theirs = walk(&ctd.pull_single_layer(&name));
    // containerd 1.6 chowns the inode again for a hard link's entry, which clears its file
    // capability (GNU tar does not repeat xattrs on link entries): the one place it differs
    // from the source. crust leaves the inode as its first entry made it.
    for path in ["capbin/ping", "capbin/ping-hardlink"] {
        let key = hex(path);
        let caps = &crust[&key]["xattrs"]["security.capability"];
        assert!(caps.is_string(), "crust kept {path}'s capability");
        assert_eq!(
            theirs[&key]["xattrs"],
            serde_json::json!({}),
            "containerd now keeps {path}'s capability: drop this exception"
        );
        theirs.get_mut(&key).unwrap()["xattrs"] = crust[&key]["xattrs"].clone();
    }
    let diff = differences("containerd", &theirs, "crust", &crust);
    assert!(diff.is_empty(), "crust vs containerd:\n{}", diff.join("\n"));
    drop(ctd);

    // Holes: 64 MiB with 12 KB of data.
    let sparse = std::fs::metadata(snapshot.join("sparse/file")).unwrap();
    assert_eq!(sparse.len(), 64 << 20);
    assert!(sparse.blocks() < 256, "{} blocks", sparse.blocks());

    // The old GNU sparse format (which containerd 1.6 refuses: "unhandled tar header type
    // 83") against its source.
    let oldgnu = format!("{addr}/crust-test/fidelity-oldgnu:latest");
    c.pull(&oldgnu).await.unwrap();
    let chains = chain_ids(&mut c, &oldgnu).await;
    let snap = d.root.join("snapshots").join(&chains[0][7..]);
    let file = |tree: &BTreeMap<String, serde_json::Value>| {
        tree.values()
            .find(|v| v["name"] == "sparse/oldgnu")
            .cloned()
            .unwrap()
    };
    assert_eq!(file(&walk(&snap)), file(&walk(&work.path().join("oldgnu"))));
    assert!(
        std::fs::metadata(snap.join("sparse/oldgnu"))
            .unwrap()
            .blocks()
            < 64
    );

    // File capabilities from the layer work in a container: uid 1000 pings only with them.
    let pc = pod_config("fidelity", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();
    let mut cfg = container_config(
        "ping",
        &name,
        &[
            "sh",
            "-c",
            "id -u; /capbin/ping -c 1 -W 5 127.0.0.1 >/dev/null && echo capable-ping-ok; \
             ping -c 1 -W 5 127.0.0.1 >/dev/null 2>&1 || echo plain-ping-refused",
        ],
    );
    crust_e2e::ctr_security(&mut cfg).run_as_user = Some(cri::Int64Value { value: 1000 });
    let out = run_to_end(&mut c, &pod, &pc, cfg).await;
    assert_eq!(out, ["1000", "capable-ping-ok", "plain-ping-refused"]);
    c.remove_pod(&pod).await.unwrap();
    d.shutdown().await;
}

/// An OCI layout whose index.json entry is an index holding another index (with the
/// platforms and an attestation), as nested as the registry's shape-nested, loads with
/// `crustctl load` and runs the amd64 image offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_oci_layout_loads_offline() {
    let addr = shapes();
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("nested.tar");
    let name = "airgap.example/shapes/nested:1.0";
    let st = Command::new("python3")
        .arg(fixtures_dir().join("layout-from-registry.py"))
        .args([addr, "crust-test/shape-nested", name])
        .arg(&archive)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "layout-from-registry.py");
    let d = Daemon::start().await.unwrap();
    let mut c = d.cri().await.unwrap();
    let import = d.dir.path().join("import");
    let o = crustctl(
        &d,
        &[
            "load",
            "--import-dir",
            &import.display().to_string(),
            &archive.display().to_string(),
        ],
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("Loaded image: {name}\n")
    );
    let pc = pod_config("layout", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();
    let out = run_to_end(&mut c, &pod, &pc, container_config("nested", name, &[])).await;
    assert_eq!(out, ["shape-nested"]);
    c.remove_pod(&pod).await.unwrap();
    d.shutdown().await;
}
