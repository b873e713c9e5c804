//! Studios control plane: the library behind every Lambda function.
//!
//! - `domain`: the product's rules, pure (the `studios-domain` crate).
//! - `store`: the storage port and its DynamoDB adapter.
//! - `service`: one function per API action over the port.
//! - `http`: API Gateway requests in, JSON responses out; the one place errors become
//!   status codes.
//! - `views`: the response types (in the domain crate); `openapi`: the API document derived from them and
//!   from the request types and the route table.

pub mod access;
pub mod agents;
pub mod catalog;
pub mod checkpoints;
pub mod cleanup;
pub mod clock;
pub mod compute;
pub mod config;
pub mod connect;
pub mod consumers;
pub mod error;
pub mod events;
pub mod http;
pub mod jobs;
pub mod objects;
pub mod openapi;
pub mod routes;
pub mod service;
pub mod sessions;
pub mod store;
pub mod telemetry;

/// The product's rules, pure: their own crate, so the compiler keeps AWS and I/O out.
pub use studios_domain as domain;
/// The response types (built from the domain's model).
pub use studios_domain::views;

pub use access::App;
pub use config::Config;
pub use error::{Error, Result};

#[cfg(test)]
mod architecture_tests;
#[cfg(test)]
mod template_tests;
#[cfg(test)]
mod test_server;
