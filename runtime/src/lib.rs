//! crust's engine. It knows images, snapshots, pods, containers, cgroups, monitors and persisted
//! state, and nothing of gRPC: the shim translates between CRI calls and this API.

pub mod build;
pub mod cgroups;
pub mod container;
pub mod dirwatch;
pub mod engine;
pub mod error;
pub mod fsutil;
pub mod ids;
pub mod image;
pub mod metrics;
pub mod monitor;
pub mod network;
pub mod pod;
pub mod store;

pub use engine::{Engine, EngineConfig};
pub use error::{Error, Result};

/// Nanoseconds since the Unix epoch, the unit CRI uses for timestamps.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
