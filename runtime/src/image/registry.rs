//! A client for the OCI distribution API: manifests and blobs, with Basic and Bearer token auth.
//!
//! One [`Session`] per pull and repository: credentials never leak between pulls (the trap
//! oci-client has, where a shared client keeps the first credentials it saw).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, WWW_AUTHENTICATE};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::ImageError;
use super::reference::Reference;

pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MEDIA_DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1";

/// Credentials for one pull, from the CRI AuthConfig. Debug never prints secrets.
#[derive(Clone, Default)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// A bearer token to present as is (CRI `registry_token`).
    pub registry_token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("registry_token", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    fn has_basic(&self) -> bool {
        !self.username.is_empty()
    }

    /// Nothing given: anonymous.
    pub fn is_empty(&self) -> bool {
        self.username.is_empty() && self.registry_token.is_empty()
    }
}

/// How the engine reaches registries.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Registry hosts (`host:port`) reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Per registry host (as image names spell it: `docker.io`, `registry.k8s.io`,
    /// `127.0.0.1:5000`): mirrors and TLS settings, like containerd's hosts.toml.
    pub hosts: HashMap<String, HostConfig>,
    /// Times a request is retried after a transient failure (connection errors, 5xx, 429).
    pub retries: u32,
    /// A pull that receives nothing for this long fails with DeadlineExceeded.
    pub progress_timeout: Duration,
    /// Docker-style `config.json` with credentials per registry, used when a pull request
    /// carries none. Read at each pull, so edits apply without a restart.
    pub credentials_file: Option<PathBuf>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure: Vec::new(),
            hosts: HashMap::new(),
            retries: 4,
            progress_timeout: Duration::from_secs(300),
            credentials_file: None,
        }
    }
}

/// The credentials for `registry` in a Docker-style `config.json` (`auths` keyed by host,
/// with `auth` = base64 "user:password", or `username`/`password`, or `identitytoken`).
/// Docker Hub also answers to its historical key `https://index.docker.io/v1/`.
pub fn credentials_from_file(
    path: &Path,
    registry: &str,
) -> Result<Option<Credentials>, ImageError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ImageError::io(format!("read {}", path.display()), e)),
    };
    let bad =
        |m: String| ImageError::Unsupported(format!("credentials file {}: {m}", path.display()));
    let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    let matches = |key: &str| {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("");
        host == registry
            || (registry == "docker.io"
                && matches!(
                    host,
                    "index.docker.io" | "registry-1.docker.io" | "docker.io"
                ))
    };
    let Some(entry) = auths.iter().find(|(k, _)| matches(k)).map(|(_, v)| v) else {
        return Ok(None);
    };
    let field = |k: &str| {
        entry
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let mut c = Credentials {
        username: field("username"),
        password: field("password"),
        registry_token: field("registrytoken"),
    };
    let auth = field("auth");
    if c.username.is_empty() && !auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad(format!("auth of {registry} is not base64")))?;
        let decoded = String::from_utf8_lossy(&decoded).into_owned();
        let (u, p) = decoded
            .split_once(':')
            .ok_or_else(|| bad(format!("auth of {registry} is not user:password")))?;
        c.username = u.to_string();
        c.password = p.to_string();
    }
    if c.username.is_empty() && c.registry_token.is_empty() {
        c.registry_token = field("identitytoken");
    }
    Ok(Some(c))
}

/// TLS settings of one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsOptions {
    pub skip_verify: bool,
    /// A PEM CA bundle trusted besides the system's.
    pub ca_file: Option<PathBuf>,
}

/// A mirror: a base URL (`scheme://host[:port][/path]`; `/v2` is appended unless the URL
/// already ends in it) and its TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    pub tls: TlsOptions,
}

#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    /// Tried in order before the registry itself.
    pub mirrors: Vec<Endpoint>,
    /// Never fall back to the registry itself (air-gapped nodes).
    pub skip_upstream: bool,
    /// TLS settings for the registry itself.
    pub tls: TlsOptions,
}

impl RegistryConfig {
    /// Where to fetch `reference` from, in order: its mirrors, then the registry itself.
    /// Each is the `…/v2` base URL and the TLS settings to reach it with.
    pub fn endpoints(&self, reference: &Reference) -> Vec<(String, TlsOptions)> {
        let host_cfg = self.hosts.get(&reference.registry);
        let mut out: Vec<(String, TlsOptions)> = host_cfg
            .map(|h| {
                h.mirrors
                    .iter()
                    .map(|m| {
                        let base = m.url.trim_end_matches('/');
                        let base = if base.ends_with("/v2") {
                            base.to_string()
                        } else {
                            format!("{base}/v2")
                        };
                        (base, m.tls.clone())
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !host_cfg.is_some_and(|h| h.skip_upstream) {
            let scheme = if self.insecure.iter().any(|h| h == &reference.registry) {
                "http"
            } else {
                "https"
            };
            let host = if reference.registry == "docker.io" {
                "registry-1.docker.io"
            } else {
                &reference.registry
            };
            out.push((
                format!("{scheme}://{host}/v2"),
                host_cfg.map(|h| h.tls.clone()).unwrap_or_default(),
            ));
        }
        out
    }
}

/// Bearer tokens kept between pulls until they expire, per endpoint, repository and
/// credentials (a token obtained with one set of credentials never serves another).
#[derive(Default)]
pub struct TokenCache {
    tokens: std::sync::Mutex<HashMap<TokenKey, (String, std::time::Instant)>>,
}

/// Endpoint, repository, fingerprint of the credentials.
type TokenKey = (String, String, String);

impl TokenCache {
    fn key(base: &str, repository: &str, creds: &Credentials) -> TokenKey {
        let mut h = Sha256::new();
        h.update(creds.username.as_bytes());
        h.update([0]);
        h.update(creds.password.as_bytes());
        h.update([0]);
        h.update(creds.registry_token.as_bytes());
        (
            base.to_string(),
            repository.to_string(),
            hex::encode(h.finalize()),
        )
    }

    fn get(&self, base: &str, repository: &str, creds: &Credentials) -> Option<String> {
        let mut t = self.tokens.lock().expect("token cache lock");
        let now = std::time::Instant::now();
        t.retain(|_, (_, exp)| *exp > now);
        t.get(&Self::key(base, repository, creds))
            .map(|(h, _)| h.clone())
    }

    fn put(
        &self,
        base: &str,
        repository: &str,
        creds: &Credentials,
        header: String,
        ttl: Duration,
    ) {
        // Renewed a little early, so a token never expires mid-request.
        let ttl = ttl.saturating_sub(Duration::from_secs(10));
        if ttl.is_zero() {
            return;
        }
        self.tokens.lock().expect("token cache lock").insert(
            Self::key(base, repository, creds),
            (header, std::time::Instant::now() + ttl),
        );
    }
}

/// Retries and the no-progress limit of a session's requests.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub retries: u32,
    pub progress_timeout: Duration,
}

#[derive(Clone)]
pub struct Session {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) repository: String,
    creds: Credentials,
    pub(super) auth_header: Option<String>,
    pub(super) policy: RetryPolicy,
    tokens: Option<std::sync::Arc<TokenCache>>,
}

pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    /// `sha256:…` of the bytes as served.
    pub digest: String,
}

impl Session {
    /// A session against the `…/v2` base URL `base` (a mirror or the registry itself).
    pub fn new(
        http: reqwest::Client,
        base: String,
        reference: &Reference,
        creds: Credentials,
        policy: RetryPolicy,
    ) -> Self {
        let auth_header =
            (!creds.registry_token.is_empty()).then(|| format!("Bearer {}", creds.registry_token));
        Session {
            http,
            base,
            repository: reference.repository.clone(),
            creds,
            auth_header,
            policy,
            tokens: None,
        }
    }

    /// Reuses and keeps bearer tokens in `cache`.
    pub fn with_token_cache(mut self, cache: std::sync::Arc<TokenCache>) -> Self {
        if self.auth_header.is_none() {
            self.auth_header = cache.get(&self.base, &self.repository, &self.creds);
        }
        self.tokens = Some(cache);
        self
    }

    pub fn set_policy(&mut self, policy: RetryPolicy) {
        self.policy = policy;
    }

    /// The base URL this session talks to.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GET with auth and retries: on a 401 the challenge is answered once and the request
    /// retried; connection failures, 5xx and 429 are retried with backoff (429 and 503 after
    /// their Retry-After when given).
    async fn get(
        &mut self,
        url: &str,
        accept: Option<&str>,
        range_from: u64,
    ) -> Result<reqwest::Response, ImageError> {
        let mut answered = false;
        let mut attempt = 0u32;
        loop {
            let mut req = self.http.get(url);
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            if let Some(h) = &self.auth_header {
                req = req.header(AUTHORIZATION, h);
            }
            if range_from > 0 {
                req = req.header(reqwest::header::RANGE, format!("bytes={range_from}-"));
            }
            let sent = tokio::time::timeout(self.policy.progress_timeout, req.send()).await;
            let resp = match sent {
                Err(_) => return Err(stalled(url, self.policy.progress_timeout)),
                Ok(Err(e)) => {
                    if attempt < self.policy.retries {
                        tracing::debug!(url, err = %transport_message(&e), attempt, "retrying");
                        backoff(attempt, None).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(ImageError::Registry {
                        url: url.to_string(),
                        message: format!(
                            "{} (after {} attempts)",
                            transport_message(&e),
                            attempt + 1
                        ),
                    });
                }
                Ok(Ok(r)) => r,
            };
            let status = resp.status();
            if (status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS)
                && attempt < self.policy.retries
            {
                let after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s.min(60)));
                tracing::debug!(url, %status, attempt, "retrying");
                backoff(attempt, after).await;
                attempt += 1;
                continue;
            }
            if resp.status() != StatusCode::UNAUTHORIZED || answered {
                return Ok(resp);
            }
            answered = true;
            self.answer_unauthorized(&resp, url).await?;
        }
    }

    /// Answers the challenge (`WWW-Authenticate`) of the 401 `resp` to a request of `url`.
    pub(super) async fn answer_unauthorized(
        &mut self,
        resp: &reqwest::Response,
        url: &str,
    ) -> Result<(), ImageError> {
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        self.answer_challenge(&challenge, url).await
    }

    async fn answer_challenge(&mut self, challenge: &str, url: &str) -> Result<(), ImageError> {
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            if !self.creds.has_basic() {
                return Err(ImageError::Unauthorized(format!(
                    "{url} requires credentials and none were given"
                )));
            }
            self.auth_header = Some(basic_header(&self.creds));
            return Ok(());
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ImageError::Unauthorized(format!(
                "{url} answered with an unsupported auth challenge {scheme:?}"
            )));
        }
        let params = parse_challenge_params(params);
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| {
                ImageError::Unauthorized(format!("{url}: bearer challenge has no realm"))
            })?;
        let mut token_url = reqwest::Url::parse(&realm).map_err(|e| ImageError::Registry {
            url: realm.clone(),
            message: format!("bad token realm: {e}"),
        })?;
        {
            let mut q = token_url.query_pairs_mut();
            if let Some((_, s)) = params.iter().find(|(k, _)| k == "service") {
                q.append_pair("service", s);
            }
            let scope = params
                .iter()
                .find(|(k, _)| k == "scope")
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
            q.append_pair("scope", &scope);
        }
        let mut req = self.http.get(token_url.clone());
        if self.creds.has_basic() {
            req = req.header(AUTHORIZATION, basic_header(&self.creds));
        }
        let resp = req.send().await.map_err(|e| ImageError::Registry {
            url: token_url.to_string(),
            message: transport_message(&e),
        })?;
        if !resp.status().is_success() {
            return Err(ImageError::Unauthorized(format!(
                "token endpoint {} refused: {}",
                token_url.origin().ascii_serialization(),
                resp.status()
            )));
        }
        #[derive(serde::Deserialize)]
        struct TokenReply {
            token: Option<String>,
            access_token: Option<String>,
            /// Seconds; the distribution spec's default is 60.
            expires_in: Option<u64>,
        }
        let reply: TokenReply = json_body(resp, self.policy.progress_timeout).await?;
        let ttl = Duration::from_secs(reply.expires_in.unwrap_or(60));
        let token = reply
            .token
            .or(reply.access_token)
            .ok_or_else(|| ImageError::Unauthorized("token endpoint returned no token".into()))?;
        let header = format!("Bearer {token}");
        if let Some(cache) = &self.tokens {
            cache.put(
                &self.base,
                &self.repository,
                &self.creds,
                header.clone(),
                ttl,
            );
        }
        self.auth_header = Some(header);
        Ok(())
    }

    /// Fetches a manifest or index by tag or digest.
    pub async fn manifest(&mut self, reference: &str) -> Result<FetchedManifest, ImageError> {
        let url = format!("{}/{}/manifests/{reference}", self.base, self.repository);
        let accept = [
            MEDIA_OCI_INDEX,
            MEDIA_OCI_MANIFEST,
            MEDIA_DOCKER_LIST,
            MEDIA_DOCKER_MANIFEST,
        ]
        .join(", ");
        let resp = self.get(&url, Some(&accept), 0).await?;
        let resp = check_status(resp, &url, reference)?;
        let media_type = content_type(resp.headers());
        let bytes = read_limited(resp, 8 << 20, &url, self.policy.progress_timeout).await?;
        let digest = sha256_digest(&bytes);
        if reference.starts_with("sha256:") && digest != reference {
            return Err(ImageError::DigestMismatch {
                what: url,
                expected: reference.to_string(),
                actual: digest,
            });
        }
        if media_type.starts_with(MEDIA_DOCKER_SCHEMA1) {
            return Err(ImageError::Unsupported(format!(
                "{url} is {}",
                super::oci::SCHEMA1_REFUSED
            )));
        }
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Fetches a small blob (an image config) into memory and verifies its digest.
    pub async fn blob_bytes(&mut self, digest: &str, limit: u64) -> Result<Vec<u8>, ImageError> {
        let url = format!("{}/{}/blobs/{digest}", self.base, self.repository);
        // Small enough to fetch again whole when a transfer is cut.
        let mut attempt = 0;
        let bytes = loop {
            let resp = self.get(&url, None, 0).await?;
            let resp = check_status(resp, &url, digest)?;
            match read_limited(resp, limit, &url, self.policy.progress_timeout).await {
                Ok(b) => break b,
                Err(ImageError::Registry { .. }) if attempt < self.policy.retries => {
                    backoff(attempt, None).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                what: url,
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Streams a blob into `dest` (a temp path), hashing as bytes arrive. A transfer cut
    /// short resumes with an HTTP Range request where the registry allows it (and starts over
    /// where it does not). The file is complete and verified when this returns Ok; on any
    /// error it is removed.
    ///
    /// With `tee`, every byte is also handed to it as it arrives (for unpacking while
    /// downloading); when the transfer has to start over, the tee is dropped, so its reader
    /// sees a short stream and must not trust it.
    pub async fn blob_to_file(
        &mut self,
        digest: &str,
        size: u64,
        dest: &Path,
        tee: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
        progress: Option<&std::sync::atomic::AtomicU64>,
    ) -> Result<u64, ImageError> {
        let url = format!("{}/{}/blobs/{digest}", self.base, self.repository);
        self.fetch_to_file(&url, digest, size, dest, tee, progress)
            .await
    }

    /// [`Session::blob_to_file`] from a non-distributable layer's own URL (no registry
    /// credentials are sent there).
    pub async fn foreign_blob_to_file(
        &self,
        url: &str,
        digest: &str,
        size: u64,
        dest: &Path,
        tee: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
        progress: Option<&std::sync::atomic::AtomicU64>,
    ) -> Result<u64, ImageError> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ImageError::BadManifest(format!(
                "layer {digest}: URL {url:?} is not http(s)"
            )));
        }
        let mut anonymous = self.clone();
        anonymous.auth_header = None;
        anonymous.creds = Credentials::default();
        anonymous.tokens = None;
        anonymous
            .fetch_to_file(url, digest, size, dest, tee, progress)
            .await
    }

    async fn fetch_to_file(
        &mut self,
        url: &str,
        digest: &str,
        size: u64,
        dest: &Path,
        mut tee: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
        progress: Option<&std::sync::atomic::AtomicU64>,
    ) -> Result<u64, ImageError> {
        let url = url.to_string();
        // Removes the partial file however this ends, also when the pull is abandoned and
        // this future dropped mid-transfer; the caller renames the file away on success.
        struct Partial<'a>(&'a Path);
        impl Drop for Partial<'_> {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(self.0);
            }
        }
        let _partial = Partial(dest);
        let result = async {
            let mut file = tokio::fs::File::create(dest)
                .await
                .map_err(|e| ImageError::io(format!("create {}", dest.display()), e))?;
            let mut hasher = Sha256::new();
            let mut written = 0u64;
            let mut cuts = 0u32;
            'fetch: loop {
                let resp = self.get(&url, None, written).await?;
                let resp = check_status(resp, &url, digest)?;
                if written > 0 && resp.status() != StatusCode::PARTIAL_CONTENT {
                    // No range support: start again from the first byte.
                    tracing::debug!(url, "registry ignored the range; fetching the whole blob");
                    file.set_len(0)
                        .await
                        .map_err(|e| ImageError::io(format!("truncate {}", dest.display()), e))?;
                    file.seek(std::io::SeekFrom::Start(0))
                        .await
                        .map_err(|e| ImageError::io(format!("seek {}", dest.display()), e))?;
                    hasher = Sha256::new();
                    written = 0;
                    tee = None;
                    if let Some(p) = progress {
                        p.store(0, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                let mut stream = resp.bytes_stream();
                loop {
                    let next =
                        match tokio::time::timeout(self.policy.progress_timeout, stream.next())
                            .await
                        {
                            Err(_) => return Err(stalled(&url, self.policy.progress_timeout)),
                            Ok(n) => n,
                        };
                    let chunk = match next {
                        None => break 'fetch,
                        Some(Ok(c)) => c,
                        Some(Err(e)) => {
                            // Cut mid-transfer: resume from what arrived.
                            if cuts < self.policy.retries {
                                cuts += 1;
                                tracing::debug!(url, written, err = %transport_message(&e), "blob transfer cut; resuming");
                                backoff(cuts - 1, None).await;
                                continue 'fetch;
                            }
                            return Err(ImageError::Registry {
                                url: url.clone(),
                                message: transport_message(&e),
                            });
                        }
                    };
                    written += chunk.len() as u64;
                    if size > 0 && written > size {
                        return Err(ImageError::DigestMismatch {
                            what: url.clone(),
                            expected: format!("{digest} ({size} bytes)"),
                            actual: format!("more than {size} bytes"),
                        });
                    }
                    hasher.update(&chunk);
                    if let Some(p) = progress {
                        p.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    file.write_all(&chunk)
                        .await
                        .map_err(|e| ImageError::io(format!("write {}", dest.display()), e))?;
                    if let Some(t) = &tee
                        && t.send(chunk.clone()).await.is_err()
                    {
                        // The unpacker stopped (a bad layer): keep downloading to verify.
                        tee = None;
                    }
                }
            }
            file.sync_data()
                .await
                .map_err(|e| ImageError::io(format!("sync {}", dest.display()), e))?;
            let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
            if actual != digest || (size > 0 && written != size) {
                return Err(ImageError::DigestMismatch {
                    what: url.clone(),
                    expected: digest.to_string(),
                    actual,
                });
            }
            Ok(written)
        }
        .await;
        if result.is_ok() {
            // Keep it: the caller moves it into the store.
            std::mem::forget(_partial);
        }
        result
    }
}

/// Waits before retry `attempt` (0-based): `after` when the registry said, else 250 ms
/// doubling up to 8 s.
pub(super) async fn backoff(attempt: u32, after: Option<Duration>) {
    let d = after.unwrap_or_else(|| Duration::from_millis(250 << attempt.min(5)));
    tokio::time::sleep(d).await;
}

fn stalled(url: &str, limit: Duration) -> ImageError {
    ImageError::Stalled(format!(
        "{url}: no data for {}s (image.progress_timeout)",
        limit.as_secs()
    ))
}

fn basic_header(c: &Credentials) -> String {
    let raw = format!("{}:{}", c.username, c.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Parses `realm="…",service="…",scope="…"` (quoted values may contain commas).
fn parse_challenge_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        rest = &rest[eq + 1..];
        let value;
        if let Some(stripped) = rest.strip_prefix('"') {
            let end = stripped.find('"').unwrap_or(stripped.len());
            value = stripped[..end].to_string();
            rest = stripped.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        rest = rest.trim_start_matches(',').trim_start();
        out.push((key, value));
    }
    out
}

fn content_type(h: &HeaderMap) -> String {
    h.get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
        .unwrap_or_default()
}

fn check_status(
    resp: reqwest::Response,
    url: &str,
    what: &str,
) -> Result<reqwest::Response, ImageError> {
    match resp.status() {
        s if s.is_success() => Ok(resp),
        StatusCode::NOT_FOUND => Err(ImageError::NotFound(format!(
            "{what} not found in the registry ({url})"
        ))),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(ImageError::Unauthorized(format!(
            "{url}: {} (check the pull credentials)",
            resp.status()
        ))),
        s => Err(ImageError::Registry {
            url: url.to_string(),
            message: format!("HTTP {s}"),
        }),
    }
}

async fn read_limited(
    resp: reqwest::Response,
    limit: u64,
    url: &str,
    progress_timeout: Duration,
) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    loop {
        let next = tokio::time::timeout(progress_timeout, stream.next())
            .await
            .map_err(|_| stalled(url, progress_timeout))?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| ImageError::Registry {
            url: url.to_string(),
            message: transport_message(&e),
        })?;
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(ImageError::Registry {
                url: url.to_string(),
                message: format!("response larger than {limit} bytes"),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// reqwest's Display for transport errors hides the cause; walk the chain for a useful line.
pub(super) fn transport_message(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

async fn json_body<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    progress_timeout: Duration,
) -> Result<T, ImageError> {
    let url = resp.url().to_string();
    let bytes = read_limited(resp, 1 << 20, &url, progress_timeout).await?;
    serde_json::from_slice(&bytes).map_err(|e| ImageError::Registry {
        url,
        message: format!("invalid JSON: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_file_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.json");
        std::fs::write(
            &f,
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
                "registry.example:5000": {"username": "u", "password": "hunter2"},
                "tok.example": {"identitytoken": "t0k"}
            }}"#,
        )
        .unwrap();
        let hub = credentials_from_file(&f, "docker.io").unwrap().unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hub", "secret")
        );
        let r = credentials_from_file(&f, "registry.example:5000")
            .unwrap()
            .unwrap();
        assert_eq!((r.username.as_str(), r.password.as_str()), ("u", "hunter2"));
        assert_eq!(
            credentials_from_file(&f, "tok.example")
                .unwrap()
                .unwrap()
                .registry_token,
            "t0k"
        );
        assert!(
            credentials_from_file(&f, "other.example")
                .unwrap()
                .is_none()
        );
        assert!(
            credentials_from_file(&dir.path().join("none.json"), "x")
                .unwrap()
                .is_none()
        );
        std::fs::write(&f, "{not json").unwrap();
        assert!(credentials_from_file(&f, "docker.io").is_err());
        assert!(
            !format!("{r:?}").contains("hunter2"),
            "secrets stay out of Debug"
        );
    }

    #[test]
    fn challenge_params_parse_with_quoted_commas() {
        let p = parse_challenge_params(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(p[0], ("realm".into(), "https://auth.example/token".into()));
        assert_eq!(p[1], ("service".into(), "registry.example".into()));
        assert_eq!(p[2], ("scope".into(), "repository:a/b:pull,push".into()));
    }

    #[test]
    fn credentials_debug_hides_secrets() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
            registry_token: "tok".into(),
        };
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2") && !s.contains("tok\""));
    }
}
