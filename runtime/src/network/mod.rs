//! Pod networking through CNI: the first network configuration in the conf dir, run with the
//! plugins in the bin dirs, ADD when a pod starts and DEL when it stops.

pub mod cni;

pub use cni::{CniConfig, CniError, NetworkList, PodNetwork, PortMapping};
