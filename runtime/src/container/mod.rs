//! Containers: the OCI spec built from the image config and the CRI request, the overlay
//! rootfs, and user resolution inside the image.

pub mod rootfs;
pub mod spec;
pub mod user;
