//! Pod networking through CNI: the first network configuration in the conf dir, run with the
//! plugins in the bin dirs, ADD when a pod starts and DEL when it stops;
//! host ports crust publishes itself where the network has no portmap plugin.

pub mod cni;
pub mod conntrack;
pub mod hostport;
pub mod hostport_claims;

pub use cni::{CniConfig, CniError, NetworkList, PodNetwork, PortMapping};
pub use hostport::{HostPortError, HostPorts};
pub use hostport_claims::{HeldPort, HostPortClaims};
