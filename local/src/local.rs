//! A local stand-in for API Gateway (HTTP API + JWT authorizer) in front of the same
//! handlers the Lambda functions run. It verifies HS256 bearer tokens signed with a
//! local secret, turns each request into the API Gateway event that production would
//! deliver, and calls `studios_shared::http::handle` with it.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Map, Value};
use std::convert::Infallible;
use std::sync::Arc;
use studios_shared::http::{error_response, handle, Action, ApiGatewayEvent};
use studios_shared::App;
use tokio::net::TcpListener;

/// Signs a development token for `sub` (valid for 12 hours).
pub fn mint_token(secret: &str, sub: &str, name: Option<&str>) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() + 12 * 3600)
        .unwrap_or_default();
    let mut claims = json!({ "sub": sub, "exp": exp, "iss": "studios-local" });
    if let Some(name) = name {
        claims["name"] = json!(name);
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing cannot fail")
}

/// Claims as API Gateway's JWT authorizer passes them: a string map, arrays as "[a b]".
fn claims_as_strings(claims: Map<String, Value>) -> Vec<(String, String)> {
    claims
        .into_iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s,
                Value::Array(items) => format!(
                    "[{}]",
                    items
                        .iter()
                        .map(|i| i
                            .as_str()
                            .map(String::from)
                            .unwrap_or_else(|| i.to_string()))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                other => other.to_string(),
            };
            (k, s)
        })
        .collect()
}

pub struct Local {
    pub app: App,
    pub secret: String,
    /// For `GET /_local/jobs/{jobId}/event` (builds an event from DescribeJobs).
    pub batch: Option<aws_sdk_batch::Client>,
    /// Where browsers connect (the idle cutoff in front of the relay's public port, its
    /// own port as on AWS): `/connect/…` (the old path form) on the API's port answers 404
    /// naming it.
    pub relay: Option<std::net::SocketAddr>,
}

fn json_reply(status: u16, body: Value) -> Reply {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

type Reply = Response<Full<Bytes>>;

fn reply(response: lambda_http::Response<lambda_http::Body>) -> Reply {
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, Full::new(Bytes::copy_from_slice(body.as_ref())))
}

/// Whether a Host header names this machine (any port).
fn loopback_host(host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    matches!(name, "127.0.0.1" | "localhost" | "::1")
}

/// API Gateway answers these itself, before any function runs.
fn gateway_error(status: u16, message: &str) -> Reply {
    let body = json!({ "message": message }).to_string();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

impl Local {
    /// What EventBridge and `sam local invoke --event` do, by hand (any user's token):
    /// `POST /_local/batch-events` delivers any `Batch Job State Change` event JSON to
    /// the real consumer; `GET /_local/jobs/{jobId}/event?status=RUNNING` builds one for
    /// a submitted job (from DescribeJobs), ready to edit, replay, duplicate or reorder.
    async fn local_endpoint(&self, req: Request<Incoming>, path: &str) -> Reply {
        let method = req.method().as_str().to_string();
        let query: Vec<(String, String)> = req.uri().query().map(parse_query).unwrap_or_default();
        if method == "POST" && path == "/_local/batch-events" {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return json_reply(400, json!({"message": "unreadable body"})),
            };
            let event: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return json_reply(400, json!({"message": format!("not JSON: {e}")}));
                }
            };
            return match studios_shared::consumers::on_batch_event(&self.app, &event).await {
                Ok(applied) => json_reply(200, json!({"applied": format!("{applied:?}")})),
                Err(e) => json_reply(500, json!({"message": e.to_string()})),
            };
        }
        let job_id = path
            .strip_prefix("/_local/jobs/")
            .and_then(|rest| rest.strip_suffix("/event"));
        if let (true, Some(job_id), Some(batch)) = (method == "GET", job_id, &self.batch) {
            let status = query
                .iter()
                .find(|(k, _)| k == "status")
                .map(|(_, v)| v.as_str())
                .unwrap_or("RUNNING");
            let job = match batch.describe_jobs().jobs(job_id).send().await {
                Ok(out) => out.jobs().first().cloned(),
                Err(e) => return json_reply(502, json!({"message": e.to_string()})),
            };
            let Some(job) = job else {
                return json_reply(404, json!({"message": format!("no job {job_id}")}));
            };
            let started = matches!(status, "RUNNING" | "SUCCEEDED" | "FAILED");
            let exit = matches!(status, "SUCCEEDED" | "FAILED").then_some(if status == "FAILED" {
                143
            } else {
                0
            });
            let event =
                studios_shared::compute::job_state_change_event(&job, status, started, None, exit);
            return json_reply(200, event);
        }
        json_reply(404, json!({"message": "unknown local endpoint"}))
    }

    /// The JWT authorizer's check: the claims of a valid bearer token.
    fn verified_claims(&self, req: &Request<Incoming>) -> Option<Vec<(String, String)>> {
        let token = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&["studios-local"]);
        // As API Gateway's JWT authorizer: not before `nbf` either.
        validation.validate_nbf = true;
        jsonwebtoken::decode::<Map<String, Value>>(
            token,
            &DecodingKey::from_secret(self.secret.as_bytes()),
            &validation,
        )
        .ok()
        .map(|data| claims_as_strings(data.claims))
    }

    async fn serve(&self, req: Request<Incoming>) -> Reply {
        let request_id = uuid::Uuid::now_v7().to_string();
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        // Only this machine's names: a web page that points its own domain at 127.0.0.1
        // (DNS rebinding) gets nothing back.
        if !loopback_host(req.headers().get("host").and_then(|h| h.to_str().ok())) {
            return gateway_error(421, "Misdirected Request: use 127.0.0.1 or localhost");
        }
        if path.starts_with("/_local/") {
            // A developer's tool, not a web form: a token, and JSON for bodies.
            if self.verified_claims(&req).is_none() {
                return gateway_error(401, "Unauthorized");
            }
            let json = req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().starts_with("application/json"));
            if method == "POST" && !json {
                return gateway_error(415, "Unsupported Media Type: send application/json");
            }
            return self.local_endpoint(req, &path).await;
        }
        let query: Vec<(String, String)> = req.uri().query().map(parse_query).unwrap_or_default();
        let Some((action, params)) = Action::route(&method, &path) else {
            return reply(studios_shared::http::unrouted(&method, &path, &request_id));
        };
        let content_type = req
            .headers()
            .get("content-type")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        // Routes without the JWT authorizer get the Authorization header as sent.
        let open_route = studios_shared::http::UNAUTHORIZED_ROUTES.contains(&action);
        let authorization = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let claims = match self.verified_claims(&req) {
            Some(claims) => claims,
            None if open_route => vec![],
            None => return gateway_error(401, "Unauthorized"),
        };
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return gateway_error(400, "Bad Request"),
        };
        let body = String::from_utf8_lossy(&body).into_owned();
        let event = ApiGatewayEvent {
            action,
            path: &path,
            path_params: &params,
            query: &query,
            claims: (!open_route).then_some(claims.as_slice()),
            body: (!body.is_empty()).then_some(body.as_str()),
            content_type: content_type.as_deref(),
            authorization: open_route.then_some(authorization.as_deref()).flatten(),
            request_id: &request_id,
        };
        match event.to_request() {
            Ok(request) => {
                let response = handle(&self.app, action, request).await;
                tracing::info!(%method, %path, status = response.status().as_u16(), request_id, "request");
                reply(response)
            }
            Err(e) => reply(error_response(&e, &request_id)),
        }
    }

    async fn serve_any(&self, req: Request<Incoming>) -> Reply {
        // As on AWS, the API's domain has no /connect route: connect URLs point at the
        // relay's own port.
        if let (Some(relay), true) = (self.relay, req.uri().path().starts_with("/connect/")) {
            return gateway_error(
                404,
                &format!(
                    "Not Found: studios are reached at the connect relay, each at its own origin http://<studio>.localhost:{}/ (POST …/connect gives a link)",
                    relay.port()
                ),
            );
        }
        self.serve(req).await
    }

    /// Serves HTTP/1.1 on `listener` until the task is dropped.
    pub async fn run(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let this = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.serve_any(req).await) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .with_upgrades()
                    .await
                {
                    tracing::debug!(error = %e, "connection closed");
                }
            });
        }
    }
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_decoded() {
        assert_eq!(
            parse_query("search=author%3A%22Ada+L%22&limit=5&x"),
            vec![
                ("search".to_string(), "author:\"Ada L\"".to_string()),
                ("limit".to_string(), "5".to_string()),
                ("x".to_string(), String::new()),
            ]
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn claims_arrive_as_api_gateway_passes_them() {
        let claims = json!({"sub": "u1", "groups": ["a", "b"], "exp": 5});
        let mut got = claims_as_strings(claims.as_object().unwrap().clone());
        got.sort();
        assert_eq!(
            got,
            vec![
                ("exp".to_string(), "5".to_string()),
                ("groups".to_string(), "[a b]".to_string()),
                ("sub".to_string(), "u1".to_string()),
            ]
        );
    }
}
