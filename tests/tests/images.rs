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
