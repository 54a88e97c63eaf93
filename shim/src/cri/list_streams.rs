//! The `Stream*` variants of the list RPCs (CRI 1.36+, kubelet's `CRIListStreaming` gate):
//! the same answer as the matching `List*` call, sent in chunks so that no message nears
//! gRPC's size limit on a node with many pods. Each item is in exactly one chunk; an empty
//! list is a stream that ends with no message, as the CRI allows.

use std::pin::Pin;
use std::sync::Arc;

use crust_proto::cri;
use crust_runtime::Engine;
use tonic::{Response, Status};

use super::{containers, images, instrument, metrics, pods, stats};

/// Items per streamed message: far below the 16 MiB limit even for stats with many fields.
const CHUNK: usize = 256;

pub type ListStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

/// `items` cut into messages of at most [`CHUNK`] items.
fn chunked<I: Send + 'static, T: Send + 'static>(
    mut items: Vec<I>,
    wrap: fn(Vec<I>) -> T,
) -> ListStream<T> {
    let mut chunks = Vec::with_capacity(items.len().div_ceil(CHUNK));
    while !items.is_empty() {
        let rest = items.split_off(items.len().min(CHUNK));
        chunks.push(Ok(wrap(std::mem::replace(&mut items, rest))));
    }
    Box::pin(tokio_stream::iter(chunks))
}

pub async fn pod_sandboxes(
    e: &Arc<Engine>,
    req: cri::StreamPodSandboxesRequest,
) -> Result<Response<ListStream<cri::StreamPodSandboxesResponse>>, Status> {
    let list = cri::ListPodSandboxRequest { filter: req.filter };
    let items = instrument("StreamPodSandboxes", "", pods::list(e, list))
        .await?
        .into_inner()
        .items;
    Ok(Response::new(chunked(items, |pod_sandboxes| {
        cri::StreamPodSandboxesResponse { pod_sandboxes }
    })))
}

pub async fn containers(
    e: &Arc<Engine>,
    req: cri::StreamContainersRequest,
) -> Result<Response<ListStream<cri::StreamContainersResponse>>, Status> {
    let list = cri::ListContainersRequest { filter: req.filter };
    let items = instrument("StreamContainers", "", containers::list(e, list))
        .await?
        .into_inner()
        .containers;
    Ok(Response::new(chunked(items, |containers| {
        cri::StreamContainersResponse { containers }
    })))
}

pub async fn container_stats(
    e: &Arc<Engine>,
    req: cri::StreamContainerStatsRequest,
) -> Result<Response<ListStream<cri::StreamContainerStatsResponse>>, Status> {
    let list = cri::ListContainerStatsRequest { filter: req.filter };
    let items = instrument(
        "StreamContainerStats",
        "",
        stats::list_container_stats(e, list),
    )
    .await?
    .into_inner()
    .stats;
    Ok(Response::new(chunked(items, |container_stats| {
        cri::StreamContainerStatsResponse { container_stats }
    })))
}

pub async fn pod_sandbox_stats(
    e: &Arc<Engine>,
    req: cri::StreamPodSandboxStatsRequest,
) -> Result<Response<ListStream<cri::StreamPodSandboxStatsResponse>>, Status> {
    let list = cri::ListPodSandboxStatsRequest { filter: req.filter };
    let items = instrument(
        "StreamPodSandboxStats",
        "",
        stats::list_pod_sandbox_stats(e, list),
    )
    .await?
    .into_inner()
    .stats;
    Ok(Response::new(chunked(items, |pod_sandbox_stats| {
        cri::StreamPodSandboxStatsResponse { pod_sandbox_stats }
    })))
}

pub async fn pod_sandbox_metrics(
    e: &Arc<Engine>,
    _req: cri::StreamPodSandboxMetricsRequest,
) -> Result<Response<ListStream<cri::StreamPodSandboxMetricsResponse>>, Status> {
    let list = cri::ListPodSandboxMetricsRequest {};
    let items = instrument(
        "StreamPodSandboxMetrics",
        "",
        metrics::list_pod_sandbox_metrics(e, list),
    )
    .await?
    .into_inner()
    .pod_metrics;
    Ok(Response::new(chunked(items, |pod_sandbox_metrics| {
        cri::StreamPodSandboxMetricsResponse {
            pod_sandbox_metrics,
        }
    })))
}

pub async fn images(
    e: &Arc<Engine>,
    req: cri::StreamImagesRequest,
) -> Result<Response<ListStream<cri::StreamImagesResponse>>, Status> {
    let list = cri::ListImagesRequest { filter: req.filter };
    let items = instrument("StreamImages", "", images::list(e, list))
        .await?
        .into_inner()
        .images;
    Ok(Response::new(chunked(items, |images| {
        cri::StreamImagesResponse { images }
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    async fn sizes(items: usize) -> Vec<usize> {
        chunked((0..items).collect::<Vec<_>>(), |v| v)
            .map(|r| r.unwrap().len())
            .collect()
            .await
    }

    #[tokio::test]
    async fn every_item_is_in_exactly_one_chunk() {
        assert_eq!(sizes(0).await, Vec::<usize>::new());
        assert_eq!(sizes(1).await, vec![1]);
        assert_eq!(sizes(CHUNK).await, vec![CHUNK]);
        assert_eq!(sizes(2 * CHUNK + 3).await, vec![CHUNK, CHUNK, 3]);
        let all: Vec<usize> = chunked((0..600).collect(), |v| v)
            .flat_map(|r| tokio_stream::iter(r.unwrap()))
            .collect()
            .await;
        assert_eq!(all, (0..600).collect::<Vec<_>>());
    }
}
