//! The control plane's one error type is the domain's (`studios_domain::error`: what
//! went wrong, in the caller's terms); `http::error_response` maps it to status codes in
//! exactly one place. What only the AWS side knows — how an SDK error becomes one — is
//! here.

pub use studios_domain::error::*;

/// An AWS SDK error that is nobody's fault we can name: internal, with the SDK's whole
/// context (request id, service code) for the log.
pub fn aws(e: impl std::error::Error) -> Error {
    Error::internal(aws_smithy_types::error::display::DisplayErrorContext(&e).to_string())
}
