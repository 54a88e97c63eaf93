//! Images: references, the registry client, the content store, layer snapshots and the image
//! records that tie them together.
//!
//! On disk under the engine root:
//! - `content/blobs/sha256/<hex>`: manifests, configs and layer blobs, verified before rename;
//! - `snapshots/<chain-id hex>/`: one unpacked layer each, shared by every image that has it;
//! - `images/<config hex>.json`: one record per image (its id is the config digest).

mod import;
pub mod oci;
pub mod push;
pub mod reference;
pub mod registry;
mod tag;
pub mod unpack;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, RwLock};
use tracing::Instrument;

use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::fsutil;
use oci::{ImageConfigFile, ManifestDoc, RunConfig};
pub use reference::{Reference, ReferenceError};
pub use registry::{Credentials, RegistryConfig};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("{0}")]
    NotFound(String),
    #[error("registry {url}: {message}")]
    Registry { url: String, message: String },
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error("invalid layer: {0}")]
    BadLayer(String),
    #[error("invalid manifest or config: {0}")]
    BadManifest(String),
    /// The registry sent nothing for longer than the configured progress timeout.
    #[error("pull made no progress: {0}")]
    Stalled(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ImageError {
    /// A short label for metrics: why a pull failed.
    pub fn reason(&self) -> &'static str {
        match self {
            ImageError::Reference(_) => "invalid_reference",
            ImageError::NotFound(_) => "not_found",
            ImageError::Registry { .. } => "registry",
            ImageError::Unauthorized(_) => "unauthorized",
            ImageError::DigestMismatch { .. } => "digest_mismatch",
            ImageError::Unsupported(_) => "unsupported",
            ImageError::BadLayer(_) => "bad_layer",
            ImageError::BadManifest(_) => "bad_manifest",
            ImageError::Stalled(_) => "stalled",
            ImageError::Io { .. } => "io",
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ImageError::Io {
            context: context.into(),
            source,
        }
    }
}

/// What the engine remembers about a pulled image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageRecord {
    /// `sha256:` digest of the config blob: the image id and the CRI `image_ref`.
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// Bytes of the config and the (compressed) layers, as the registry served them.
    pub size: u64,
    pub config: RunConfig,
    /// Layer chain ids, bottom layer first.
    pub chain_ids: Vec<String>,
    pub layer_digests: Vec<String>,
    #[serde(default)]
    pub pinned: bool,
}

#[derive(Debug, Clone)]
pub struct ImageStoreConfig {
    pub root: PathBuf,
    pub registry: RegistryConfig,
    /// Layers fetched at once per pull.
    pub max_concurrent_downloads: usize,
    /// Image names marked `pinned` (never garbage-collected by kubelet), e.g. the pause image.
    pub pinned: Vec<String>,
}

pub struct ImageStore {
    cfg: ImageStoreConfig,
    /// One HTTP client per TLS setting in use (the default one first).
    clients: StdMutex<HashMap<registry::TlsOptions, reqwest::Client>>,
    /// Bearer tokens reused across pulls until they expire.
    tokens: Arc<registry::TokenCache>,
    /// Pulls in flight, by normalized name, for progress reports.
    pulls: StdMutex<HashMap<String, Arc<PullProgress>>>,
    images: RwLock<HashMap<String, ImageRecord>>,
    /// One lock per blob or snapshot being produced, so concurrent pulls fetch each once.
    inflight: StdMutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// How deep indexes may nest inside indexes.
const MAX_INDEX_DEPTH: usize = 4;

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

impl ImageStore {
    pub fn open(cfg: ImageStoreConfig) -> Result<Self, ImageError> {
        for d in ["content/blobs/sha256", "content/tmp", "snapshots", "images"] {
            let p = cfg.root.join(d);
            fsutil::ensure_private_dir(&p)
                .map_err(|e| ImageError::io(format!("create {}", p.display()), e))?;
        }
        // Leftovers of a crash mid-pull: temp blobs and half-unpacked snapshots are never used.
        let _ = fsutil::remove_dir_all_if_exists(&cfg.root.join("content/tmp"));
        let _ = fsutil::ensure_private_dir(&cfg.root.join("content/tmp"));
        if let Ok(rd) = std::fs::read_dir(cfg.root.join("snapshots")) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let mut images = HashMap::new();
        let dir = cfg.root.join("images");
        let rd = std::fs::read_dir(&dir)
            .map_err(|e| ImageError::io(format!("read {}", dir.display()), e))?;
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                match fsutil::read_json::<ImageRecord>(&p) {
                    Ok(Some(rec)) => {
                        images.insert(rec.id.clone(), rec);
                    }
                    Ok(None) => {}
                    Err(err) => {
                        tracing::warn!(path = %p.display(), %err, "skipping unreadable image record")
                    }
                }
            }
        }
        let http = http_client(&registry::TlsOptions::default())?;
        Ok(ImageStore {
            cfg,
            clients: StdMutex::new(HashMap::from([(registry::TlsOptions::default(), http)])),
            tokens: Arc::default(),
            pulls: StdMutex::new(HashMap::new()),
            images: RwLock::new(images),
            inflight: StdMutex::new(HashMap::new()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.cfg.root
    }

    /// Builds the HTTP client of registries without TLS options ahead of the first pull:
    /// loading the system's CA certificates takes ~15 ms, which a first pull would wait for.
    pub fn prepare_client(&self) {
        if let Err(e) = self.client(&registry::TlsOptions::default()) {
            tracing::warn!(err = %e, "registry HTTP client");
        }
    }

    /// A fresh directory beside the snapshots to unpack a layer into; renamed to its chain id
    /// once verified.
    fn new_unpack_dir(&self) -> Result<PathBuf, ImageError> {
        let dir = self
            .cfg
            .root
            .join("snapshots")
            .join(format!(".tmp-{}", rand::random::<u64>()));
        std::fs::create_dir(&dir)
            .map_err(|e| ImageError::io(format!("create {}", dir.display()), e))?;
        Ok(dir)
    }

    fn client(&self, tls: &registry::TlsOptions) -> Result<reqwest::Client, ImageError> {
        let mut clients = self.clients.lock().expect("clients lock");
        if let Some(c) = clients.get(tls) {
            return Ok(c.clone());
        }
        let c = http_client(tls)?;
        clients.insert(tls.clone(), c.clone());
        Ok(c)
    }

    /// The first endpoint (mirror or the registry) that serves `reference`'s manifest, with
    /// a session on it and the manifest. Errors name every endpoint tried.
    async fn open_session(
        &self,
        reference: &Reference,
        creds: &Credentials,
    ) -> Result<(registry::Session, registry::FetchedManifest), ImageError> {
        let policy = registry::RetryPolicy {
            retries: self.cfg.registry.retries,
            progress_timeout: self.cfg.registry.progress_timeout,
        };
        let endpoints = self.cfg.registry.endpoints(reference);
        if endpoints.is_empty() {
            return Err(ImageError::NotFound(format!(
                "{reference}: its registry has skip_upstream set and no mirrors"
            )));
        }
        let mut failures = Vec::new();
        let last = endpoints.len() - 1;
        for (i, (base, tls)) in endpoints.into_iter().enumerate() {
            // A mirror that is down costs one retry before the next endpoint is tried; the
            // session keeps the full policy once the endpoint answered.
            let probe = registry::RetryPolicy {
                retries: if i < last {
                    policy.retries.min(1)
                } else {
                    policy.retries
                },
                ..policy
            };
            let mut session = registry::Session::new(
                self.client(&tls)?,
                base.clone(),
                reference,
                creds.clone(),
                probe,
            )
            .with_token_cache(self.tokens.clone());
            match session.manifest(reference.manifest_ref()).await {
                Ok(m) => {
                    session.set_policy(policy);
                    return Ok((session, m));
                }
                // Only the last endpoint's own answer is returned as is; a mirror's failure
                // moves on to the next.
                Err(e) if i == last && failures.is_empty() => return Err(e),
                Err(e) => {
                    tracing::info!(%reference, endpoint = %base, err = %e, "endpoint failed; trying the next");
                    failures.push(format!("{base}: {e}"));
                }
            }
        }
        Err(ImageError::Registry {
            url: reference.to_string(),
            message: format!("no endpoint served it ({})", failures.join("; ")),
        })
    }

    pub(crate) fn blob_path(&self, digest: &str) -> PathBuf {
        self.cfg
            .root
            .join("content/blobs/sha256")
            .join(hex_of(digest))
    }

    pub fn snapshot_path(&self, chain_id: &str) -> PathBuf {
        self.cfg.root.join("snapshots").join(hex_of(chain_id))
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.cfg
            .root
            .join("images")
            .join(format!("{}.json", hex_of(id)))
    }

    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.inflight.lock().expect("inflight lock poisoned");
        map.retain(|_, v| Arc::strong_count(v) > 1);
        map.entry(key.to_string()).or_default().clone()
    }

    pub fn list(&self) -> Vec<ImageRecord> {
        let mut v: Vec<_> = self
            .images
            .read()
            .expect("image lock")
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Finds an image by id (`sha256:…`, its hex, or an unambiguous hex prefix of 12+), by tag or
    /// by digest reference. `Ok(None)` when absent; Err only for a malformed reference.
    pub fn resolve(&self, name: &str) -> Result<Option<ImageRecord>, ImageError> {
        let images = self.images.read().expect("image lock");
        let hex = hex_of(name);
        if hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let found: Vec<_> = images
                .values()
                .filter(|r| hex_of(&r.id).starts_with(hex))
                .collect();
            if found.len() == 1 {
                return Ok(Some(found[0].clone()));
            }
            if name.starts_with("sha256:") {
                return Ok(None);
            }
        }
        let r = Reference::parse(name)?;
        let found = images.values().find(|rec| match &r.digest {
            Some(d) => rec.repo_digests.contains(&r.with_digest(d)),
            None => r.tagged().is_some_and(|t| rec.repo_tags.contains(&t)),
        });
        Ok(found.cloned())
    }

    /// Pulls `name` and returns its record. Layers already unpacked are not fetched again.
    pub async fn pull(&self, name: &str, creds: Credentials) -> Result<ImageRecord, ImageError> {
        let started = std::time::Instant::now();
        let result = self
            .pull_traced(name, creds)
            .instrument(tracing::info_span!("image.pull", image = name))
            .await;
        crate::metrics::engine().image_pull(
            started.elapsed(),
            result.as_ref().err().map(ImageError::reason),
        );
        result
    }

    async fn pull_traced(&self, name: &str, creds: Credentials) -> Result<ImageRecord, ImageError> {
        let reference = Reference::parse(name)?;
        let creds = match (&self.cfg.registry.credentials_file, creds.is_empty()) {
            (Some(file), true) => {
                registry::credentials_from_file(file, &reference.registry)?.unwrap_or_default()
            }
            _ => creds,
        };
        let (mut session, top) = self
            .open_session(&reference, &creds)
            .instrument(tracing::info_span!("image.resolve", reference = %reference))
            .await?;
        let repo_digest = reference.with_digest(&top.digest);
        let top_doc =
            ManifestDoc::parse(&top.bytes, &top.media_type).map_err(ImageError::BadManifest)?;
        let platforms = match &top_doc {
            ManifestDoc::Index(idx) => idx.platforms(),
            ManifestDoc::Image(_) => Vec::new(),
        };
        let manifest = self
            .platform_manifest(&mut session, top_doc, 0, true)
            .await?
            .ok_or_else(|| {
                ImageError::NotFound(format!(
                    "{reference} has no linux/{} image (it has: {})",
                    oci_arch(),
                    platforms.join(", ")
                ))
            })?;
        reference::validate_digest(&manifest.config.digest)
            .map_err(|e| ImageError::BadManifest(format!("config digest: {e}")))?;
        let config_bytes = {
            // Concurrent pulls of one image fetch its config once too.
            let lock = self.lock_for(&manifest.config.digest);
            let _guard = lock.lock().await;
            match std::fs::read(self.blob_path(&manifest.config.digest)) {
                Ok(b) if registry::sha256_digest(&b) == manifest.config.digest => b,
                _ => {
                    let b = session
                        .blob_bytes(&manifest.config.digest, 16 << 20)
                        .await?;
                    self.store_blob_bytes(&manifest.config.digest, &b)?;
                    b
                }
            }
        };
        let (config, diff_ids) = parse_config(&config_bytes, &manifest, &reference)?;
        for d in manifest
            .layers
            .iter()
            .map(|l| &l.digest)
            .chain(diff_ids.iter())
        {
            reference::validate_digest(d)
                .map_err(|e| ImageError::BadManifest(format!("layer digest {d}: {e}")))?;
        }
        let chain_ids = chain_ids(&diff_ids);

        // Fetch and unpack missing layers, a few at a time. Each layer is its own directory, so
        // they can be unpacked in any order.
        let session = tokio::sync::Mutex::new(session);
        let session = &session;
        // Visible to ImageStatus (verbose) while the pull runs, gone when it ends.
        let tracker = self.track_pull(&reference, &manifest.layers);
        let tracker = &tracker;
        let jobs: Vec<(oci::Descriptor, String, String)> = manifest
            .layers
            .iter()
            .cloned()
            .zip(diff_ids.iter().cloned())
            .zip(chain_ids.iter().cloned())
            .map(|((l, d), c)| (l, d, c))
            .collect();
        futures_util::stream::iter(jobs)
            .map(|(layer, diff_id, chain_id)| async move {
                let done = tracker.layer(&layer.digest);
                let span =
                    tracing::info_span!("image.layer", digest = %layer.digest, size = layer.size);
                self.ensure_snapshot(Some(session), &layer, &diff_id, &chain_id, done.clone())
                    .instrument(span)
                    .await
                    .inspect(|()| {
                        // Cached or just unpacked: the layer is complete.
                        if let Some(d) = done {
                            d.store(layer.size.max(0) as u64, Ordering::Relaxed);
                        }
                    })
            })
            .buffer_unordered(self.cfg.max_concurrent_downloads.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        self.commit_record(&reference, Some(repo_digest), &manifest, &config, chain_ids)
    }

    /// The image manifest for this machine under `doc`: `doc` itself when it is one, else the
    /// entry of an index that is for linux/<arch> (variant-less entries first), looking into
    /// indexes an index holds (some tools nest them; containerd follows them too). Entries
    /// without a platform come after the matching ones, and count when their config says
    /// linux/<arch> (`platform_known` is false for them), as containerd decides; attestation
    /// manifests (`unknown/unknown`) never match. None when nothing matches.
    fn platform_manifest<'a>(
        &'a self,
        session: &'a mut registry::Session,
        doc: ManifestDoc,
        depth: usize,
        platform_known: bool,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<Option<oci::Manifest>, ImageError>> + Send + 'a,
        >,
    > {
        Box::pin(async move {
            let idx = match doc {
                ManifestDoc::Image(m) => {
                    if platform_known {
                        return Ok(Some(m));
                    }
                    reference::validate_digest(&m.config.digest)
                        .map_err(|e| ImageError::BadManifest(format!("config digest: {e}")))?;
                    let bytes = session.blob_bytes(&m.config.digest, 16 << 20).await?;
                    let config: ImageConfigFile = serde_json::from_slice(&bytes)
                        .map_err(|e| ImageError::BadManifest(format!("image config: {e}")))?;
                    let fits = config.os == "linux" && config.architecture == oci_arch();
                    return Ok(fits.then_some(m));
                }
                ManifestDoc::Index(idx) => idx,
            };
            if depth >= MAX_INDEX_DEPTH {
                return Err(ImageError::BadManifest(format!(
                    "indexes nested more than {MAX_INDEX_DEPTH} deep"
                )));
            }
            let matching = idx.select_all("linux", oci_arch());
            let unplaced = idx.manifests.iter().filter(|d| d.platform.is_none());
            for desc in matching.into_iter().chain(unplaced) {
                reference::validate_digest(&desc.digest)
                    .map_err(|e| ImageError::BadManifest(format!("index entry: {e}")))?;
                let inner = session.manifest(&desc.digest).await?;
                let inner_doc = ManifestDoc::parse(&inner.bytes, &inner.media_type)
                    .map_err(ImageError::BadManifest)?;
                if let Some(m) = self
                    .platform_manifest(session, inner_doc, depth + 1, desc.platform.is_some())
                    .await?
                {
                    return Ok(Some(m));
                }
            }
            Ok(None)
        })
    }

    /// Records an image whose blobs and snapshots are in place, under `reference`'s tag (which
    /// moves off any other image) and with `repo_digest` when known.
    pub(crate) fn commit_record(
        &self,
        reference: &Reference,
        repo_digest: Option<String>,
        manifest: &oci::Manifest,
        config: &ImageConfigFile,
        chain_ids: Vec<String>,
    ) -> Result<ImageRecord, ImageError> {
        let id = manifest.config.digest.clone();
        let size = manifest.config.size.max(0) as u64
            + manifest
                .layers
                .iter()
                .map(|l| l.size.max(0) as u64)
                .sum::<u64>();
        let new_tag = reference.tagged();
        let pinned = self.cfg.pinned.iter().any(|p| {
            Reference::parse(p).is_ok_and(|pr| {
                Some(pr.to_string()) == new_tag || pr.to_string() == reference.to_string()
            })
        });
        let record = {
            let mut images = self.images.write().expect("image lock");
            // A tag moves to the newly pulled image: take it off any other image.
            if let Some(tag) = &new_tag {
                let mut changed = Vec::new();
                for rec in images.values_mut() {
                    if rec.id != id && rec.repo_tags.contains(tag) {
                        rec.repo_tags.retain(|t| t != tag);
                        changed.push(rec.clone());
                    }
                }
                for rec in changed {
                    self.persist(&rec)?;
                }
            }
            let rec = images.entry(id.clone()).or_insert_with(|| ImageRecord {
                id: id.clone(),
                repo_tags: vec![],
                repo_digests: vec![],
                size,
                config: config.config.clone().unwrap_or_default(),
                chain_ids: chain_ids.clone(),
                layer_digests: manifest.layers.iter().map(|l| l.digest.clone()).collect(),
                pinned: false,
            });
            if let Some(tag) = new_tag
                && !rec.repo_tags.contains(&tag)
            {
                rec.repo_tags.push(tag);
            }
            if let Some(d) = repo_digest
                && !rec.repo_digests.contains(&d)
            {
                rec.repo_digests.push(d);
            }
            rec.pinned |= pinned;
            rec.clone()
        };
        self.persist(&record)?;
        Ok(record)
    }

    fn persist(&self, rec: &ImageRecord) -> Result<(), ImageError> {
        let p = self.record_path(&rec.id);
        fsutil::write_json_atomic(&p, rec)
            .map_err(|e| ImageError::io(format!("write {}", p.display()), e))
    }

    pub(crate) fn store_blob_bytes(&self, digest: &str, bytes: &[u8]) -> Result<(), ImageError> {
        let p = self.blob_path(digest);
        fsutil::write_atomic(&p, bytes)
            .map_err(|e| ImageError::io(format!("write {}", p.display()), e))
    }

    fn track_pull(&self, reference: &Reference, layers: &[oci::Descriptor]) -> PullTracker<'_> {
        let progress = Arc::new(PullProgress {
            started: std::time::Instant::now(),
            layers: layers
                .iter()
                .map(|l| (l.digest.clone(), l.size.max(0) as u64, Arc::default()))
                .collect(),
        });
        self.pulls
            .lock()
            .expect("pulls lock")
            .insert(reference.to_string(), progress.clone());
        PullTracker {
            store: self,
            key: reference.to_string(),
            progress,
        }
    }

    /// How far an in-flight pull of `name` is: each layer's digest, size and bytes so far.
    pub fn pull_progress(&self, name: &str) -> Option<serde_json::Value> {
        let key = Reference::parse(name).ok()?.to_string();
        let p = self.pulls.lock().expect("pulls lock").get(&key)?.clone();
        let layers: Vec<serde_json::Value> = p
            .layers
            .iter()
            .map(|(d, size, done)| {
                serde_json::json!({"digest": d, "size": size, "downloaded": done.load(Ordering::Relaxed)})
            })
            .collect();
        Some(serde_json::json!({
            "layers": layers,
            "elapsed_ms": p.started.elapsed().as_millis() as u64,
        }))
    }

    /// Starts unpacking a layer from the bytes sent to the returned channel, in a blocking
    /// task that commits the snapshot only when the unpacked stream matches `diff_id` and
    /// [`StreamedUnpack::finish`] says the download was verified; anything else (including
    /// this pull being abandoned) removes what it unpacked.
    fn start_streaming_unpack(
        &self,
        layer: &oci::Descriptor,
        diff_id: &str,
        chain_id: &str,
    ) -> Result<(tokio::sync::mpsc::Sender<bytes::Bytes>, StreamedUnpack), ImageError> {
        let tmp_dir = self.new_unpack_dir()?;
        let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
        let (verdict_tx, verdict_rx) = tokio::sync::oneshot::channel::<bool>();
        let (what, diff_id, snapshot) = (
            layer.digest.clone(),
            diff_id.to_string(),
            self.snapshot_path(chain_id),
        );
        let task = tokio::task::spawn_blocking(move || {
            let unpacked = unpack::unpack_stream(ChannelReader::new(rx), &what, &tmp_dir);
            let verified = verdict_rx.blocking_recv().unwrap_or(false);
            let good = verified && unpacked.is_ok_and(|d| d == diff_id);
            if good && std::fs::rename(&tmp_dir, &snapshot).is_ok() {
                return true;
            }
            let _ = std::fs::remove_dir_all(&tmp_dir);
            false
        });
        Ok((
            tx,
            StreamedUnpack {
                task,
                verdict: verdict_tx,
            },
        ))
    }

    /// Makes the snapshot of `chain_id` from the layer blob, fetching the blob through
    /// `session` when it is not in the store yet (imports have every blob already).
    pub(crate) async fn ensure_snapshot(
        &self,
        session: Option<&tokio::sync::Mutex<registry::Session>>,
        layer: &oci::Descriptor,
        diff_id: &str,
        chain_id: &str,
        progress: Option<Arc<AtomicU64>>,
    ) -> Result<(), ImageError> {
        let snapshot = self.snapshot_path(chain_id);
        if snapshot.is_dir() {
            return Ok(());
        }
        let lock = self.lock_for(chain_id);
        let _guard = lock.lock().await;
        if snapshot.is_dir() {
            return Ok(());
        }
        let blob = self.blob_path(&layer.digest);
        if !blob.is_file() {
            let blob_lock = self.lock_for(&layer.digest);
            let _blob_guard = blob_lock.lock().await;
            if !blob.is_file() {
                let tmp = self.cfg.root.join("content/tmp").join(format!(
                    "{}.{}.partial",
                    hex_of(&layer.digest),
                    rand::random::<u32>()
                ));
                // Each download works on a copy of the session (with the token the manifest
                // fetch obtained), so layers stream in parallel.
                let session = session.ok_or_else(|| {
                    ImageError::BadManifest(format!("layer {} is missing", layer.digest))
                })?;
                let mut s = session.lock().await.clone();
                // Unpack while the bytes arrive; the snapshot is committed only once the
                // download is verified too.
                let (tee, streamed) = self.start_streaming_unpack(layer, diff_id, chain_id)?;
                let mut downloaded = s
                    .blob_to_file(
                        &layer.digest,
                        layer.size.max(0) as u64,
                        &tmp,
                        Some(tee),
                        progress.as_deref(),
                    )
                    .await;
                let verdict = downloaded.is_ok();
                let committed = streamed.finish(verdict).await;
                // A non-distributable layer the registry does not hold: its own URLs.
                if matches!(downloaded, Err(ImageError::NotFound(_))) {
                    for url in &layer.urls {
                        downloaded = s
                            .foreign_blob_to_file(
                                url,
                                &layer.digest,
                                layer.size.max(0) as u64,
                                &tmp,
                                None,
                                progress.as_deref(),
                            )
                            .await;
                        if downloaded.is_ok() {
                            break;
                        }
                        tracing::info!(url, digest = %layer.digest, "foreign layer URL failed");
                    }
                }
                downloaded?;
                crate::metrics::engine().pulled_bytes(layer.size.max(0) as u64);
                std::fs::rename(&tmp, &blob)
                    .map_err(|e| ImageError::io(format!("store {}", blob.display()), e))?;
                if committed {
                    crate::metrics::engine().layer_unpacked();
                    return Ok(());
                }
                // The streamed unpack did not hold up (a restarted transfer, a bad layer):
                // unpack the verified file, which reports what is wrong.
            }
        }
        let tmp_dir = self.new_unpack_dir()?;
        // Unpack, verify and commit (or clean up) all in the blocking task: when the pull
        // is abandoned (another layer failed, the client went away) the task still runs to
        // the end, and must not leave a half-unpacked directory behind.
        let (layer_digest, diff_id) = (layer.digest.clone(), diff_id.to_string());
        tokio::task::spawn_blocking(move || {
            let actual = match unpack::unpack_layer(&blob, &tmp_dir) {
                Ok(d) => d,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&tmp_dir);
                    return Err(e);
                }
            };
            if actual != diff_id {
                let _ = std::fs::remove_dir_all(&tmp_dir);
                let _ = std::fs::remove_file(&blob);
                return Err(ImageError::DigestMismatch {
                    what: format!("layer {layer_digest} (uncompressed)"),
                    expected: diff_id,
                    actual,
                });
            }
            std::fs::rename(&tmp_dir, &snapshot).map_err(|e| {
                let _ = std::fs::remove_dir_all(&tmp_dir);
                ImageError::io(format!("commit {}", snapshot.display()), e)
            })
        })
        .await
        .map_err(|e| ImageError::BadLayer(format!("unpack task failed: {e}")))??;
        crate::metrics::engine().layer_unpacked();
        Ok(())
    }

    /// Removes an image by any of its names or its id, with all its tags. Returns the removed
    /// record, or None when there was nothing to remove (removal is idempotent).
    /// `in_use` lists chain ids that running or created containers still mount.
    pub fn remove(&self, name: &str, in_use: &[String]) -> Result<Option<ImageRecord>, ImageError> {
        let Some(rec) = self.resolve(name)? else {
            return Ok(None);
        };
        let p = self.record_path(&rec.id);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ImageError::io(format!("remove {}", p.display()), e)),
        }
        self.images.write().expect("image lock").remove(&rec.id);
        self.collect_garbage(in_use);
        Ok(Some(rec))
    }

    /// Deletes snapshots and blobs that no image record and no container references.
    pub fn collect_garbage(&self, in_use: &[String]) {
        let images = self.images.read().expect("image lock");
        let mut keep_snap: std::collections::HashSet<String> =
            in_use.iter().map(|c| hex_of(c).to_string()).collect();
        let mut keep_blob = std::collections::HashSet::new();
        for rec in images.values() {
            keep_snap.extend(rec.chain_ids.iter().map(|c| hex_of(c).to_string()));
            keep_blob.insert(hex_of(&rec.id).to_string());
            keep_blob.extend(rec.layer_digests.iter().map(|d| hex_of(d).to_string()));
        }
        drop(images);
        let sweep = |dir: PathBuf, keep: &std::collections::HashSet<String>, is_dir: bool| {
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if name.starts_with('.') || keep.contains(&name) {
                        continue;
                    }
                    let res = if is_dir {
                        std::fs::remove_dir_all(e.path())
                    } else {
                        std::fs::remove_file(e.path())
                    };
                    if let Err(err) = res {
                        tracing::warn!(path = %e.path().display(), %err, "garbage collection failed");
                    }
                }
            }
        };
        // Manifests are not kept as blobs, so every blob not named above is garbage.
        sweep(self.cfg.root.join("snapshots"), &keep_snap, true);
        sweep(
            self.cfg.root.join("content/blobs/sha256"),
            &keep_blob,
            false,
        );
    }

    /// Bytes and inodes used by blobs and snapshots.
    pub fn usage(&self) -> (u64, u64) {
        let (b1, i1) = unpack::disk_usage(&self.cfg.root.join("content"));
        let (b2, i2) = unpack::disk_usage(&self.cfg.root.join("snapshots"));
        (b1 + b2, i1 + i2)
    }
}

fn http_client(tls: &registry::TlsOptions) -> Result<reqwest::Client, ImageError> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("crust/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(30))
        .tls_danger_accept_invalid_certs(tls.skip_verify);
    if let Some(ca) = &tls.ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| ImageError::io(format!("read CA {}", ca.display()), e))?;
        for cert in
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ImageError::Registry {
                url: ca.display().to_string(),
                message: format!("CA file: {e}"),
            })?
        {
            b = b.add_root_certificate(cert);
        }
    }
    b.build().map_err(|e| ImageError::Registry {
        url: String::new(),
        message: format!("HTTP client: {e}"),
    })
}

/// The image config and its diff ids, which must pair up with the manifest's layers.
pub(crate) fn parse_config(
    bytes: &[u8],
    manifest: &oci::Manifest,
    name: &Reference,
) -> Result<(ImageConfigFile, Vec<String>), ImageError> {
    let config: ImageConfigFile = serde_json::from_slice(bytes)
        .map_err(|e| ImageError::BadManifest(format!("image config: {e}")))?;
    let diff_ids = config
        .rootfs
        .as_ref()
        .map(|r| r.diff_ids.clone())
        .unwrap_or_default();
    if diff_ids.len() != manifest.layers.len() {
        return Err(ImageError::BadManifest(format!(
            "{name}: manifest has {} layers but the config lists {} diff ids",
            manifest.layers.len(),
            diff_ids.len()
        )));
    }
    Ok((config, diff_ids))
}

/// Bytes received per layer of one pull.
struct PullProgress {
    started: std::time::Instant,
    layers: Vec<(String, u64, Arc<AtomicU64>)>,
}

/// Keeps a pull's progress registered for as long as the pull runs.
struct PullTracker<'a> {
    store: &'a ImageStore,
    key: String,
    progress: Arc<PullProgress>,
}

impl PullTracker<'_> {
    fn layer(&self, digest: &str) -> Option<Arc<AtomicU64>> {
        self.progress
            .layers
            .iter()
            .find(|(d, _, _)| d == digest)
            .map(|(_, _, c)| c.clone())
    }
}

impl Drop for PullTracker<'_> {
    fn drop(&mut self) {
        let mut pulls = self.store.pulls.lock().expect("pulls lock");
        // Only our own entry: a concurrent pull of the same name may have replaced it.
        if pulls
            .get(&self.key)
            .is_some_and(|p| Arc::ptr_eq(p, &self.progress))
        {
            pulls.remove(&self.key);
        }
    }
}

/// A layer being unpacked as it downloads (see [`ImageStore::start_streaming_unpack`]).
struct StreamedUnpack {
    task: tokio::task::JoinHandle<bool>,
    verdict: tokio::sync::oneshot::Sender<bool>,
}

impl StreamedUnpack {
    /// Tells the unpacker whether the download was verified; true when the snapshot was
    /// committed.
    async fn finish(self, download_verified: bool) -> bool {
        let _ = self.verdict.send(download_verified);
        self.task.await.unwrap_or(false)
    }
}

/// Reads the chunks a download hands over (the very buffers it received, shared, not
/// copied); the end of the channel is the end of the stream.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    chunk: bytes::Bytes,
}

impl ChannelReader {
    fn new(rx: tokio::sync::mpsc::Receiver<bytes::Bytes>) -> Self {
        ChannelReader {
            rx,
            chunk: bytes::Bytes::new(),
        }
    }
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(c) => self.chunk = c,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// Chain ids per the OCI image spec: the first is the first diff id, each next one is
/// sha256 of "<previous chain id> <diff id>".
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => format!(
                "sha256:{}",
                hex::encode(sha2::Sha256::digest(format!("{prev} {d}")))
            ),
        };
        out.push(next);
    }
    out
}

/// This machine's architecture in OCI's platform vocabulary.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = "sha256:aaaa".to_string();
        let b = "sha256:bbbb".to_string();
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        assert_eq!(
            c[1],
            format!(
                "sha256:{}",
                hex::encode(sha2::Sha256::digest("sha256:aaaa sha256:bbbb"))
            )
        );
    }
}
