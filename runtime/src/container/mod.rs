//! Containers: the OCI spec built from the image config and the CRI request, the overlay
//! rootfs, and user resolution inside the image.

pub mod devices;
pub mod mounts;
pub mod overlay;
pub mod rootfs;
pub mod seccomp_default;
pub mod security;
pub mod spec;
pub mod user;
