//! Prometheus, started by a test with its own config and storage: Debian's (2.42), or the one
//! scripts/k8s-tools.sh builds from its Go module (Debian's build leaves Kubernetes service
//! discovery out).

use std::process::{Child, Command, Stdio};

use crate::free_port;

pub fn curl(url: &str) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "-f", "--max-time", "10", url])
        .output()
        .expect("run curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Prometheus, started by the test, scraping one target every second.
pub struct Prometheus {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Debian's Prometheus scraping `target`.
    pub fn start(target: &str) -> Prometheus {
        Prometheus::with_scrape_configs(
            std::path::Path::new("prometheus"),
            &format!("  - job_name: crust\n    static_configs:\n      - targets: [\"{target}\"]\n"),
        )
    }

    /// The Prometheus `binary` with `scrape_configs` (YAML list items, indented two spaces),
    /// scraping every second.
    pub fn with_scrape_configs(binary: &std::path::Path, scrape_configs: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("prometheus.yml");
        std::fs::write(
            &conf,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{scrape_configs}"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus (Debian package prometheus; scripts/setup.sh installs it)");
        Prometheus { child, addr, dir }
    }

    /// Its log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The scrape targets it has found, as /api/v1/targets gives them.
    pub fn targets(&self) -> serde_json::Value {
        let (_, body) = curl(&format!("http://{}/api/v1/targets", self.addr));
        serde_json::from_str(&body).unwrap_or_default()
    }

    /// The value of the first series a PromQL query returns.
    pub fn query(&self, promql: &str) -> Option<f64> {
        let url = format!(
            "http://{}/api/v1/query?query={}",
            self.addr,
            promql
                .bytes()
                .map(|b| if b.is_ascii_alphanumeric() || b == b'_' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                })
                .collect::<String>()
        );
        let (ok, body) = curl(&url);
        if !ok {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
