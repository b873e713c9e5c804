//! Writing a response: JSON bodies, and the one place an `Error` becomes a status code.

use crate::error::{Error, Result};
use lambda_http::http::{header, StatusCode};
use lambda_http::{Body, Response};

pub(super) fn json_response<T: serde::Serialize>(
    status: StatusCode,
    value: &T,
) -> Result<Response<Body>> {
    let body = serde_json::to_string(value).map_err(Error::internal)?;
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .map_err(Error::internal)
}

pub(super) fn ok<T: serde::Serialize>(value: &T) -> Result<Response<Body>> {
    json_response(StatusCode::OK, value)
}

pub(super) fn created<T: serde::Serialize>(value: &T) -> Result<Response<Body>> {
    json_response(StatusCode::CREATED, value)
}

pub(super) fn no_content() -> Result<Response<Body>> {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Body::Empty)
        .map_err(Error::internal)
}

/// The one place an `Error` becomes a status code. Internal details go to the log only.
pub fn error_response(err: &Error, request_id: &str) -> Response<Body> {
    let (status, code, message, field) = match err {
        Error::Invalid { field, message } => (
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("{field}: {message}"),
            Some(field.as_str()),
        ),
        Error::Unauthenticated => (
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in: the request carries no identity".to_string(),
            None,
        ),
        Error::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone(), None),
        Error::NotFound(what) => (
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
            None,
        ),
        Error::Conflict(c) => (StatusCode::CONFLICT, c.code(), c.to_string(), None),
        Error::UnsupportedMediaType(_) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            err.to_string(),
            None,
        ),
        Error::MethodNotAllowed { .. } => (
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            err.to_string(),
            None,
        ),
        Error::Throttled => (
            StatusCode::SERVICE_UNAVAILABLE,
            "throttled",
            err.to_string(),
            None,
        ),
        Error::Internal(source) => {
            // The whole cause chain, readable, for the log only.
            let mut chain = source.to_string();
            let mut cause = source.source();
            while let Some(c) = cause {
                chain.push_str(": ");
                chain.push_str(&c.to_string());
                cause = c.source();
            }
            tracing::error!(request_id, error = %chain, "internal error");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                format!("something went wrong on our side; quote request id '{request_id}' when reporting it"),
                None,
            )
        }
    };
    let error = crate::views::ErrorBody {
        error: crate::views::ErrorDetail {
            code: code.to_string(),
            message,
            field: field.map(str::to_string),
        },
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json");
    if matches!(err, Error::Throttled) {
        builder = builder.header(header::RETRY_AFTER, "1");
    }
    if let Error::MethodNotAllowed { allow, .. } = err {
        builder = builder.header(header::ALLOW, allow.as_str());
    }
    builder
        .body(Body::from(
            serde_json::to_string(&error).unwrap_or_default(),
        ))
        .unwrap_or_else(|_| Response::new(Body::Empty))
}
