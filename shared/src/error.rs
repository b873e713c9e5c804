//! The one error type of the control plane. Variants follow what the caller should do;
//! `http::error_response` maps them to status codes in exactly one place.

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of thing was not found (also used for "not visible to you").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Workspace,
    Member,
    ComputeEnv,
    DataLink,
    Studio,
    Checkpoint,
    Route,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Missing::Workspace => "workspace",
            Missing::Member => "member",
            Missing::ComputeEnv => "compute environment",
            Missing::DataLink => "data link",
            Missing::Checkpoint => "checkpoint",
            Missing::Studio => "studio",
            Missing::Route => "route",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed: fix `field` and send it again (400).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// No caller identity (401).
    #[error("authentication required")]
    Unauthenticated,
    /// The caller is a member but lacks the permission (403).
    #[error("{0}")]
    Forbidden(String),
    /// Absent, or not visible to the caller (404).
    #[error("{0} not found")]
    NotFound(Missing),
    /// The current state forbids the change (409): `code` is machine-readable.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The body is not JSON by its Content-Type (415).
    #[error("the request body must be JSON (Content-Type: application/json), not {0}")]
    UnsupportedMediaType(String),
    /// A known path with another method (405 + Allow).
    #[error("{method} is not allowed here; use {allow}")]
    MethodNotAllowed { method: String, allow: String },
    /// DynamoDB throttled us or transactions kept colliding: retry later (503 + Retry-After).
    #[error("the service is busy; retry shortly")]
    Throttled,
    /// Anything else: logged with detail, answered with a safe message (500).
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Error::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Internal(e.into())
    }

    /// An AWS SDK error that is nobody's fault we can name: internal, with the SDK's whole
    /// context (request id, service code) for the log.
    pub fn aws(e: impl std::error::Error) -> Self {
        Error::internal(aws_smithy_types::error::display::DisplayErrorContext(&e).to_string())
    }
}
