//! Build: the engine's builder, each step streamed back as it starts, is cached or ends.

use std::sync::Arc;

use crust_proto::crust as api;
use crust_runtime::Engine;
use crust_runtime::build::{BuildEvent, BuildOptions};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Status;

pub(super) fn build(
    e: Arc<Engine>,
    req: api::BuildRequest,
) -> Result<super::Progress<api::BuildProgress>, Status> {
    tracing::info!(context = %req.context_dir, tags = ?req.tags, "Build");
    if !req.context_dir.starts_with('/') {
        return Err(Status::invalid_argument(
            "context_dir must be an absolute path",
        ));
    }
    let opts = BuildOptions {
        context_dir: req.context_dir.into(),
        dockerfile: if req.dockerfile.is_empty() {
            "Dockerfile".into()
        } else {
            req.dockerfile.into()
        },
        tags: req.tags,
        build_args: req.build_args.into_iter().collect(),
        target: (!req.target.is_empty()).then_some(req.target),
        no_cache: req.no_cache,
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let events = tx.clone();
        let report = move |ev: BuildEvent| {
            let _ = events.send(Ok(api::BuildProgress {
                step: ev.step as u32,
                steps: ev.steps as u32,
                instruction: ev.instruction,
                status: ev.status.to_string(),
                message: ev.message,
                image_id: String::new(),
            }));
        };
        match e.images.build(&opts, Some(&*e), &report).await {
            Ok(rec) => {
                let _ = tx.send(Ok(api::BuildProgress {
                    status: "finished".into(),
                    image_id: rec.id,
                    ..Default::default()
                }));
            }
            Err(err) => {
                tracing::warn!(%err, "build failed");
                let _ = tx.send(Err(Status::failed_precondition(err.to_string())));
            }
        }
    });
    Ok(Box::pin(UnboundedReceiverStream::new(rx)))
}
