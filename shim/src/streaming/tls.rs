//! Optional TLS for the streaming server, and the client side crustctl and the tests use to
//! reach an HTTPS streaming URL (trusting a given CA file).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// A server TLS acceptor from PEM files.
pub fn acceptor(cert: &Path, key: &Path) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    let bad = |what: &str, p: &Path, e: &dyn std::fmt::Display| {
        std::io::Error::other(format!("streaming TLS {what} {}: {e}", p.display()))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("certificate", cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("certificate", cert, &e))?;
    if certs.is_empty() {
        return Err(bad("certificate", cert, &"no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, &e))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| std::io::Error::other(format!("streaming TLS: {e}")))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Any byte stream a streaming client talks over (TCP or TLS over TCP).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

static CLIENT_CA: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// Trusts the CA certificates in `path` for https streaming URLs (once per process).
pub fn trust_ca_file(path: &Path) -> anyhow::Result<()> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(path)
        .map_err(|e| anyhow::anyhow!("CA file {}: {e}", path.display()))?
    {
        roots
            .add(c.map_err(|e| anyhow::anyhow!("CA file {}: {e}", path.display()))?)
            .map_err(|e| anyhow::anyhow!("CA file {}: {e}", path.display()))?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let _ = CLIENT_CA.set(Arc::new(config));
    Ok(())
}

/// Connects to `host` (host:port) for a URL with `scheme` http or https.
pub async fn connect(scheme: &str, host: &str) -> anyhow::Result<Box<dyn Io>> {
    let tcp = TcpStream::connect(host)
        .await
        .map_err(|e| anyhow::anyhow!("connect to {host}: {e}"))?;
    tcp.set_nodelay(true)?;
    match scheme {
        "http" => Ok(Box::new(tcp)),
        "https" => {
            let config = CLIENT_CA.get().cloned().ok_or_else(|| {
                anyhow::anyhow!(
                    "{host} serves https: give the CA that signed its certificate (--streaming-ca)"
                )
            })?;
            let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
            let name = ServerName::try_from(name.trim_matches(['[', ']']).to_string())
                .map_err(|e| anyhow::anyhow!("{host}: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| anyhow::anyhow!("TLS with {host}: {e}"))?;
            Ok(Box::new(tls))
        }
        other => anyhow::bail!("streaming URL scheme {other} is not http or https"),
    }
}
