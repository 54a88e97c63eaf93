//! Wire types for crust.
//!
//! - [`cri`]: the Kubernetes CRI v1 messages and gRPC services, generated at build time from
//!   `api.proto` of the `k8s.io/cri-api` Go module pinned in `cri-api/go.mod` (never a copy of
//!   upstream's `api.proto` in this repository; see `build.rs`).
//! - [`crust`]: crust's own API (build, tag, push, rename), served beside CRI.
//! - [`monitor`]: crust's own protocol between `crustd` and the per-pod monitor process.

/// The CRI version these bindings were generated from (`cri-api/go.mod`).
pub const CRI_API_VERSION: &str = env!("CRUST_CRI_API_VERSION");

#[allow(
    clippy::all,
    clippy::pedantic,
    rustdoc::bare_urls,
    rustdoc::invalid_html_tags,
    rustdoc::broken_intra_doc_links
)]
pub mod cri {
    tonic::include_proto!("runtime.v1");

    /// Written by hand so that credentials never reach a log: every secret field is redacted,
    /// as `debug_redact` marks them in api.proto (prost does not honour the option).
    impl std::fmt::Debug for AuthConfig {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let redact = |s: &str| if s.is_empty() { "" } else { "<redacted>" };
            f.debug_struct("AuthConfig")
                .field("username", &self.username)
                .field("password", &redact(&self.password))
                .field("auth", &redact(&self.auth))
                .field("server_address", &self.server_address)
                .field("identity_token", &redact(&self.identity_token))
                .field("registry_token", &redact(&self.registry_token))
                .finish()
        }
    }
}

/// crust's own API beside CRI on crustd's socket: build, tag, push, rename
/// (`crust/v1/images.proto`).
#[allow(clippy::all, clippy::pedantic)]
pub mod crust {
    tonic::include_proto!("crust.v1");

    /// Written by hand so that credentials never reach a log.
    impl std::fmt::Debug for AuthConfig {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let redact = |s: &str| if s.is_empty() { "" } else { "<redacted>" };
            f.debug_struct("AuthConfig")
                .field("username", &self.username)
                .field("password", &redact(&self.password))
                .field("auth", &redact(&self.auth))
                .field("registry_token", &redact(&self.registry_token))
                .finish()
        }
    }
}

pub mod monitor;
