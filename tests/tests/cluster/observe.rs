//! Operating crust in the cluster: the Helm chart against this API server, Prometheus finding
//! crustd through the API server, and kubelet's traces continued by crust's (both sent to an
//! OpenTelemetry Collector).

use crust_e2e::prometheus::Prometheus;

use super::*;

/// `helm lint` and `helm template` with the real helm, and every rendered manifest accepted by
/// the API server (a server-side dry run validates against its schemas and admission).
pub(crate) fn helm_chart(c: &Cluster) -> Outcome {
    let helm = k8s_tool("helm");
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../helm/crust");
    let run = |args: &[&str]| -> Result<String, String> {
        let out = std::process::Command::new(&helm)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!(
                "helm {}: {text}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    let chart = chart.display().to_string();
    let lint = run(&["lint", &chart])?;
    contains(&lint, &["0 chart(s) failed"])?;
    let rendered = run(&["template", "crust", &chart, "--namespace", "crust-system"])?;
    c.kubectl_ok(&["create", "namespace", "crust-system"])?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = dir.path().join("crust.yaml");
    std::fs::write(&file, &rendered).map_err(|e| e.to_string())?;
    let applied = c.kubectl_ok(&[
        "apply",
        "--dry-run=server",
        "-f",
        &file.display().to_string(),
    ])?;
    for kind in [
        "daemonset.apps/",
        "configmap/",
        "serviceaccount/",
        "service/",
    ] {
        if !applied
            .lines()
            .any(|l| l.starts_with(kind) && l.ends_with("(server dry run)"))
        {
            return Err(format!("no {kind} accepted in:\n{applied}"));
        }
    }
    Ok(())
}

/// Prometheus discovers crustd's metrics endpoint through the API server (a Service and its
/// EndpointSlice for the node's crustd, as the chart's headless Service gives one per node)
/// and scrapes it.
pub(crate) fn prometheus_scrapes_crust(c: &Cluster) -> Outcome {
    let addr =
        std::fs::read_to_string(c.dir.join("crustd-metrics.addr")).map_err(|e| e.to_string())?;
    let (ip, port) = addr.trim().split_once(':').ok_or("bad metrics address")?;
    c.apply(&format!(
        "apiVersion: v1
kind: Service
metadata: {{name: crust-metrics}}
spec:
  clusterIP: None
  ports: [{{name: metrics, port: {port}, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: crust-metrics-node
  labels: {{kubernetes.io/service-name: crust-metrics}}
addressType: IPv4
endpoints: [{{addresses: [\"{ip}\"], nodeName: crust-node}}]
ports: [{{name: metrics, port: {port}, protocol: TCP}}]"
    ))?;
    let api = std::fs::read_to_string(c.dir.join("api.port")).map_err(|e| e.to_string())?;
    let pki = c.dir.join("pki");
    // Built from its Go module: Debian's 2.42 has no kubernetes_sd_configs.
    let binary = crust_e2e::k8s_tool("prometheus");
    let prom = Prometheus::with_scrape_configs(
        &binary,
        &format!(
            "  - job_name: crust
    kubernetes_sd_configs:
      - role: endpointslice
        api_server: https://127.0.0.1:{api}
        namespaces: {{names: [default]}}
        tls_config: {{ca_file: {ca}, cert_file: {crt}, key_file: {key}}}
    relabel_configs:
      - source_labels: [__meta_kubernetes_service_name]
        regex: crust-metrics
        action: keep
",
            api = api.trim(),
            ca = pki.join("ca.crt").display(),
            crt = pki.join("admin.crt").display(),
            key = pki.join("admin.key").display(),
        ),
    );
    c.wait("Prometheus scraping crustd", MINUTE, || {
        match prom.query("sum(crust_cri_requests_total{job=\"crust\"})") {
            Some(v) if v > 0.0 => Ok(()),
            other => Err(format!("{other:?}; targets {}", prom.targets())),
        }
    })
    .map_err(|e| format!("{e}\n{}", prom.log()))?;
    match prom.query("up{job=\"crust\"}") {
        Some(1.0) => Ok(()),
        other => Err(format!("up{{job=\"crust\"}} = {other:?}")),
    }
}

/// An OpenTelemetry Collector built from its Go modules (scripts/k8s-tools.sh `otelcol`):
/// OTLP/gRPC in on a loopback port, every span out to a JSON-lines file.
pub(crate) struct Collector {
    child: std::process::Child,
    dir: tempfile::TempDir,
    pub addr: String,
}

impl Collector {
    pub(crate) fn start() -> Collector {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let config = dir.path().join("otelcol.yaml");
        std::fs::write(
            &config,
            format!(
                "receivers:\n  otlp:\n    protocols:\n      grpc: {{endpoint: \"{addr}\"}}\n\
                 exporters:\n  file: {{path: {spans}}}\n\
                 service:\n  telemetry: {{metrics: {{level: none}}}}\n\
                 \x20 pipelines:\n    traces: {{receivers: [otlp], exporters: [file]}}\n",
                spans = dir.path().join("spans.json").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("otelcol.log")).unwrap();
        let child = std::process::Command::new(k8s_tool("otelcol"))
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start otelcol");
        let collector = Collector { child, dir, addr };
        assert!(
            crust_e2e::wait_listening(&collector.addr, Duration::from_secs(30)),
            "otelcol did not listen on {}: {}",
            collector.addr,
            collector.log()
        );
        collector
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("otelcol.log")).unwrap_or_default()
    }

    /// Every span written so far: (service.name, span JSON).
    fn spans(&self) -> Vec<(String, serde_json::Value)> {
        let text = std::fs::read_to_string(self.dir.path().join("spans.json")).unwrap_or_default();
        let mut spans = Vec::new();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            for rs in v["resourceSpans"].as_array().into_iter().flatten() {
                let service = rs["resource"]["attributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["key"] == "service.name")
                    .and_then(|a| a["value"]["stringValue"].as_str())
                    .unwrap_or_default()
                    .to_string();
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    for span in ss["spans"].as_array().into_iter().flatten() {
                        spans.push((service.clone(), span.clone()));
                    }
                }
            }
        }
        spans
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// kubelet's tracing sends `traceparent` on its CRI calls: crust's span of a RunPodSandbox
/// is a child of kubelet's span, in kubelet's trace, both received by the collector.
pub(crate) fn traces_continue_kubelets(c: &Cluster, collector: &Collector) -> Outcome {
    c.wait(
        "a crust span whose parent is a kubelet span",
        MINUTE,
        || {
            let spans = collector.spans();
            let of = |who: &str| -> Vec<&serde_json::Value> {
                spans
                    .iter()
                    .filter(|(svc, _)| svc.contains(who))
                    .map(|(_, s)| s)
                    .collect()
            };
            let (kubelet, crust) = (of("kubelet"), of("crust"));
            let linked = crust.iter().find(|s| {
                s["name"]
                    .as_str()
                    .is_some_and(|n| n.contains("RunPodSandbox"))
                    && kubelet
                        .iter()
                        .any(|k| k["spanId"] == s["parentSpanId"] && k["traceId"] == s["traceId"])
            });
            match linked {
                Some(_) => Ok(()),
                None => Err(format!(
                    "{} kubelet spans, {} crust spans (names: {:?})\n{}",
                    kubelet.len(),
                    crust.len(),
                    crust
                        .iter()
                        .map(|s| &s["name"])
                        .take(10)
                        .collect::<Vec<_>>(),
                    collector.log()
                )),
            }
        },
    )
}
