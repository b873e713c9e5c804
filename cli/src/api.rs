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
    /// A 503 (`throttled`, docs/api.md) is retried after its `Retry-After` when the
    /// request is safe to repeat ([`retryable`]), within [`Retry`]'s bounds.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let retry = Retry::default();
        let safe = retryable(method, path);
        let mut waited = Duration::ZERO;
        let mut attempt = 1;
        loop {
            let (status, retry_after, body) = self.once(method, path, body.as_ref()).await?;
            if status == 503 && safe {
                if let Some(wait) = retry.next_wait(attempt, retry_after.as_deref(), waited) {
                    tokio::time::sleep(wait).await;
                    waited += wait;
                    attempt += 1;
                    continue;
                }
            }
            return answer(method, path, &self.url(path), status, body);
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// One exchange: the status, the `Retry-After` header's value, the body.
    async fn once(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Option<String>, Bytes)> {
        let url = self.url(path);
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
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| Failure::Transport(format!("{url}: {e}")))?
                .to_bytes();
            Ok::<_, Failure>((status, retry_after, body))
        };
        tokio::time::timeout(Duration::from_secs(60), exchange)
            .await
            .map_err(|_| Failure::Transport(format!("{url}: no answer within 60 s")))?
    }
}

/// An answer as the caller's result: 2xx's JSON, else the API's error.
fn answer(method: &str, path: &str, url: &str, status: u16, body: Bytes) -> Result<Value> {
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

/// Whether a request may be sent again after a 503: the idempotent methods (GET,
/// DELETE), and a start, which a 503 puts back as it was (docs/api.md, errors).
/// Other writes (add, clone, stop, connect, rename) are not repeated.
pub fn retryable(method: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    match method {
        "GET" | "HEAD" | "DELETE" => true,
        "POST" => path.ends_with("/start"),
        _ => false,
    }
}

/// A `Retry-After` value in seconds (its HTTP-date form is not used by the API and is
/// read as absent).
pub fn retry_after(value: Option<&str>) -> Option<Duration> {
    value?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// How often and how long 503s are retried.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The most time spent waiting between attempts, in all.
    pub total: Duration,
    /// The wait when the answer has no (readable) `Retry-After`.
    pub default_wait: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            attempts: 3,
            total: Duration::from_secs(10),
            default_wait: Duration::from_secs(1),
        }
    }
}

impl Retry {
    /// The wait before attempt `attempt + 1` after a 503 on attempt `attempt` (1-based),
    /// having waited `waited` so far; `None` when the bounds are reached (the 503 is
    /// then the answer).
    pub fn next_wait(
        &self,
        attempt: u32,
        header: Option<&str>,
        waited: Duration,
    ) -> Option<Duration> {
        if attempt >= self.attempts {
            return None;
        }
        let wait = retry_after(header).unwrap_or(self.default_wait);
        (waited + wait <= self.total).then_some(wait)
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
    fn only_requests_safe_to_repeat_are_retried() {
        assert!(retryable("GET", "/workspaces/ws-1/studios?limit=5"));
        assert!(retryable("DELETE", "/workspaces/ws-1/studios/st-1"));
        assert!(retryable("POST", "/workspaces/ws-1/studios/st-1/start"));
        assert!(!retryable("POST", "/workspaces/ws-1/studios/st-1/stop"));
        assert!(!retryable(
            "POST",
            "/workspaces/ws-1/studios/st-1/stop?force=true"
        ));
        assert!(!retryable(
            "POST",
            "/workspaces/ws-1/studios?autoStart=true"
        ));
        assert!(!retryable("POST", "/workspaces/ws-1/studios/st-1/clone"));
        assert!(!retryable("POST", "/workspaces/ws-1/studios/st-1/connect"));
        assert!(!retryable(
            "PATCH",
            "/workspaces/ws-1/studios/st-1/checkpoints/cp-1"
        ));
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        assert_eq!(retry_after(Some("1")), Some(Duration::from_secs(1)));
        assert_eq!(retry_after(Some(" 7 ")), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(Some("0")), Some(Duration::ZERO));
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(Some("-1")), None);
        assert_eq!(retry_after(Some("")), None);
        assert_eq!(retry_after(None), None);
    }

    #[test]
    fn retries_are_bounded_in_attempts_and_total_wait() {
        let retry = Retry::default();
        let s = Duration::from_secs;
        // Three attempts in all: two waits at most.
        assert_eq!(retry.next_wait(1, Some("1"), s(0)), Some(s(1)));
        assert_eq!(retry.next_wait(2, Some("1"), s(1)), Some(s(1)));
        assert_eq!(retry.next_wait(3, Some("1"), s(2)), None);
        // No (readable) Retry-After: the default second.
        assert_eq!(retry.next_wait(1, None, s(0)), Some(s(1)));
        assert_eq!(retry.next_wait(1, Some("soon"), s(0)), Some(s(1)));
        // A wait beyond the total is not taken.
        assert_eq!(retry.next_wait(1, Some("11"), s(0)), None);
        assert_eq!(retry.next_wait(2, Some("6"), s(5)), None);
        assert_eq!(retry.next_wait(2, Some("5"), s(5)), Some(s(5)));
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
