//! The studio agent: the entrypoint of every session container (docs/agent.md). It
//! restores the studio's checkpoint into the workspace, starts the IDE on loopback behind
//! its own port, reports to the control plane over the session's channel, takes
//! incremental snapshots, and saves the final checkpoint (manifest last) when it is asked
//! to stop or receives SIGTERM.

pub mod auth;
pub mod channel;
pub mod checkpoint;
pub mod conda;
pub mod config;
pub mod confine;
pub mod ide;
pub mod manifest;
pub mod mounts;
pub mod objects;
pub mod proxy;
pub mod tunnel;
pub mod upstream;
