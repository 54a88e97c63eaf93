//! ImageService end to end against a real registry.

use std::os::unix::fs::MetadataExt;

use crust_e2e::{Daemon, cri, registry};
use tonic::Code;

fn spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}

#[tokio::test]
async fn pull_status_list_cached_repull_and_remove() {
    let d = Daemon::start().await.unwrap();
    let mut c = d.cri().await.unwrap();
    let image = registry().busybox();

    // Absent: ImageStatus answers with no image, not an error.
    let st = c
        .img
        .image_status(cri::ImageStatusRequest {
            image: spec(&image),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(st.image.is_none());

    let id = c.pull(&image).await.unwrap();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "image_ref {id} is not a config digest"
    );

    let st = c
        .img
        .image_status(cri::ImageStatusRequest {
            image: spec(&image),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let img = st.image.expect("pulled image has a status");
    assert_eq!(img.id, id);
    assert_eq!(img.repo_tags, vec![image.clone()]);
    assert_eq!(img.repo_digests.len(), 1);
    assert!(
        img.repo_digests[0].starts_with(&format!("{}/crust-test/busybox@sha256:", registry().addr))
    );
    assert!(
        img.size > 100_000,
        "size {} is too small for busybox",
        img.size
    );
    assert!(st.info.get("info").is_some_and(|i| i.contains("chain_ids")));

    // The same image by id, by id prefix and by digest reference.
    for name in [
        id.clone(),
        id[7..19].to_string(),
        img.repo_digests[0].clone(),
    ] {
        let got = c
            .img
            .image_status(cri::ImageStatusRequest {
                image: spec(&name),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .image;
        assert_eq!(got.map(|i| i.id), Some(id.clone()), "lookup by {name}");
    }

    // A second pull downloads and unpacks nothing: the blob and snapshot are the same files.
    let snapshots: Vec<_> = std::fs::read_dir(d.root.join("snapshots"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| (e.path(), e.metadata().unwrap().ino()))
        .collect();
    assert_eq!(snapshots.len(), 1);
    let blobs: Vec<_> = std::fs::read_dir(d.root.join("content/blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| (e.path(), e.metadata().unwrap().ino()))
        .collect();
    assert_eq!(c.pull(&image).await.unwrap(), id);
    for (p, ino) in snapshots.iter().chain(blobs.iter()) {
        assert_eq!(
            std::fs::metadata(p).unwrap().ino(),
            *ino,
            "{} was rewritten",
            p.display()
        );
    }

    let list = c
        .img
        .list_images(cri::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(list.len(), 1);

    let fs = c
        .img
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(fs.image_filesystems[0].used_bytes.as_ref().unwrap().value > 100_000);

    // Remove by tag, then again (idempotent); the content is collected.
    c.img
        .remove_image(cri::RemoveImageRequest {
            image: spec(&image),
        })
        .await
        .unwrap();
    c.img
        .remove_image(cri::RemoveImageRequest {
            image: spec(&image),
        })
        .await
        .unwrap();
    let list = c
        .img
        .list_images(cri::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert!(list.is_empty());
    assert_eq!(
        std::fs::read_dir(d.root.join("content/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );

    // Pull again and remove by id.
    let id2 = c.pull(&image).await.unwrap();
    assert_eq!(id2, id);
    c.img
        .remove_image(cri::RemoveImageRequest { image: spec(&id) })
        .await
        .unwrap();
    assert!(
        c.img
            .list_images(cri::ListImagesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .images
            .is_empty()
    );
    d.shutdown().await;
}

#[tokio::test]
async fn bad_image_requests_get_clear_codes() {
    let d = Daemon::start().await.unwrap();
    let mut c = d.cri().await.unwrap();
    let cases = [
        ("UPPER/case:1", Code::InvalidArgument),
        ("", Code::InvalidArgument),
        (
            &*format!("{}/crust-test/absent:latest", registry().addr),
            Code::NotFound,
        ),
        (
            &*format!("{}/crust-test/busybox:nosuchtag", registry().addr),
            Code::NotFound,
        ),
    ];
    for (image, code) in cases {
        let err = c
            .img
            .pull_image(cri::PullImageRequest {
                image: spec(image),
                ..Default::default()
            })
            .await
            .expect_err(image);
        assert_eq!(err.code(), code, "pull {image:?}: {}", err.message());
        assert!(!err.message().is_empty());
    }
    // A registry nobody listens on.
    let err = c
        .img
        .pull_image(cri::PullImageRequest {
            image: spec("127.0.0.1:1/x/y:z"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    // Nothing half-pulled is listed.
    assert!(
        c.img
            .list_images(cri::ListImagesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .images
            .is_empty()
    );
    d.shutdown().await;
}

#[tokio::test]
async fn manifest_kinds_platforms_and_layers_unpack_right() {
    use crust_e2e::{container_config, log_lines, pod_config};
    let d = Daemon::start().await.unwrap();
    let mut c = d.cri().await.unwrap();
    let pc = pod_config("kinds", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();
    // An OCI index and a Docker manifest list: linux/amd64 is picked, and repo_digests names
    // the index (what the tag points at), not the platform manifest.
    for repo in ["multi", "dockerlist"] {
        let image = registry().image(repo);
        let id = c.pull(&image).await.unwrap();
        let img = c
            .img
            .image_status(cri::ImageStatusRequest {
                image: spec(&image),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .image
            .unwrap();
        assert_eq!(img.id, id);
        let served = served_digest(&registry().addr, repo);
        // Both repos' amd64 entries carry the same config, so they are one image with both
        // names; each name's digest is the digest of what its tag points at.
        assert!(
            img.repo_digests
                .contains(&format!("{}/crust-test/{repo}@{served}", registry().addr)),
            "{:?} lacks {repo}@{served}",
            img.repo_digests
        );
        assert!(img.repo_tags.contains(&image));
        let ctr = c
            .run(&pod, &pc, container_config(repo, &image, &[]))
            .await
            .unwrap();
        let st = c
            .wait_exited(&ctr, std::time::Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(
            log_lines(&st.log_path),
            vec![("stdout".to_string(), "right-arch".to_string())],
            "{repo}"
        );
    }
    // Two layers: a whiteout hides /etc/group, an opaque dir hides the lower /var.
    let image = registry().image("layered");
    c.pull(&image).await.unwrap();
    let probe = "test -e /etc/group && echo group-present; test -e /etc/passwd && echo passwd-present; ls /var";
    let ctr = c
        .run(
            &pod,
            &pc,
            container_config("layered", &image, &["sh", "-c", probe]),
        )
        .await
        .unwrap();
    let st = c
        .wait_exited(&ctr, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let out: Vec<String> = log_lines(&st.log_path)
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    assert_eq!(
        out,
        vec!["passwd-present".to_string(), "new.txt".to_string()]
    );
    // A zstd-compressed layer unpacks like any other.
    let image = registry().image("zstd");
    c.pull(&image).await.unwrap();
    let ctr = c
        .run(
            &pod,
            &pc,
            container_config("zstd", &image, &["cat", "/zstd-marker"]),
        )
        .await
        .unwrap();
    let st = c
        .wait_exited(&ctr, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(log_lines(&st.log_path)[0].1, "unpacked from zstd");
    // The busybox layer is shared with the other images: one snapshot per chain id.
    let snapshots = std::fs::read_dir(d.root.join("snapshots"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(
        snapshots, 3,
        "busybox layer + the second layers of the layered and zstd images"
    );
    drop(c);
    d.shutdown().await;
}

/// The digest the registry serves for `repo:latest` (Docker-Content-Digest), read with curl.
fn served_digest(addr: &str, repo: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-fsSI", "-H"])
        .arg("Accept: application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json")
        .arg(format!("http://{addr}/v2/crust-test/{repo}/manifests/latest"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("docker-content-digest")
                .then(|| v.trim().to_string())
        })
        .expect("registry sends Docker-Content-Digest")
}

fn repo_tags(c: &crust_e2e::Cri) -> impl std::future::Future<Output = Vec<String>> + use<> {
    let mut img = c.img.clone();
    async move {
        img.list_images(cri::ListImagesRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .images
            .into_iter()
            .flat_map(|i| i.repo_tags)
            .collect()
    }
}

/// Mirrors: tried in order (a dead one is skipped), the image keeps the name it was asked by,
/// and skip_upstream keeps a pull off the real registry.
#[tokio::test]
async fn mirrors_serve_other_registry_names() {
    let reg = registry();
    let d = Daemon::start_config(
        "",
        &format!(
            "[image.registries.\"registry.example.test\"]\nmirrors = [\"http://127.0.0.1:1\", {{ endpoint = \"http://{}\" }}]\nskip_upstream = true\n[image.registries.\"dead.example.test\"]\nmirrors = [\"http://127.0.0.1:1\"]\nskip_upstream = true",
            reg.addr
        ),
    )
    .await
    .unwrap();
    let mut c = d.cri().await.unwrap();
    let name = "registry.example.test/crust-test/busybox:latest";
    c.pull(name).await.unwrap();
    let tags = repo_tags(&c).await;
    assert_eq!(
        tags,
        vec![name.to_string()],
        "listed under the name it was pulled by"
    );
    let e = c
        .pull("dead.example.test/crust-test/busybox:latest")
        .await
        .unwrap_err();
    let s = e.downcast_ref::<tonic::Status>().unwrap();
    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
    assert!(s.message().contains("127.0.0.1:1"), "{s:?}");
}

/// Transient registry failures are retried (500, 429 after its Retry-After), a blob cut
/// halfway resumes with a Range request, two pulls of one image fetch each blob once, and a
/// registry that stops sending fails the pull with DeadlineExceeded, leaving nothing behind.
#[tokio::test]
async fn pulls_survive_registry_faults_and_stalls_fail_cleanly() {
    let reg = registry();
    let proxy = crust_e2e::faultproxy::FaultProxy::start(&reg.addr).await;
    let d = Daemon::start_config(
        "",
        &format!(
            "progress_timeout = \"2s\"\n[image.registries.\"faulty.test\"]\nmirrors = [\"http://{}\"]\nskip_upstream = true",
            proxy.addr
        ),
    )
    .await
    .unwrap();
    let c = d.cri().await.unwrap();
    use std::sync::atomic::Ordering::SeqCst;
    let f = &proxy.faults;
    f.manifest_500.store(1, SeqCst);
    f.throttle.store(1, SeqCst);
    f.cut_blobs.store(1, SeqCst);
    // Two pulls of the layered image at once.
    let name = "faulty.test/crust-test/layered:latest";
    let (mut c1, mut c2) = (d.cri().await.unwrap(), d.cri().await.unwrap());
    let (a, b) = tokio::join!(c1.pull(name), c2.pull(name));
    assert_eq!(a.unwrap(), b.unwrap());
    assert!(
        f.range_requests.load(SeqCst) >= 1,
        "the cut blob was resumed with a Range request"
    );
    for (digest, n) in f.blob_gets.lock().unwrap().iter() {
        assert_eq!(*n, 1, "blob {digest} fetched {n} times");
    }
    assert_eq!(f.manifest_500.load(SeqCst), 0);
    assert_eq!(f.throttle.load(SeqCst), 0);

    // A stalled registry: DeadlineExceeded, and no image or snapshot half there.
    f.stall_blobs.store(true, SeqCst);
    let stalled = "faulty.test/crust-test/hostile:latest";
    let mut c3 = d.cri().await.unwrap();
    let e = c3.pull(stalled).await.unwrap_err();
    let s = e.downcast_ref::<tonic::Status>().unwrap();
    assert_eq!(s.code(), Code::DeadlineExceeded, "{s:?}");
    assert!(!repo_tags(&c).await.iter().any(|t| t.contains("hostile")));
    let tmp = d.root.join("content/tmp");
    assert_eq!(
        std::fs::read_dir(&tmp).map(|r| r.count()).unwrap_or(0),
        0,
        "no partial blob left"
    );
    f.stall_blobs.store(false, SeqCst);
    c3.pull(stalled).await.unwrap();
}

async fn fs_info(c: &mut crust_e2e::Cri) -> (u64, u64, String, u64) {
    let r = c
        .img
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let img = &r.image_filesystems[0];
    let ctr = &r.container_filesystems[0];
    (
        img.used_bytes.unwrap().value,
        img.inodes_used.unwrap().value,
        ctr.fs_id.as_ref().unwrap().mountpoint.clone(),
        ctr.used_bytes.unwrap().value,
    )
}

/// ImageFsInfo follows images as they come and go, and containers' writable layers
/// separately, so kubelet's image GC and eviction see real numbers.
#[tokio::test]
async fn image_fs_info_follows_images_and_container_layers() {
    let d = Daemon::start().await.unwrap();
    let mut c = d.cri().await.unwrap();
    let (b0, i0, ctr_dir, w0) = fs_info(&mut c).await;
    assert!(
        ctr_dir.starts_with(&d.root.display().to_string()),
        "{ctr_dir}"
    );
    let image = registry().busybox();
    c.pull(&image).await.unwrap();
    let (b1, i1, _, _) = fs_info(&mut c).await;
    assert!(b1 > b0 + 500_000 && i1 > i0 + 100, "{b0}/{i0} -> {b1}/{i1}");

    let pc = crust_e2e::pod_config("fsinfo", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();
    let id = c
        .run(
            &pod,
            &pc,
            crust_e2e::container_config(
                "writer",
                &image,
                &["dd", "if=/dev/zero", "of=/big", "bs=1048576", "count=2"],
            ),
        )
        .await
        .unwrap();
    c.wait_exited(&id, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let (b2, _, _, w2) = fs_info(&mut c).await;
    assert!(w2 >= w0 + 2 * 1048576, "writable layers {w0} -> {w2}");
    assert!(
        b2 < b1 + 100_000,
        "the container's writes are not image bytes: {b1} -> {b2}"
    );

    c.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    c.img
        .remove_image(cri::RemoveImageRequest {
            image: spec(&image),
        })
        .await
        .unwrap();
    let (b3, _, _, w3) = fs_info(&mut c).await;
    assert!(
        w3 < w2,
        "writable layer gone with its container: {w2} -> {w3}"
    );
    assert!(b3 < b1 - 500_000, "image bytes freed: {b1} -> {b3}");
}

async fn pull_with(
    c: &mut crust_e2e::Cri,
    image: &str,
    auth: Option<cri::AuthConfig>,
) -> Result<String, tonic::Status> {
    c.img
        .pull_image(cri::PullImageRequest {
            image: spec(image),
            auth,
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

/// A registry that wants Basic auth: credentials from the pull request (wrong ones are
/// refused) or from the configured credentials file, and the password never lands in logs
/// or state.
#[tokio::test]
async fn basic_auth_from_the_request_or_the_credentials_file() {
    use base64::Engine as _;
    let reg = registry();
    let proxy = crust_e2e::faultproxy::FaultProxy::start(&reg.addr).await;
    *proxy.faults.basic_auth.lock().unwrap() = Some("alice:s3cret-pw".into());
    let creds = tempfile::tempdir().unwrap();
    let file = creds.path().join("config.json");
    let mirror = format!(
        "[image.registries.\"auth.test\"]\nmirrors = [\"http://{}\"]\nskip_upstream = true",
        proxy.addr
    );
    let image = "auth.test/crust-test/busybox:latest";
    let basic = |user: &str, pass: &str| {
        Some(cri::AuthConfig {
            username: user.into(),
            password: pass.into(),
            ..Default::default()
        })
    };

    // Without a credentials file: anonymous is refused, wrong credentials too, right ones work.
    let d = Daemon::start_config("", &mirror).await.unwrap();
    let mut c = d.cri().await.unwrap();
    let e = pull_with(&mut c, image, None).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = pull_with(&mut c, image, basic("alice", "wrong"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    pull_with(&mut c, image, basic("alice", "s3cret-pw"))
        .await
        .unwrap();
    drop(c);
    d.shutdown().await;

    // With one: pulls that bring no credentials use it.
    std::fs::write(
        &file,
        format!(
            r#"{{"auths": {{"auth.test": {{"auth": "{}"}}}}}}"#,
            base64::engine::general_purpose::STANDARD.encode("alice:s3cret-pw")
        ),
    )
    .unwrap();
    let d = Daemon::start_config("", &format!("credentials_file = {file:?}\n{mirror}"))
        .await
        .unwrap();
    let mut c = d.cri().await.unwrap();
    pull_with(&mut c, image, None).await.unwrap();
    // Request credentials win over the file's.
    let e = pull_with(
        &mut c,
        "auth.test/crust-test/layered:latest",
        basic("alice", "nope"),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let log = d.daemon_log();
    assert!(
        !log.contains("s3cret-pw") && !log.contains("nope"),
        "secrets in the daemon log"
    );
    let leaked = std::process::Command::new("grep")
        .args(["-rl", "s3cret-pw"])
        .arg(&d.root)
        .arg(&d.state)
        .output()
        .unwrap();
    assert!(
        leaked.stdout.is_empty(),
        "secrets in state: {}",
        String::from_utf8_lossy(&leaked.stdout)
    );
}

/// Hostile layers from a real registry: each pull fails naming the problem, nothing lands
/// outside the store, and no half-unpacked snapshot or image is left.
#[tokio::test]
async fn malicious_layers_are_refused_and_nothing_escapes() {
    let d = Daemon::start().await.unwrap();
    let mut c = d.cri().await.unwrap();
    let hostname = std::fs::read("/etc/hostname").unwrap_or_default();
    for (kind, needle) in [
        ("dotdot", ".."),
        ("symlink", "symlink"),
        ("hardlink", "climbs out"),
        ("pax", ""),
    ] {
        let _ = std::fs::remove_file(format!("/tmp/crust-evil-{kind}"));
        let image = registry().image(&format!("evil-{kind}"));
        let e = c.pull(&image).await.unwrap_err();
        let s = e.downcast_ref::<tonic::Status>().unwrap();
        assert!(
            matches!(
                s.code(),
                Code::DataLoss | Code::FailedPrecondition | Code::InvalidArgument
            ),
            "{kind}: {s:?}"
        );
        assert!(s.message().contains(needle), "{kind}: {}", s.message());
        assert!(
            !std::path::Path::new(&format!("/tmp/crust-evil-{kind}")).exists(),
            "{kind}: a file landed outside the store"
        );
        assert!(
            !repo_tags(&c).await.iter().any(|t| t.contains("evil")),
            "{kind}: listed"
        );
    }
    assert_eq!(std::fs::read("/etc/hostname").unwrap_or_default(), hostname);
    // A layer of the same image still unpacking when the pull failed finishes (and is
    // committed) on its own: wait for that, then nothing half-made may remain.
    let snapshots = d.root.join("snapshots");
    let half_made = || {
        std::fs::read_dir(&snapshots)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
            .count()
    };
    assert!(
        crust_e2e::eventually(std::time::Duration::from_secs(30), || async {
            half_made() == 0
        })
        .await,
        "half-unpacked snapshots remain"
    );
    // The store still works.
    c.pull(&registry().busybox()).await.unwrap();
}

/// Air-gapped nodes: an OCI layout dropped in the import directory and a `docker save`
/// archive loaded with crustctl become images that run without any registry; a bad archive
/// is set aside with the reason.
#[tokio::test]
async fn archives_are_imported_for_air_gapped_nodes() {
    let d = Daemon::start().await.unwrap();
    let mut c = d.cri().await.unwrap();
    let archives = tempfile::tempdir().unwrap();
    let st = std::process::Command::new(crust_e2e::fixtures_dir().join("make-archives.sh"))
        .arg(&registry().addr)
        .arg(archives.path())
        .status()
        .unwrap();
    assert!(st.success(), "make-archives.sh");
    let import = d.dir.path().join("import");

    // Dropped in (copied under a hidden name, then renamed, so crustd never sees half a
    // file): picked up while the daemon runs.
    std::fs::copy(archives.path().join("oci.tar"), import.join(".oci.tar")).unwrap();
    std::fs::rename(import.join(".oci.tar"), import.join("oci.tar")).unwrap();
    let done = import.join("done/oci.tar.json");
    assert!(
        crust_e2e::eventually(std::time::Duration::from_secs(30), || async {
            done.is_file()
        })
        .await,
        "the OCI layout was not imported"
    );
    assert!(
        repo_tags(&c)
            .await
            .contains(&"airgap.example/tools/busybox:1.0".to_string())
    );

    // crustctl load, through the same directory.
    let o = crust_e2e::crustctl(
        &d,
        &[
            "load",
            "--import-dir",
            &import.display().to_string(),
            &archives.path().join("docker.tar").display().to_string(),
        ],
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "Loaded image: airgap.example/tools/busybox:docker\n"
    );

    // Imported images run; their names point nowhere reachable.
    let pc = crust_e2e::pod_config("airgap", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();
    for (name, tag) in [("oci", "1.0"), ("docker", "docker")] {
        let image = format!("airgap.example/tools/busybox:{tag}");
        let id = c
            .run(
                &pod,
                &pc,
                crust_e2e::container_config(name, &image, &["echo", "offline"]),
            )
            .await
            .unwrap();
        let st = c
            .wait_exited(&id, std::time::Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(crust_e2e::log_lines(&st.log_path)[0].1, "offline", "{name}");
    }

    // A tar that is not an image archive.
    let bogus = archives.path().join("bogus.tar");
    let st = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&bogus)
        .arg("-C")
        .arg(archives.path())
        .arg("oci.tar")
        .status()
        .unwrap();
    assert!(st.success());
    let o = crust_e2e::crustctl(
        &d,
        &[
            "load",
            "--import-dir",
            &import.display().to_string(),
            &bogus.display().to_string(),
        ],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("neither an OCI image layout"),
        "{o:?}"
    );
}

/// A registry with bearer tokens: the token is fetched once and reused by the next pulls of
/// the repository until it expires.
#[tokio::test]
async fn bearer_tokens_are_reused_until_they_expire() {
    use std::sync::atomic::Ordering::SeqCst;
    let reg = registry();
    let proxy = crust_e2e::faultproxy::FaultProxy::start(&reg.addr).await;
    proxy.faults.bearer.store(true, SeqCst);
    let d = Daemon::start_config(
        "",
        &format!(
            "[image.registries.\"bearer.test\"]\nmirrors = [\"http://{}\"]\nskip_upstream = true",
            proxy.addr
        ),
    )
    .await
    .unwrap();
    let mut c = d.cri().await.unwrap();
    let image = "bearer.test/crust-test/busybox:latest";
    c.pull(image).await.unwrap();
    assert_eq!(proxy.faults.token_requests.load(SeqCst), 1);
    c.img
        .remove_image(cri::RemoveImageRequest { image: spec(image) })
        .await
        .unwrap();
    c.pull(image).await.unwrap();
    assert_eq!(
        proxy.faults.token_requests.load(SeqCst),
        1,
        "the second pull reused the token"
    );
    // Another repository needs its own token.
    c.pull("bearer.test/crust-test/layered:latest")
        .await
        .unwrap();
    assert_eq!(proxy.faults.token_requests.load(SeqCst), 2);
}

/// A non-distributable layer the registry does not hold is fetched from the URL its
/// descriptor gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_layers_come_from_their_urls() {
    let reg = registry();
    let proxy = crust_e2e::faultproxy::FaultProxy::start(&reg.addr).await;
    let out = std::process::Command::new("curl")
        .args([
            "-fsS",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
        ])
        .arg(format!(
            "http://{}/v2/crust-test/busybox/manifests/latest",
            reg.addr
        ))
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let config = m["config"]["digest"].as_str().unwrap().to_string();
    m["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json".into();
    m["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json".into();
    m["layers"][0]["mediaType"] =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip".into();
    m["layers"][0]["urls"] = serde_json::json!([
        "http://127.0.0.1:1/unreachable",
        format!("http://{}/foreign/{layer}", proxy.addr)
    ]);
    *proxy.faults.foreign.lock().unwrap() = Some((serde_json::to_vec(&m).unwrap(), config));
    let d = Daemon::start_config(
        "",
        &format!(
            "[image.registries.\"foreign.test\"]\nmirrors = [\"http://{}\"]\nskip_upstream = true",
            proxy.addr
        ),
    )
    .await
    .unwrap();
    let mut c = d.cri().await.unwrap();
    c.pull("foreign.test/crust-test/foreign:latest")
        .await
        .unwrap();
    assert!(
        d.root
            .join("content/blobs/sha256")
            .join(layer.trim_start_matches("sha256:"))
            .is_file()
    );
}

/// Images of 127 and 500 layers (500 is overlayfs's own limit; Docker stops at 125) pull and
/// run: with absolute snapshot paths in one mount(2) page, anything past ~40 layers failed.
/// This kernel has `lowerdir+`, so the new mount API takes them (the mount(2) fallback with
/// short names, and the refusal of 501 layers, are unit-tested in runtime's overlay.rs).
#[tokio::test]
async fn images_of_127_and_500_layers_run() {
    let reg = registry();
    let pushed = std::process::Command::new("python3")
        .arg(crust_e2e::fixtures_dir().join("many-layers.py"))
        .arg(&reg.addr)
        .status()
        .unwrap();
    assert!(pushed.success());
    let d = Daemon::start().await.unwrap();
    let mut c = d.cri().await.unwrap();
    let pc = crust_e2e::pod_config("layers", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();
    for count in [127, 500] {
        let image = reg.image(&format!("layers-{count}"));
        c.pull(&image).await.unwrap();
        let ctr = c
            .run(
                &pod,
                &pc,
                crust_e2e::container_config(
                    &format!("layers-{count}"),
                    &image,
                    &["sh", "-c", "ls /layers | wc -l; cat /layers/top"],
                ),
            )
            .await
            .unwrap();
        let st = c
            .wait_exited(&ctr, std::time::Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(st.exit_code, 0, "{st:?}");
        let out: Vec<String> = crust_e2e::log_lines(&st.log_path)
            .into_iter()
            .map(|(_, l)| l.trim().to_string())
            .collect();
        // count-1 numbered files plus `top`, and the top layer's number wins.
        assert_eq!(out, vec![count.to_string(), (count - 1).to_string()]);
    }
    c.remove_pod(&pod).await.unwrap();
    d.shutdown().await;
}

/// A call whose deadline passes is answered DEADLINE_EXCEEDED by crustd itself, as gRPC-Go
/// servers answer it (tonic's server alone says CANCELLED); critest's "public image should
/// timeout if requested" wants that code. The client here sends `grpc-timeout` and leaves the
/// deadline to the server (a plain HTTP/2 connection, not tonic's Channel, which would enforce
/// it itself), so the code seen is the server's.
#[tokio::test]
async fn a_pull_past_the_callers_deadline_is_deadline_exceeded() {
    let d = Daemon::start().await.unwrap();
    let stream = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let http = tower::service_fn(move |req| {
        let mut sender = sender.clone();
        async move { sender.send_request(req).await }
    });
    let mut img = cri::image_service_client::ImageServiceClient::with_origin(
        http,
        "http://localhost".parse().unwrap(),
    );
    // A registry that takes the connection and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let image = format!("{}/crust-test/never:latest", silent.local_addr().unwrap());
    let mut req = tonic::Request::new(cri::PullImageRequest {
        image: spec(&image),
        ..Default::default()
    });
    req.set_timeout(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = img.pull_image(req).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(err.message().contains("PullImage"), "{err:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
    // The daemon goes on serving.
    img.list_images(cri::ListImagesRequest::default())
        .await
        .unwrap();
    drop(silent);
    d.shutdown().await;
}
