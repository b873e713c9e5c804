//! The request API Gateway (HTTP API, payload 2.0, JWT authorizer) would deliver, built
//! through lambda_http's own event parsing, for the local API stand-in and the tests.

use crate::error::{Error, Missing, Result};
use crate::routes::Action;
use lambda_http::Request;
use serde_json::{json, Value};

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Builds the request API Gateway (HTTP API, payload 2.0, JWT authorizer) would deliver,
/// through lambda_http's own event parsing. Used by the local API stand-in and the tests,
/// so both exercise exactly the production request path (feature `local`).
pub struct ApiGatewayEvent<'a> {
    pub action: Action,
    pub path: &'a str,
    pub path_params: &'a [(String, String)],
    pub query: &'a [(String, String)],
    /// JWT claims as API Gateway passes them (a string map); `None`: no authorizer result.
    pub claims: Option<&'a [(String, String)]>,
    pub body: Option<&'a str>,
    /// The request's Content-Type header, if it had one.
    pub content_type: Option<&'a str>,
    /// The Authorization header, passed on to routes without the JWT authorizer.
    pub authorization: Option<&'a str>,
    pub request_id: &'a str,
}

impl ApiGatewayEvent<'_> {
    pub fn to_json(&self) -> Value {
        let map = |pairs: &[(String, String)]| -> Value {
            pairs
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let route_key = format!("{} {}", self.action.method(), self.action.path());
        let raw_query = self
            .query
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut context = json!({
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {
                "method": self.action.method(),
                "path": self.path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "studios-local",
            },
            "requestId": self.request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 0,
        });
        if let Some(claims) = self.claims {
            context["authorizer"] = json!({ "jwt": { "claims": map(claims), "scopes": null } });
        }
        let mut headers = json!({});
        if let Some(ct) = self.content_type {
            headers["content-type"] = json!(ct);
        }
        if let Some(auth) = self.authorization {
            headers["authorization"] = json!(auth);
        }
        let mut event = json!({
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": self.path,
            "rawQueryString": raw_query,
            "headers": headers,
            "requestContext": context,
            "isBase64Encoded": false,
        });
        if !self.query.is_empty() {
            event["queryStringParameters"] = map(self.query);
        }
        if !self.path_params.is_empty() {
            event["pathParameters"] = map(self.path_params);
        }
        if let Some(body) = self.body {
            event["body"] = json!(body);
        }
        event
    }

    pub fn to_request(&self) -> Result<Request> {
        // lambda_http rebuilds the URI from rawPath and rawQueryString and panics on an
        // invalid one: refuse such paths here instead.
        if self.path.chars().any(|c| !c.is_ascii_graphic()) {
            return Err(Error::NotFound(Missing::Route));
        }
        lambda_http::request::from_str(&self.to_json().to_string()).map_err(Error::internal)
    }
}
