//! The mount-path rules in one place (docs/architecture.md): how an S3 location is
//! normalised and when two overlap (`s3`), how a studio's mounts are resolved and checked
//! — names, `/workspace/data/<name>`, read-only or read-write, no overlap, the lock-item
//! budget, "held by" warnings (`resolve`) — and how a session's locks are planned
//! (`locks`). A collision is reported as `error::Conflict::MountLocked` (holder and path),
//! worded with the other conflicts.

pub mod locks;
mod resolve;
pub mod s3;

pub use resolve::*;
