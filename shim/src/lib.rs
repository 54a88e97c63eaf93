//! crust's shim: the CRI gRPC server (`crustd`), its configuration, and the client library
//! `crustctl` uses.

pub mod api;
pub mod authority;
pub mod client;
pub mod config;
pub mod cri;
pub mod deadline;
pub mod heap;
pub mod import_dir;
pub mod kube;
pub mod run_options;
pub mod sealed;
pub mod streaming;
pub mod telemetry;
