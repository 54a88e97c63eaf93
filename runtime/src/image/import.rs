//! Importing image archives for nodes that cannot reach a registry: OCI image layouts and
//! `docker save` archives, as tar files. Blobs are verified against their digests like pulled
//! ones, and layers are unpacked by the same confined unpacker.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::oci::{Descriptor, Manifest, ManifestDoc};
use super::reference::Reference;
use super::{ImageError, ImageRecord, ImageStore, chain_ids, oci_arch};
use crate::fsutil;

/// `org.opencontainers.image.ref.name` holds a full name when containerd or skopeo wrote the
/// layout, or just a tag; containerd's own annotation always holds the full name.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

fn sha256_file(path: &Path) -> Result<String, ImageError> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| ImageError::io(format!("open {}", path.display()), e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)
        .map_err(|e| ImageError::io(format!("read {}", path.display()), e))?;
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ImageError> {
    let b =
        std::fs::read(path).map_err(|e| ImageError::io(format!("read {}", path.display()), e))?;
    serde_json::from_slice(&b)
        .map_err(|e| ImageError::BadManifest(format!("{}: {e}", path.display())))
}

/// A path inside the extracted archive named by the archive itself: no `..`, no absolute.
fn inside(root: &Path, rel: &str) -> Result<PathBuf, ImageError> {
    let p = Path::new(rel);
    if p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir) {
        return Err(ImageError::BadManifest(format!(
            "archive path {rel:?} leaves the archive"
        )));
    }
    Ok(root.join(p))
}

impl ImageStore {
    /// Imports every image in the archive at `path`; returns each name it carried with the
    /// image record it now names.
    pub async fn import_archive(
        &self,
        path: &Path,
    ) -> Result<Vec<(String, ImageRecord)>, ImageError> {
        let work = self
            .cfg
            .root
            .join("content/tmp")
            .join(format!("import-{}", rand::random::<u64>()));
        fsutil::ensure_private_dir(&work)
            .map_err(|e| ImageError::io(format!("create {}", work.display()), e))?;
        let result = self.import_extracted(path, &work).await;
        let _ = std::fs::remove_dir_all(&work);
        result
    }

    async fn import_extracted(
        &self,
        archive: &Path,
        work: &Path,
    ) -> Result<Vec<(String, ImageRecord)>, ImageError> {
        let (archive, dir) = (archive.to_path_buf(), work.to_path_buf());
        tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(&archive)
                .map_err(|e| ImageError::io(format!("open {}", archive.display()), e))?;
            // tar-rs's unpack keeps every entry inside `dir` (it refuses `..` and writes
            // through no symlink it did not create).
            tar::Archive::new(std::io::BufReader::new(f))
                .unpack(&dir)
                .map_err(|e| ImageError::BadLayer(format!("{}: {e}", archive.display())))
        })
        .await
        .map_err(|e| ImageError::BadLayer(format!("extract task failed: {e}")))??;
        if work.join("index.json").is_file() {
            self.import_oci_layout(work).await
        } else if work.join("manifest.json").is_file() {
            self.import_docker_archive(work).await
        } else {
            Err(ImageError::Unsupported(
                "the archive is neither an OCI image layout (index.json) nor a docker save archive (manifest.json)".into(),
            ))
        }
    }

    /// Stores the file at `src` as blob `digest` after checking it is that digest.
    fn store_blob_file(&self, src: &Path, digest: &str) -> Result<(), ImageError> {
        let actual = sha256_file(src)?;
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                what: src.display().to_string(),
                expected: digest.to_string(),
                actual,
            });
        }
        let dest = self.blob_path(digest);
        if !dest.is_file() {
            std::fs::copy(src, &dest)
                .map_err(|e| ImageError::io(format!("store {}", dest.display()), e))?;
        }
        Ok(())
    }

    /// Unpacks the layers and records the image under `name`.
    async fn commit_imported(
        &self,
        name: &Reference,
        repo_digest: Option<String>,
        manifest: &Manifest,
    ) -> Result<ImageRecord, ImageError> {
        let config_bytes = std::fs::read(self.blob_path(&manifest.config.digest))
            .map_err(|e| ImageError::io("read the image config".to_string(), e))?;
        let (config, diff_ids) = super::parse_config(&config_bytes, manifest, name)?;
        let chains = chain_ids(&diff_ids);
        for ((layer, diff_id), chain) in manifest.layers.iter().zip(&diff_ids).zip(&chains) {
            self.ensure_snapshot(None, layer, diff_id, chain, None)
                .await?;
        }
        self.commit_record(name, repo_digest, manifest, &config, chains)
    }

    async fn import_oci_layout(
        &self,
        root: &Path,
    ) -> Result<Vec<(String, ImageRecord)>, ImageError> {
        let blob = |d: &str| -> Result<PathBuf, ImageError> {
            super::reference::validate_digest(d)
                .map_err(|e| ImageError::BadManifest(format!("digest {d}: {e}")))?;
            inside(root, &format!("blobs/sha256/{}", super::hex_of(d)))
        };
        let index: serde_json::Value = read_json(&root.join("index.json"))?;
        let mut out = Vec::new();
        for entry in index["manifests"].as_array().cloned().unwrap_or_default() {
            let desc: Descriptor = serde_json::from_value(entry.clone())
                .map_err(|e| ImageError::BadManifest(format!("index.json: {e}")))?;
            let annotations = &entry["annotations"];
            let name = annotations[CONTAINERD_NAME]
                .as_str()
                .or(annotations[REF_NAME].as_str())
                .filter(|n| n.contains('/') || n.contains(':'))
                .ok_or_else(|| {
                    ImageError::BadManifest(format!(
                        "index.json entry {} has no image name ({CONTAINERD_NAME} or a full {REF_NAME})",
                        desc.digest
                    ))
                })?;
            let reference = Reference::parse(name)?;
            let bytes = std::fs::read(blob(&desc.digest)?)
                .map_err(|e| ImageError::io(format!("read manifest {}", desc.digest), e))?;
            let mut doc =
                ManifestDoc::parse(&bytes, &desc.media_type).map_err(ImageError::BadManifest)?;
            // Down through indexes (BuildKit's OCI export nests one in index.json's entry):
            // this platform's entry, else an index without a platform.
            let mut depth = 0;
            let manifest = loop {
                let idx = match doc {
                    ManifestDoc::Image(m) => break m,
                    ManifestDoc::Index(idx) => idx,
                };
                depth += 1;
                if depth > super::MAX_INDEX_DEPTH {
                    return Err(ImageError::BadManifest(format!(
                        "{name}: indexes nested more than {} deep",
                        super::MAX_INDEX_DEPTH
                    )));
                }
                let d = idx
                    .select("linux", oci_arch())
                    .or_else(|| {
                        idx.manifests.iter().find(|d| {
                            d.platform.is_none()
                                && (d.media_type.contains("index") || d.media_type.contains("list"))
                        })
                    })
                    .ok_or_else(|| {
                        ImageError::NotFound(format!("{name} has no linux/{} image", oci_arch()))
                    })?;
                let inner = std::fs::read(blob(&d.digest)?)
                    .map_err(|e| ImageError::io(format!("read manifest {}", d.digest), e))?;
                doc = ManifestDoc::parse(&inner, &d.media_type).map_err(ImageError::BadManifest)?;
            };
            for d in std::iter::once(&manifest.config).chain(manifest.layers.iter()) {
                self.store_blob_file(&blob(&d.digest)?, &d.digest)?;
            }
            let top = sha256_file(&blob(&desc.digest)?)?;
            let repo_digest = reference.with_digest(&top);
            let rec = self
                .commit_imported(&reference, Some(repo_digest), &manifest)
                .await?;
            out.push((reference.to_string(), rec));
        }
        Ok(out)
    }

    async fn import_docker_archive(
        &self,
        root: &Path,
    ) -> Result<Vec<(String, ImageRecord)>, ImageError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            #[serde(default)]
            repo_tags: Vec<String>,
            layers: Vec<String>,
        }
        let entries: Vec<Entry> = read_json(&root.join("manifest.json"))?;
        let mut out = Vec::new();
        for e in entries {
            let config_path = inside(root, &e.config)?;
            let config_digest = sha256_file(&config_path)?;
            self.store_blob_file(&config_path, &config_digest)?;
            let mut layers = Vec::new();
            for l in &e.layers {
                let p = inside(root, l)?;
                let d = sha256_file(&p)?;
                self.store_blob_file(&p, &d)?;
                layers.push(Descriptor {
                    media_type: String::new(),
                    digest: d,
                    size: std::fs::metadata(&p).map(|m| m.len() as i64).unwrap_or(0),
                    platform: None,
                    urls: vec![],
                });
            }
            let manifest = Manifest {
                media_type: String::new(),
                config: Descriptor {
                    media_type: String::new(),
                    digest: config_digest.clone(),
                    size: std::fs::metadata(&config_path)
                        .map(|m| m.len() as i64)
                        .unwrap_or(0),
                    platform: None,
                    urls: vec![],
                },
                layers,
            };
            if e.repo_tags.is_empty() {
                return Err(ImageError::BadManifest(format!(
                    "manifest.json entry {} has no RepoTags",
                    e.config
                )));
            }
            for tag in &e.repo_tags {
                let reference = Reference::parse(tag)?;
                let rec = self.commit_imported(&reference, None, &manifest).await?;
                out.push((reference.to_string(), rec));
            }
        }
        Ok(out)
    }
}
