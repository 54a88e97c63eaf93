//! GetContainerEvents: the engine's lifecycle events with the pod and container statuses
//! kubelet's Evented PLEG reads. A slow subscriber skips what it missed (the engine never waits
//! for it); a vanished one just drops its stream.

use std::pin::Pin;
use std::sync::Arc;

use crust_proto::cri;
use crust_runtime::Engine;
use crust_runtime::engine::{Event, EventKind};
use futures_util::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tonic::Status;

pub type EventStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>>;

fn kind(k: EventKind) -> cri::ContainerEventType {
    match k {
        EventKind::Created => cri::ContainerEventType::ContainerCreatedEvent,
        EventKind::Started => cri::ContainerEventType::ContainerStartedEvent,
        EventKind::Stopped => cri::ContainerEventType::ContainerStoppedEvent,
        EventKind::Deleted => cri::ContainerEventType::ContainerDeletedEvent,
    }
}

async fn to_response(e: &Engine, ev: Event) -> cri::ContainerEventResponse {
    // The pod may already be gone: a Deleted event carries its record as it was.
    let pod = match e.pod(&ev.pod_id).await {
        Ok(p) => Some(p),
        Err(_) => ev.pod.map(|p| *p),
    };
    let (pod_sandbox_status, containers_statuses) = match pod {
        Some(p) => match super::pods::status_of(e, p, false).await {
            Ok(r) => (r.status, r.containers_statuses),
            Err(_) => (None, vec![]),
        },
        None => (None, vec![]),
    };
    cri::ContainerEventResponse {
        container_id: ev.container_id,
        container_event_type: kind(ev.kind) as i32,
        created_at: ev.at,
        pod_sandbox_status,
        containers_statuses,
    }
}

pub fn subscribe(engine: Arc<Engine>) -> EventStream {
    tracing::info!("container event subscriber connected");
    let stream = BroadcastStream::new(engine.subscribe())
        .filter_map(|r| async move {
            if r.is_err() {
                tracing::warn!("a container event subscriber fell behind and skipped events");
            }
            r.ok()
        })
        .then(move |ev| {
            let engine = engine.clone();
            async move { Ok(to_response(&engine, ev).await) }
        });
    Box::pin(stream)
}
