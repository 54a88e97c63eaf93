//! The Helm chart, without a cluster or a helm binary: values checked against
//! values.schema.json (as helm install does), templates rendered by tests/helm-render (Go
//! templates with sprig, from Debian), manifests validated against the Kubernetes 1.31 schemas
//! (PyPI's kubernetes-validate), the rendered crust config checked by crustd itself, the
//! alerts by promtool, and the installer agent's API calls against a recording API server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use crust_e2e::bin;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Builds tests/helm-render once (GOPATH mode, with Debian's sprig and yaml.v3).
fn renderer() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = repo().join("target/helm-render");
            std::fs::create_dir_all(&dir).unwrap();
            let exe = dir.join("helm-render");
            let (ok, out) = run(Command::new("go")
                .arg("build")
                .arg("-o")
                .arg(&exe)
                .arg(repo().join("tests/helm-render/main.go"))
                .env("GO111MODULE", "off")
                .env("GOPATH", "/usr/share/gocode")
                .env("GOCACHE", dir.join("cache"))
                .env("GOFLAGS", ""));
            assert!(
                ok,
                "go build helm-render (scripts/setup.sh installs Go and sprig):\n{out}"
            );
            exe
        })
        .clone()
}

fn values(name: &str) -> PathBuf {
    repo().join("tests/fixtures/helm").join(name)
}

/// Whether `file` satisfies the chart's values.schema.json; the error text when not.
fn schema_check(file: Option<&Path>) -> (bool, String) {
    let script = r#"
import json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
values = yaml.safe_load(open(sys.argv[2]))
if len(sys.argv) > 3:
    override = yaml.safe_load(open(sys.argv[3]))
    def merge(d, s):
        for k, v in s.items():
            d[k] = merge(d[k], v) if isinstance(v, dict) and isinstance(d.get(k), dict) else v
        return d
    values = merge(values, override)
jsonschema.validate(values, schema)
"#;
    let chart = repo().join("helm/crust");
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(script)
        .arg(chart.join("values.schema.json"))
        .arg(chart.join("values.yaml"));
    if let Some(f) = file {
        cmd.arg(f);
    }
    run(&mut cmd)
}

/// The rendered manifests, parsed, and the file they were written to.
fn render(values_file: Option<&Path>, dir: &Path) -> (Vec<serde_yaml::Value>, PathBuf, String) {
    let mut cmd = Command::new(renderer());
    cmd.arg("-chart").arg(repo().join("helm/crust"));
    if let Some(f) = values_file {
        cmd.arg("-f").arg(f);
    }
    let (ok, text) = run(&mut cmd);
    assert!(ok, "render failed:\n{text}");
    let file = dir.join("manifests.yaml");
    std::fs::write(&file, &text).unwrap();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("rendered YAML parses"))
        .filter(|v: &serde_yaml::Value| !v.is_null())
        .collect();
    (docs, file, text)
}

fn find<'a>(docs: &'a [serde_yaml::Value], kind: &str) -> Option<&'a serde_yaml::Value> {
    docs.iter().find(|d| d["kind"].as_str() == Some(kind))
}

fn kubernetes_validate(file: &Path) {
    let (ok, out) = run(Command::new("kubernetes-validate")
        .args(["--strict", "-k", "1.31.0"])
        .arg(file));
    assert!(ok, "kubernetes-validate:\n{out}");
    assert!(!out.contains("ERROR"), "{out}");
}

/// Everything the chart puts in its ConfigMap must work on a node.
fn check_configmap(docs: &[serde_yaml::Value], dir: &Path) -> String {
    let cm = find(docs, "ConfigMap").expect("ConfigMap");
    let config = cm["data"]["config.toml"].as_str().unwrap();
    let path = dir.join("config.toml");
    std::fs::write(&path, config).unwrap();
    let (ok, out) = run(Command::new(bin("crustd"))
        .args(["config", "check"])
        .arg(&path));
    assert!(ok, "crustd rejects the chart's config:\n{out}\n{config}");
    let agent = dir.join("agent.sh");
    std::fs::write(&agent, cm["data"]["agent.sh"].as_str().unwrap()).unwrap();
    let (ok, out) = run(Command::new("sh").arg("-n").arg(&agent));
    assert!(ok, "agent.sh: {out}");
    config.to_string()
}

#[test]
fn default_values_render_valid_manifests() {
    let (ok, out) = schema_check(None);
    assert!(ok, "values.yaml against values.schema.json:\n{out}");
    let dir = tempfile::tempdir().unwrap();
    let (docs, file, text) = render(None, dir.path());
    kubernetes_validate(&file);
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for k in [
        "ConfigMap",
        "DaemonSet",
        "Service",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    assert!(!kinds.contains(&"ServiceMonitor") && !kinds.contains(&"PrometheusRule"));
    let config = check_configmap(&docs, dir.path());
    assert!(
        config.contains("metrics_address = \"0.0.0.0:9899\""),
        "{config}"
    );

    let ds = find(&docs, "DaemonSet").unwrap();
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"].as_bool(), Some(true));
    assert_eq!(pod["hostNetwork"].as_bool(), Some(true));
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["privileged"].as_bool(), Some(true));
    assert_eq!(
        c["image"].as_str(),
        Some("ghcr.io/crust-runtime/crust-installer:0.1.0")
    );
    assert_eq!(pod["volumes"][0]["hostPath"]["path"].as_str(), Some("/"));
    // The Service's selector picks the installer pods, and its port is theirs.
    let svc = find(&docs, "Service").unwrap();
    assert_eq!(svc["spec"]["clusterIP"].as_str(), Some("None"));
    assert_eq!(
        svc["spec"]["selector"],
        ds["spec"]["selector"]["matchLabels"]
    );
    assert!(
        text.contains("# NOTES: kubelet still uses its current runtime"),
        "{text}"
    );
}

#[test]
fn full_values_render_valid_manifests_alerts_and_config() {
    let full = values("full-values.yaml");
    let (ok, out) = schema_check(Some(&full));
    assert!(ok, "full-values.yaml against values.schema.json:\n{out}");
    let dir = tempfile::tempdir().unwrap();
    let (docs, file, text) = render(Some(&full), dir.path());
    kubernetes_validate(&file);
    let config = check_configmap(&docs, dir.path());
    for line in [
        "cgroup_driver = \"cgroupfs\"",
        "[image.registries.\"registry.k8s.io\"]",
        "skip_upstream = true",
        "credentials_file = \"/etc/crust/credentials.json\"",
        "otlp_endpoint = \"http://otel-collector.observability:4317\"",
    ] {
        assert!(config.contains(line), "{line} in\n{config}");
    }
    let cm = find(&docs, "ConfigMap").unwrap();
    assert!(
        cm["data"]["crust.env"]
            .as_str()
            .unwrap()
            .contains("OTEL_EXPORTER_OTLP_HEADERS=x-tenant=node-fleet")
    );
    let ds = find(&docs, "DaemonSet").unwrap();
    let env = format!(
        "{:?}",
        ds["spec"]["template"]["spec"]["containers"][0]["env"]
    );
    assert!(
        env.contains("CRUST_SWITCH_KUBELET") && env.contains("\"true\""),
        "{env}"
    );
    assert!(text.contains("# NOTES: WARNING: kubelet on each node is being pointed at crust"));

    // The prometheus-operator objects (no schema in kubernetes-validate): the ServiceMonitor
    // selects the metrics Service, and the alert rules pass promtool.
    let sm = find(&docs, "ServiceMonitor").expect("ServiceMonitor");
    let svc = find(&docs, "Service").unwrap();
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_mapping().unwrap() {
        assert_eq!(&svc["metadata"]["labels"][k], v);
    }
    assert_eq!(
        sm["spec"]["endpoints"][0]["port"],
        svc["spec"]["ports"][0]["name"]
    );
    assert_eq!(
        sm["metadata"]["labels"]["release"].as_str(),
        Some("kube-prometheus")
    );
    let rule = find(&docs, "PrometheusRule").expect("PrometheusRule");
    let rules_file = dir.path().join("rules.yaml");
    std::fs::write(&rules_file, serde_yaml::to_string(&rule["spec"]).unwrap()).unwrap();
    let (ok, out) = run(Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules_file));
    assert!(ok, "promtool check rules:\n{out}");
    assert!(out.contains("4 rules found"), "{out}");
}

#[test]
fn the_schema_refuses_bad_values() {
    let (ok, out) = schema_check(Some(&values("bad-values.yaml")));
    assert!(!ok, "bad values passed the schema");
    assert!(out.contains("upstart") || out.contains("prot"), "{out}");
}

/// What the recording API server saw: method, path, authorization and body.
type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

/// A minimal Kubernetes API: PATCH nodes/*, GET of two DaemonSets (one being deleted).
async fn fake_apiserver(seen: Seen) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body) = loop {
                    let n = conn.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if body.len() >= len || n == 0 {
                            break (head.to_string(), body.to_string());
                        }
                    }
                };
                let mut first = head.lines().next().unwrap().split(' ');
                let (method, path) = (
                    first.next().unwrap().to_string(),
                    first.next().unwrap().to_string(),
                );
                let auth = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .starts_with("authorization:")
                            .then(|| l[14..].trim().to_string())
                    })
                    .unwrap_or_default();
                seen.lock()
                    .unwrap()
                    .push((method.clone(), path.clone(), auth, body));
                let (status, reply) = match (method.as_str(), path.as_str()) {
                    ("PATCH", p) if p.starts_with("/api/v1/nodes/") => ("200 OK", "{}".to_string()),
                    ("GET", "/apis/apps/v1/namespaces/kube-system/daemonsets/going") => (
                        "200 OK",
                        r#"{"metadata":{"name":"going","deletionTimestamp":"2026-11-22T10:00:00Z"}}"#.into(),
                    ),
                    ("GET", "/apis/apps/v1/namespaces/kube-system/daemonsets/staying") => {
                        ("200 OK", r#"{"metadata":{"name":"staying"}}"#.into())
                    }
                    _ => ("404 Not Found", r#"{"kind":"Status","code":404}"#.into()),
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                conn.write_all(resp.as_bytes()).await.unwrap();
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn installer_agent_labels_the_node_and_detects_its_daemonset_deletion() {
    let seen: Seen = Arc::default();
    let server = fake_apiserver(seen.clone()).await;
    let sa = tempfile::tempdir().unwrap();
    std::fs::write(sa.path().join("token"), "sekret\n").unwrap();
    let kube = |args: &[&str]| {
        let mut cmd = Command::new(bin("crustctl"));
        cmd.args(["kube", "--server", &server, "--sa-dir"])
            .arg(sa.path())
            .args(args);
        cmd.status().unwrap().code()
    };
    assert_eq!(
        kube(&["label-node", "node-a", "crust.dev/runtime=ready"]),
        Some(0)
    );
    assert_eq!(
        kube(&["label-node", "node-a", "crust.dev/runtime-"]),
        Some(0)
    );
    assert_eq!(
        kube(&["daemonset-deleted", "kube-system", "going"]),
        Some(0)
    );
    assert_eq!(kube(&["daemonset-deleted", "kube-system", "gone"]), Some(0));
    assert_eq!(
        kube(&["daemonset-deleted", "kube-system", "staying"]),
        Some(1)
    );
    assert_eq!(kube(&["label-node", "node-a", "no-equals-sign"]), Some(1));

    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].0, "PATCH");
    assert_eq!(seen[0].1, "/api/v1/nodes/node-a");
    assert_eq!(seen[0].2, "Bearer sekret");
    let set: serde_json::Value = serde_json::from_str(&seen[0].3).unwrap();
    assert_eq!(set["metadata"]["labels"]["crust.dev/runtime"], "ready");
    let removed: serde_json::Value = serde_json::from_str(&seen[1].3).unwrap();
    assert!(removed["metadata"]["labels"]["crust.dev/runtime"].is_null());
    assert!(
        removed["metadata"]["labels"]
            .as_object()
            .unwrap()
            .contains_key("crust.dev/runtime")
    );
    assert_eq!(seen.len(), 5, "the malformed label made no request");
}
