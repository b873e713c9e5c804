//! The wire contracts two parts of Studios share, each defined once (docs/api.md): the
//! job environment a session gets, the agent channel's report and reply, the signed
//! claims of connect links and relay tokens, the tunnel's words, the checkpoint
//! manifest's name, the shape of ids and S3 URIs. No AWS SDK and no runtime here: both
//! the control plane and the session's agent (and the relay) build on it.

pub mod claims;
pub mod env;
pub mod ids;
pub mod report;
pub mod s3;
pub mod tunnel;

/// The object a checkpoint's writer puts last: a checkpoint without it is not complete
/// (docs/api.md, checkpoints).
pub const MANIFEST: &str = "manifest.json";
