//! PushImage: the engine's push, its steps streamed back as they happen.

use std::sync::Arc;

use crust_proto::{cri, crust as api};
use crust_runtime::{Engine, Error};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Status;

use crate::cri::to_status;

pub(super) fn push(
    e: Arc<Engine>,
    req: api::PushImageRequest,
) -> Result<super::Progress<api::PushProgress>, Status> {
    tracing::info!(image = %req.image, "PushImage");
    if req.image.is_empty() {
        return Err(Status::invalid_argument("image is required"));
    }
    // The same decoding of credentials as CRI's PullImage.
    let creds = crate::cri::credentials(req.auth.map(|a| cri::AuthConfig {
        username: a.username,
        password: a.password,
        auth: a.auth,
        registry_token: a.registry_token,
        ..Default::default()
    }))
    .map_err(|err| to_status(&err))?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let events = tx.clone();
        let report = move |ev: crust_runtime::image::push::PushEvent| {
            let _ = events.send(Ok(api::PushProgress {
                digest: ev.digest,
                status: ev.status.to_string(),
                bytes_done: ev.done,
                bytes_total: ev.total,
                manifest_digest: ev.manifest_digest,
            }));
        };
        if let Err(err) = e.images.push(&req.image, creds, &report).await {
            tracing::warn!(image = %req.image, %err, "push failed");
            let _ = tx.send(Err(to_status(&Error::from(err))));
        }
    });
    Ok(Box::pin(UnboundedReceiverStream::new(rx)))
}
