//! The HTTP API (docs/api.md, docs/openapi.json) over HTTPS or HTTP: JSON in, JSON out,
//! errors as the API words them.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;
use std::time::Duration;

/// Why a command failed; each kind has its exit code (docs/cli.md).
#[derive(Debug)]
pub enum Failure {
    /// The API refused: its status, error code and message.
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The API could not be reached, or answered something that is not the API.
    Transport(String),
    /// Bad input or setup on this side (no token, unknown studio name, …).
    Usage(String),
    /// A `--wait` ended in a state other than the one waited for.
    Outcome(String),
    /// A `--wait` ran out of time.
    Timeout(String),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Api { status: 401, .. } => 5,
            Failure::Api { status: 409, .. } => 6,
            Failure::Api { .. } | Failure::Transport(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Outcome(_) => 3,
            Failure::Timeout(_) => 4,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Failure::Api { status: 401, .. } => {
                "not authenticated: the token is missing, invalid or expired (run `studios login`)"
                    .to_string()
            }
            Failure::Api { code, message, .. } => format!("{message} ({code})"),
            Failure::Transport(m)
            | Failure::Usage(m)
            | Failure::Outcome(m)
            | Failure::Timeout(m) => m.clone(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

pub struct Api {
    base: String,
    token: String,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Api {
    pub fn new(base: &str, token: &str) -> Result<Api> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| Failure::Transport(format!("no TLS root certificates: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Api {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build(https),
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> Result<Value> {
        self.call("POST", path, body).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Result<Value> {
        self.call("PATCH", path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value> {
        self.call("DELETE", path, None).await
    }

    /// One request; a non-2xx answer becomes `Failure::Api` with the API's own words.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("Bearer {}", self.token))
            .header(
                "user-agent",
                concat!("studios-cli/", env!("CARGO_PKG_VERSION")),
            );
        let bytes = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(bytes))
            .map_err(|e| Failure::Usage(format!("{url}: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| Failure::Transport(format!("cannot reach {url}: {e}")))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| Failure::Transport(format!("{url}: {e}")))?
                .to_bytes();
            Ok::<_, Failure>((status, body))
        };
        let (status, body) = tokio::time::timeout(Duration::from_secs(60), exchange)
            .await
            .map_err(|_| Failure::Transport(format!("{url}: no answer within 60 s")))??;
        let value: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).map_err(|_| {
                Failure::Transport(format!(
                    "{url} answered {status} with something that is not the API's JSON: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ))
            })?
        };
        if (200..300).contains(&status) {
            return Ok(value);
        }
        // `{"error": {code, message}}`, or API Gateway's own `{"message": …}`.
        let error = &value["error"];
        let text = |v: &Value| v.as_str().map(str::to_string);
        Err(Failure::Api {
            status,
            code: text(&error["code"]).unwrap_or_else(|| format!("http_{status}")),
            message: text(&error["message"])
                .or_else(|| text(&value["message"]))
                .unwrap_or_else(|| format!("{method} {path} answered {status}")),
        })
    }
}

/// What a path segment or query value keeps as is: RFC 3986's unreserved characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A path segment (or a query value), percent-encoded.
pub fn segment(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("ws-1"), "ws-1");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(segment("ü"), "%C3%BC");
    }

    #[test]
    fn exit_codes_by_outcome() {
        let api = |status| Failure::Api {
            status,
            code: "x".into(),
            message: "m".into(),
        };
        assert_eq!(api(401).exit_code(), 5);
        assert_eq!(api(409).exit_code(), 6);
        assert_eq!(api(404).exit_code(), 1);
        assert_eq!(Failure::Outcome("e".into()).exit_code(), 3);
        assert_eq!(Failure::Timeout("t".into()).exit_code(), 4);
        assert_eq!(api(409).message(), "m (x)");
        assert!(api(401).message().contains("studios login"));
    }
}
