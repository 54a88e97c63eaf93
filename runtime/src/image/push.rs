//! Pushing an image to its registry with the OCI distribution API: each blob is checked
//! (HEAD) and skipped when the registry has it, mounted from another repository of the same
//! registry that holds the image when the registry allows, or uploaded (a monolithic POST +
//! PUT for small blobs, PATCH chunks then PUT for large ones); the manifest goes last.
//! Registry config, credentials and TLS are the same as pulls'.

use std::io::Read;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};

use super::oci::{Descriptor, Manifest};
use super::reference::Reference;
use super::registry::{self, Credentials, MEDIA_OCI_MANIFEST, Session};
use super::{ImageError, ImageStore};

/// Blobs up to this size go in one PUT; larger ones in PATCH chunks of this size.
pub const CHUNK: u64 = 8 << 20;

const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// One step of a push, for progress reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushEvent {
    /// The blob's digest; empty for the manifest and the end.
    pub digest: String,
    /// checking, exists, mounted, uploading, pushed, manifest, done.
    pub status: &'static str,
    pub done: u64,
    pub total: u64,
    /// Set when status is `done`.
    pub manifest_digest: String,
}

/// The media type of a layer blob, from its first bytes.
fn layer_media_type(head: &[u8]) -> &'static str {
    match head {
        [0x1f, 0x8b, ..] => "application/vnd.oci.image.layer.v1.tar+gzip",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => "application/vnd.oci.image.layer.v1.tar+zstd",
        _ => "application/vnd.oci.image.layer.v1.tar",
    }
}

impl ImageStore {
    /// Pushes the local image `name` to the registry and repository the name says, under its
    /// tag; returns the manifest digest (also recorded as the image's repo digest).
    pub async fn push(
        &self,
        name: &str,
        creds: Credentials,
        progress: &(dyn Fn(PushEvent) + Send + Sync),
    ) -> Result<String, ImageError> {
        let rec = self
            .resolve(name)?
            .ok_or_else(|| ImageError::NotFound(format!("No such image: {name}")))?;
        let reference = Reference::parse(name)?;
        let tag = reference
            .tag
            .clone()
            .unwrap_or_else(|| "latest".to_string());
        let creds = match (&self.cfg.registry.credentials_file, creds.is_empty()) {
            (Some(file), true) => {
                registry::credentials_from_file(file, &reference.registry)?.unwrap_or_default()
            }
            _ => creds,
        };
        // The registry itself (mirrors are for pulls); its scheme follows the insecure list.
        let (base, tls) = self
            .cfg
            .registry
            .endpoints(&reference)
            .pop()
            .ok_or_else(|| {
                ImageError::Unsupported(format!("{reference}: no endpoint to push to"))
            })?;
        let policy = registry::RetryPolicy {
            retries: self.cfg.registry.retries,
            progress_timeout: self.cfg.registry.progress_timeout,
        };
        let mut s = Session::new(self.client(&tls)?, base, &reference, creds, policy)
            .with_token_cache(self.tokens.clone());
        // Another repository of the same registry this image came from, to mount blobs from.
        let mount_from: Option<String> = rec
            .repo_tags
            .iter()
            .chain(rec.repo_digests.iter())
            .filter_map(|n| Reference::parse(n).ok())
            .find(|r| r.registry == reference.registry && r.repository != reference.repository)
            .map(|r| r.repository);

        let mut layers = Vec::new();
        for d in &rec.layer_digests {
            let path = self.blob_path(d);
            let mut head = [0u8; 4];
            let n = std::fs::File::open(&path)
                .and_then(|mut f| f.read(&mut head))
                .map_err(|e| ImageError::io(format!("layer blob {d} is not in the store"), e))?;
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            layers.push(Descriptor {
                media_type: layer_media_type(&head[..n]).to_string(),
                digest: d.clone(),
                size: size as i64,
                platform: None,
                urls: vec![],
            });
        }
        let config_path = self.blob_path(&rec.id);
        let config_size = std::fs::metadata(&config_path)
            .map_err(|e| ImageError::io(format!("config blob {}", rec.id), e))?
            .len();
        let config = Descriptor {
            media_type: MEDIA_OCI_CONFIG.into(),
            digest: rec.id.clone(),
            size: config_size as i64,
            platform: None,
            urls: vec![],
        };
        for desc in layers.iter().chain(std::iter::once(&config)) {
            self.push_blob(&mut s, desc, mount_from.as_deref(), progress)
                .await?;
        }
        let manifest = Manifest {
            media_type: MEDIA_OCI_MANIFEST.into(),
            config,
            layers,
        };
        let mut doc = serde_json::to_value(&manifest)
            .map_err(|e| ImageError::BadManifest(format!("encode manifest: {e}")))?;
        doc["schemaVersion"] = 2.into();
        let bytes = serde_json::to_vec(&doc)
            .map_err(|e| ImageError::BadManifest(format!("encode manifest: {e}")))?;
        let digest = registry::sha256_digest(&bytes);
        progress(PushEvent {
            status: "manifest",
            digest: digest.clone(),
            ..Default::default()
        });
        let url = format!("{}/{}/manifests/{tag}", s.base, s.repository);
        let resp = send(
            &mut s,
            Method::PUT,
            &url,
            Some(MEDIA_OCI_MANIFEST),
            Bytes::from(bytes),
        )
        .await?;
        expect(resp, &url, &[StatusCode::CREATED, StatusCode::OK]).await?;
        let repo_digest = reference.with_digest(&digest);
        self.add_repo_digest(&rec.id, &repo_digest)?;
        progress(PushEvent {
            status: "done",
            manifest_digest: digest.clone(),
            ..Default::default()
        });
        Ok(digest)
    }

    async fn push_blob(
        &self,
        s: &mut Session,
        desc: &Descriptor,
        mount_from: Option<&str>,
        progress: &(dyn Fn(PushEvent) + Send + Sync),
    ) -> Result<(), ImageError> {
        let total = desc.size.max(0) as u64;
        let event = |status, done| PushEvent {
            digest: desc.digest.clone(),
            status,
            done,
            total,
            manifest_digest: String::new(),
        };
        progress(event("checking", 0));
        let url = format!("{}/{}/blobs/{}", s.base, s.repository, desc.digest);
        let resp = send(s, Method::HEAD, &url, None, Bytes::new()).await?;
        if resp.status() == StatusCode::OK {
            progress(event("exists", total));
            return Ok(());
        }
        let uploads = format!("{}/{}/blobs/uploads/", s.base, s.repository);
        let mut location = None;
        if let Some(from) = mount_from {
            let url = format!("{uploads}?mount={}&from={from}", desc.digest);
            let resp = send(s, Method::POST, &url, None, Bytes::new()).await?;
            match resp.status() {
                StatusCode::CREATED => {
                    progress(event("mounted", total));
                    return Ok(());
                }
                // Not mounted, but an upload session was opened instead.
                StatusCode::ACCEPTED => location = Some(location_of(s, &resp, &url)?),
                _ => {}
            }
        }
        let mut location = match location {
            Some(l) => l,
            None => {
                let resp = send(s, Method::POST, &uploads, None, Bytes::new()).await?;
                let resp = expect(resp, &uploads, &[StatusCode::ACCEPTED]).await?;
                location_of(s, &resp, &uploads)?
            }
        };
        let path = self.blob_path(&desc.digest);
        let data = Bytes::from(
            std::fs::read(&path)
                .map_err(|e| ImageError::io(format!("read {}", path.display()), e))?,
        );
        progress(event("uploading", 0));
        let body = if total <= CHUNK {
            data
        } else {
            let mut at = 0usize;
            while at < data.len() {
                let end = (at + CHUNK as usize).min(data.len());
                let resp = send_chunk(s, &location, data.slice(at..end), at).await?;
                let resp = expect(
                    resp,
                    &location,
                    &[StatusCode::ACCEPTED, StatusCode::NO_CONTENT],
                )
                .await?;
                location = location_of(s, &resp, &location)?;
                at = end;
                progress(event("uploading", at as u64));
            }
            Bytes::new()
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={}", desc.digest);
        let resp = send(s, Method::PUT, &put, Some("application/octet-stream"), body).await?;
        expect(resp, &put, &[StatusCode::CREATED]).await?;
        progress(event("pushed", total));
        Ok(())
    }

    fn add_repo_digest(&self, id: &str, repo_digest: &str) -> Result<(), ImageError> {
        let rec = {
            let mut images = self.images.write().expect("image lock");
            let Some(rec) = images.get_mut(id) else {
                return Ok(());
            };
            if !rec.repo_digests.iter().any(|d| d == repo_digest) {
                rec.repo_digests.push(repo_digest.to_string());
            }
            rec.clone()
        };
        self.persist(&rec)
    }
}

/// The upload URL a response names, made absolute.
fn location_of(s: &Session, resp: &reqwest::Response, url: &str) -> Result<String, ImageError> {
    let loc = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ImageError::Registry {
            url: url.to_string(),
            message: format!("{} without a Location header", resp.status()),
        })?;
    let base = reqwest::Url::parse(&s.base).map_err(|e| ImageError::Registry {
        url: s.base.clone(),
        message: e.to_string(),
    })?;
    base.join(loc)
        .map(|u| u.to_string())
        .map_err(|e| ImageError::Registry {
            url: url.to_string(),
            message: format!("bad Location {loc:?}: {e}"),
        })
}

async fn expect(
    resp: reqwest::Response,
    url: &str,
    want: &[StatusCode],
) -> Result<reqwest::Response, ImageError> {
    let status = resp.status();
    if want.contains(&status) {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    let body: String = body.chars().take(300).collect();
    Err(match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            ImageError::Unauthorized(format!("{url}: {status}: {body}"))
        }
        StatusCode::NOT_FOUND => ImageError::NotFound(format!("{url}: {body}")),
        _ => ImageError::Registry {
            url: url.to_string(),
            message: format!("{status}: {body}"),
        },
    })
}

async fn send_chunk(
    s: &mut Session,
    url: &str,
    chunk: Bytes,
    at: usize,
) -> Result<reqwest::Response, ImageError> {
    let range = format!("{at}-{}", at + chunk.len() - 1);
    request(
        s,
        Method::PATCH,
        url,
        Some("application/octet-stream"),
        chunk,
        Some(range),
    )
    .await
}

async fn send(
    s: &mut Session,
    method: Method,
    url: &str,
    content_type: Option<&str>,
    body: Bytes,
) -> Result<reqwest::Response, ImageError> {
    request(s, method, url, content_type, body, None).await
}

/// One request with the session's auth: a 401 is answered once (a push scope when the
/// registry asks for it) and the request sent again; transport failures and 5xx retry.
async fn request(
    s: &mut Session,
    method: Method,
    url: &str,
    content_type: Option<&str>,
    body: Bytes,
    content_range: Option<String>,
) -> Result<reqwest::Response, ImageError> {
    let mut answered = false;
    let mut attempt = 0u32;
    loop {
        let mut req = s
            .http
            .request(method.clone(), url)
            .header(CONTENT_LENGTH, body.len())
            .body(body.clone());
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        if let Some(r) = &content_range {
            req = req.header("Content-Range", r);
        }
        if let Some(h) = &s.auth_header {
            req = req.header(AUTHORIZATION, h);
        }
        let resp = match tokio::time::timeout(s.policy.progress_timeout * 4, req.send()).await {
            Err(_) => {
                return Err(ImageError::Stalled(format!(
                    "{method} {url}: no answer within {:?}",
                    s.policy.progress_timeout * 4
                )));
            }
            Ok(Err(e)) if attempt < s.policy.retries => {
                tracing::debug!(url, err = %registry::transport_message(&e), attempt, "retrying");
                registry::backoff(attempt, None).await;
                attempt += 1;
                continue;
            }
            Ok(Err(e)) => {
                return Err(ImageError::Registry {
                    url: url.to_string(),
                    message: registry::transport_message(&e),
                });
            }
            Ok(Ok(r)) => r,
        };
        if resp.status().is_server_error() && attempt < s.policy.retries {
            registry::backoff(attempt, None).await;
            attempt += 1;
            continue;
        }
        if resp.status() != StatusCode::UNAUTHORIZED || answered {
            return Ok(resp);
        }
        answered = true;
        s.answer_unauthorized(&resp, url).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_media_types_come_from_magic_bytes() {
        assert!(layer_media_type(&[0x1f, 0x8b, 8, 0]).ends_with("+gzip"));
        assert!(layer_media_type(&[0x28, 0xb5, 0x2f, 0xfd]).ends_with("+zstd"));
        assert!(layer_media_type(b"etc/").ends_with(".tar"));
    }
}
