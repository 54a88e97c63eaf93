//! The two Kubernetes API calls the Helm chart's installer pods need (through `crustctl kube`):
//! label the node once crust is ready, and tell whether their DaemonSet is being deleted (then
//! crust is uninstalled from the node). In-cluster config: the service account's token and CA,
//! and `KUBERNETES_SERVICE_HOST`/`_PORT`.

use std::path::Path;

use anyhow::Context;

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

pub struct KubeClient {
    server: String,
    token: String,
    http: reqwest::Client,
}

impl KubeClient {
    /// `server` overrides the in-cluster address (for tests and out-of-cluster use); the token
    /// and CA come from `sa_dir` when the files are there.
    pub fn in_cluster(server: Option<String>, sa_dir: Option<&Path>) -> anyhow::Result<Self> {
        let sa_dir = sa_dir.unwrap_or(Path::new(SA_DIR));
        let server = match server {
            Some(s) => s.trim_end_matches('/').to_string(),
            None => {
                let host = std::env::var("KUBERNETES_SERVICE_HOST")
                    .context("KUBERNETES_SERVICE_HOST is not set (not in a pod? pass --server)")?;
                let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or("443".into());
                // An IPv6 service address needs brackets in a URL.
                if host.contains(':') {
                    format!("https://[{host}]:{port}")
                } else {
                    format!("https://{host}:{port}")
                }
            }
        };
        let token = std::fs::read_to_string(sa_dir.join("token"))
            .map(|t| t.trim().to_string())
            .unwrap_or_default();
        let mut b = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
        if let Ok(pem) = std::fs::read(sa_dir.join("ca.crt")) {
            for cert in reqwest::Certificate::from_pem_bundle(&pem).context("service account CA")? {
                b = b.add_root_certificate(cert);
            }
        }
        Ok(KubeClient {
            server,
            token,
            http: b.build()?,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.server));
        if self.token.is_empty() {
            r
        } else {
            r.bearer_auth(&self.token)
        }
    }

    /// Sets `key` to `value` on the node's labels, or removes it when `value` is None.
    pub async fn label_node(
        &self,
        node: &str,
        key: &str,
        value: Option<&str>,
    ) -> anyhow::Result<()> {
        let patch = serde_json::json!({"metadata": {"labels": {key: value}}});
        let resp = self
            .request(reqwest::Method::PATCH, &format!("/api/v1/nodes/{node}"))
            .header("Content-Type", "application/merge-patch+json")
            .body(patch.to_string())
            .send()
            .await
            .with_context(|| format!("PATCH node {node}"))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            anyhow::bail!("PATCH node {node}: {status}: {body}");
        }
        Ok(())
    }

    /// Whether the DaemonSet is gone or being deleted (as `helm uninstall` does).
    pub async fn daemonset_deleted(&self, namespace: &str, name: &str) -> anyhow::Result<bool> {
        let path = format!("/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}");
        let resp = self
            .request(reqwest::Method::GET, &path)
            .send()
            .await
            .with_context(|| format!("GET daemonset {namespace}/{name}"))?;
        match resp.status() {
            reqwest::StatusCode::NOT_FOUND => Ok(true),
            s if s.is_success() => {
                let ds: serde_json::Value = serde_json::from_slice(&resp.bytes().await?)?;
                Ok(!ds["metadata"]["deletionTimestamp"].is_null())
            }
            s => anyhow::bail!("GET daemonset {namespace}/{name}: {s}"),
        }
    }
}
