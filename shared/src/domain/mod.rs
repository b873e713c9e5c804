//! The product's rules as plain code: no AWS types, no I/O.

pub mod ids;
pub mod lifecycle;
pub mod locks;
pub mod model;
pub mod role;
pub mod s3;
pub mod search;
pub mod status;
pub mod validate;

pub use model::*;
pub use role::{Permission, Role};
pub use s3::S3Prefix;
pub use status::StudioStatus;
