//! The product's rules as plain code: no AWS types, no I/O.

pub mod ids;
pub mod inputs;
pub mod lifecycle;
pub mod model;
pub mod mounts;
pub mod role;
pub mod search;
pub mod status;
pub mod transitions;
pub mod validate;

pub use inputs::*;
pub use model::*;
pub use mounts::{locks, s3};
pub use role::{Permission, Role};
pub use s3::S3Prefix;
pub use status::StudioStatus;
