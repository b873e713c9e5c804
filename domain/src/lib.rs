//! Studios' domain: the product's rules as plain code — entities, the status machine,
//! mount paths and locks, validation, roles, the error a rule breaks and the views the
//! API returns. No AWS, HTTP, async runtime or I/O reaches it (its Cargo.toml has none),
//! and it reads neither the clock nor randomness: callers pass `now` and new ids in
//! (docs/architecture.md).

pub mod error;
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
pub mod views;

pub use inputs::*;
pub use model::*;
pub use mounts::{locks, s3};
pub use role::{Permission, Role};
pub use s3::S3Prefix;
pub use status::StudioStatus;
