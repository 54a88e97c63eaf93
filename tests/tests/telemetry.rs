//! Telemetry end to end: a real Prometheus (Debian's package) scrapes crustd's /metrics, and an
//! OTLP collector in the test (a tonic server of OpenTelemetry's proto) receives the spans of
//! CRI calls, parented on the traceparent the client sent, and the pushed metrics.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crust_e2e::prometheus::{Prometheus, curl};
use crust_e2e::{Daemon, container_config, cri, eventually, free_port, pod_config, registry};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;

const LONG: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_crustd_metrics_and_health_endpoints_answer() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(&format!("[telemetry]\nmetrics_address = {addr:?}\n"))
        .await
        .unwrap();
    let mut c = d.cri().await.unwrap();

    assert_eq!(
        curl(&format!("http://{addr}/healthz")),
        (true, "ok\n".into())
    );
    assert_eq!(
        curl(&format!("http://{addr}/readyz")),
        (true, "ok\n".into())
    );
    assert!(
        !curl(&format!("http://{addr}/nothing")).0,
        "unknown paths are 404"
    );

    // Work to count: a pull, a pod with a container that exits non-zero, one refused call.
    let image = registry().busybox();
    c.pull(&image).await.unwrap();
    let pc = pod_config("metrics", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();
    let ctr = c
        .create(
            &pod,
            &pc,
            container_config("fails", &image, &["sh", "-c", "exit 3"]),
        )
        .await
        .unwrap();
    c.start(&ctr).await.unwrap();
    c.wait_exited(&ctr, LONG).await.unwrap();
    let refused =
        c.rt.container_status(cri::ContainerStatusRequest {
            container_id: "no-such-container".into(),
            verbose: false,
        })
        .await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::NotFound);

    // The page itself, as Prometheus will read it.
    let (ok, page) = curl(&format!("http://{addr}/metrics"));
    assert!(ok);
    for line in [
        "# TYPE crust_cri_requests_total counter",
        "crust_cri_requests_total{code=\"NotFound\",method=\"ContainerStatus\"} 1",
        "crust_cri_requests_total{code=\"Ok\",method=\"RunPodSandbox\"} 1",
        "# TYPE crust_cri_request_duration_seconds histogram",
        "crust_image_pulls_total{reason=\"\",result=\"success\"} 1",
        "crust_container_exits_total{reason=\"Error\"} 1",
        "crust_pods{state=\"ready\"} 1",
        "crust_containers{state=\"exited\"} 1",
        "crust_monitor_processes 1",
        "# TYPE crust_process_resident_memory_bytes gauge",
        "# TYPE crust_defunct_processes gauge",
    ] {
        assert!(page.contains(line), "missing {line:?} in:\n{page}");
    }
    assert!(
        page.lines()
            .any(|l| l.starts_with("crust_image_layers_unpacked_total ") && !l.ends_with(" 0")),
        "{page}"
    );

    let prom = Prometheus::start(&addr);
    let scraped = eventually(Duration::from_secs(60), || async {
        prom.query("crust_cri_requests_total{method=\"RunPodSandbox\",code=\"Ok\"}") == Some(1.0)
    })
    .await;
    assert!(scraped, "Prometheus never saw crustd's RunPodSandbox count");
    assert!(prom.query("crust_process_resident_memory_bytes").unwrap() > 1e6);
    assert!(
        prom.query("sum(crust_cri_request_duration_seconds_count)")
            .unwrap()
            >= 5.0
    );
    assert_eq!(prom.query("up{job=\"crust\"}"), Some(1.0));

    c.remove_pod(&pod).await.unwrap();
    d.shutdown().await;
}

/// Everything an OTLP exporter sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
    metric_names: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.clone());
            assert!(
                format!("{service:?}").contains("crust-under-test"),
                "service.name from OTEL_SERVICE_NAME: {service:?}"
            );
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut names = self.metric_names.lock().unwrap();
        for rm in request.into_inner().resource_metrics {
            for sm in rm.scope_metrics {
                names.extend(sm.metrics.into_iter().map(|m| m.name));
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

impl Collector {
    fn named(&self, name: &str) -> Vec<Span> {
        let spans = self.spans.lock().unwrap();
        spans.iter().filter(|s| s.name == name).cloned().collect()
    }

    fn children_of(&self, parent: &Span) -> Vec<Span> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .filter(|s| s.parent_span_id == parent.span_id)
            .cloned()
            .collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn with_traceparent<T>(msg: T, trace: &str, span: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace}-{span}-01").parse().unwrap(),
    );
    req
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_collector_receives_cri_spans_under_the_callers_trace() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .add_service(MetricsServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let d = Daemon::start_env(
        "[telemetry]\notlp_metrics_interval = \"1s\"\n",
        "",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_SERVICE_NAME", "crust-under-test"),
            // Export quickly instead of every 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    )
    .await
    .unwrap();
    // A loopback-only CNI network, so RunPodSandbox runs a CNI ADD.
    std::fs::create_dir_all(d.cni_dir()).unwrap();
    std::fs::write(
        d.cni_dir().join("10-lo.conflist"),
        r#"{"cniVersion":"1.0.0","name":"lo-only","plugins":[{"type":"loopback"}]}"#,
    )
    .unwrap();
    let mut c = d.cri().await.unwrap();

    let trace = format!("{:032x}", rand::random::<u128>() | 1);
    let (pull_parent, run_parent) = ("00f067aa0ba902b7", "00f067aa0ba902b8");
    let image = registry().busybox();
    c.img
        .pull_image(with_traceparent(
            cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            &trace,
            pull_parent,
        ))
        .await
        .unwrap();
    let pc = pod_config("traced", &d.logs);
    let pod =
        c.rt.run_pod_sandbox(with_traceparent(
            cri::RunPodSandboxRequest {
                config: Some(pc.clone()),
                runtime_handler: String::new(),
            },
            &trace,
            run_parent,
        ))
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let ctr = c
        .create(&pod, &pc, container_config("c", &image, &["sleep", "60"]))
        .await
        .unwrap();
    c.start(&ctr).await.unwrap();

    let run_name = "runtime.v1.RuntimeService/RunPodSandbox";
    let arrived = eventually(LONG, || async {
        !collector.named(run_name).is_empty()
            && !collector
                .named("runtime.v1.RuntimeService/StartContainer")
                .is_empty()
            && !collector
                .named("runtime.v1.ImageService/PullImage")
                .is_empty()
    })
    .await;
    assert!(arrived, "spans never arrived; log:\n{}", d.daemon_log());

    // RunPodSandbox: a child of the caller's span, with its steps below it.
    let run = collector.named(run_name).remove(0);
    assert_eq!(hex(&run.trace_id), trace);
    assert_eq!(hex(&run.parent_span_id), run_parent);
    let attrs = format!("{:?}", run.attributes);
    assert!(attrs.contains("rpc.grpc.status_code"), "{attrs}");
    assert!(attrs.contains("crust.object"), "{attrs}");
    let children: Vec<String> = collector
        .children_of(&run)
        .into_iter()
        .map(|s| s.name)
        .collect();
    for step in ["monitor.spawn", "cni.add"] {
        assert!(children.iter().any(|n| n == step), "{step} in {children:?}");
    }

    // PullImage: image.pull under it, resolve and one span per layer under that.
    let pull = collector
        .named("runtime.v1.ImageService/PullImage")
        .remove(0);
    assert_eq!(hex(&pull.parent_span_id), pull_parent);
    let image_pull = collector
        .children_of(&pull)
        .into_iter()
        .find(|s| s.name == "image.pull")
        .expect("image.pull span");
    let steps: Vec<String> = collector
        .children_of(&image_pull)
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert!(steps.iter().any(|n| n == "image.resolve"), "{steps:?}");
    assert!(steps.iter().any(|n| n == "image.layer"), "{steps:?}");

    // A call without a traceparent starts its own trace; its monitor call is its child.
    let create = collector
        .named("runtime.v1.RuntimeService/CreateContainer")
        .remove(0);
    assert!(create.parent_span_id.is_empty());
    assert_ne!(hex(&create.trace_id), trace);
    assert!(
        collector
            .children_of(&create)
            .iter()
            .any(|s| s.name == "monitor.create"),
        "monitor.create under CreateContainer"
    );

    // A refused call is a span with an error status.
    let _ =
        c.rt.container_status(cri::ContainerStatusRequest {
            container_id: "missing".into(),
            verbose: false,
        })
        .await;
    let failed = eventually(LONG, || async {
        collector
            .named("runtime.v1.RuntimeService/ContainerStatus")
            .iter()
            .any(|s| s.status.as_ref().is_some_and(|st| st.code == 2))
    })
    .await;
    assert!(failed, "ContainerStatus NotFound span with status ERROR");

    // The metrics go the same way.
    let pushed = eventually(LONG, || async {
        let names = collector.metric_names.lock().unwrap();
        names.iter().any(|n| n == "crust_cri_requests_total")
            && names.iter().any(|n| n == "crust_pods")
    })
    .await;
    assert!(pushed, "metrics never pushed over OTLP");

    c.remove_pod(&pod).await.unwrap();
    d.shutdown().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_collector_costs_nothing_but_dropped_spans() {
    // Nothing listens on this port: exports fail in the background.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let d = Daemon::start_env(
        &format!("[telemetry]\notlp_endpoint = {endpoint:?}\n"),
        "",
        &[("OTEL_BSP_SCHEDULE_DELAY", "50")],
    )
    .await
    .unwrap();
    let mut c = d.cri().await.unwrap();
    let image = registry().busybox();
    c.pull(&image).await.unwrap();
    let pc = pod_config("nocollector", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();
    for _ in 0..20 {
        c.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap();
    }
    c.remove_pod(&pod).await.unwrap();
    d.shutdown().await;
}

/// OTLP over HTTP with protobuf bodies (the other standard transport): a plain HTTP/1.1
/// receiver decodes what crustd posts to /v1/traces.
#[tokio::test(flavor = "multi_thread")]
async fn otlp_over_http_protobuf_delivers_spans() {
    use prost::Message;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let names: Arc<Mutex<Vec<String>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen = names.clone();
    let server = tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                // Keep-alive: serve requests on the connection until it closes.
                let mut buf = Vec::new();
                let mut chunk = vec![0u8; 64 * 1024];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let n = conn.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    while buf.len() < end + 4 + len {
                        let n = conn.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body: Vec<u8> = buf.drain(..end + 4 + len).skip(end + 4).collect();
                    if head.starts_with("POST /v1/traces ") {
                        let req = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
                        let mut seen = seen.lock().unwrap();
                        for rs in req.resource_spans {
                            for ss in rs.scope_spans {
                                seen.extend(ss.spans.into_iter().map(|s| s.name));
                            }
                        }
                    }
                    let reply = "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
                    if conn.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });

    let d = Daemon::start_env(
        &format!("[telemetry]\notlp_endpoint = {endpoint:?}\notlp_protocol = \"http/protobuf\"\n"),
        "",
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ],
    )
    .await
    .unwrap();
    let mut c = d.cri().await.unwrap();
    c.rt.version(cri::VersionRequest::default()).await.unwrap();
    let pc = pod_config("http-otlp", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();
    let arrived = eventually(LONG, || async {
        names
            .lock()
            .unwrap()
            .iter()
            .any(|n| n == "runtime.v1.RuntimeService/RunPodSandbox")
    })
    .await;
    assert!(arrived, "no spans over HTTP; log:\n{}", d.daemon_log());
    c.remove_pod(&pod).await.unwrap();
    d.shutdown().await;
    server.abort();
}
