//! The local run (infra/run-local.sh) end to end over real HTTP: the API Gateway stand-in
//! routes, checks the bearer token as the JWT authorizer would, and serves the handlers.

use serde_json::{json, Value};
use std::sync::Arc;
use studios_integration_tests::{TestApp, PLATFORM_ADMIN};
use studios_local::local::{mint_token, Local};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "test-secret";

async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let headers = format!("Host: localhost\r\n{auth}Content-Type: application/json\r\n");
    http_with(addr, method, path, &headers, body).await
}

/// A request with exactly these header lines (each ending in CRLF).
async fn http_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let status: u16 = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_local_api_serves_signed_requests_over_http() {
    let t = TestApp::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let local = Arc::new(Local {
        app: t.app.clone(),
        secret: SECRET.into(),
        batch: None,
        relay: None,
    });
    let server = tokio::spawn(local.run(listener));

    let admin = mint_token(SECRET, PLATFORM_ADMIN, Some("Ada Admin"));
    // As API Gateway's JWT authorizer: a token not valid yet (nbf ahead) is refused.
    let future = {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({"sub": PLATFORM_ADMIN, "iss": "studios-local", "exp": now + 7200, "nbf": now + 3600}),
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let (status, _) = http(addr, "GET", "/workspaces", Some(&future), "").await;
    assert_eq!(status, 401);
    // A known path with another method: 405 naming the allowed ones.
    let (status, body) = http(addr, "DELETE", "/workspaces", Some(&admin), "").await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["error"]["code"], "method_not_allowed");
    let (status, ws) = http(
        addr,
        "POST",
        "/workspaces",
        Some(&admin),
        r#"{"name":"Local"}"#,
    )
    .await;
    assert_eq!(status, 201, "{ws}");
    assert_eq!(
        ws["createdBy"],
        json!({"id": PLATFORM_ADMIN, "name": "Ada Admin"})
    );
    let (status, list) = http(addr, "GET", "/workspaces", Some(&admin), "").await;
    assert_eq!(status, 200);
    assert_eq!(list["workspaces"][0]["id"], ws["id"]);
    let path = format!(
        "/workspaces/{}/studios?search=author%3A%22Ada%20Admin%22&limit=5",
        ws["id"].as_str().unwrap()
    );
    let (status, page) = http(addr, "GET", &path, Some(&admin), "").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["studios"], json!([]));

    // The authorizer rejects missing and forged tokens before any handler runs.
    assert_eq!(http(addr, "GET", "/workspaces", None, "").await.0, 401);
    let forged = mint_token("another-secret", PLATFORM_ADMIN, None);
    assert_eq!(
        http(addr, "GET", "/workspaces", Some(&forged), "").await.0,
        401
    );
    // Unknown routes are 404 with the API's error shape.
    let (status, body) = http(addr, "GET", "/nope", Some(&admin), "").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    server.abort();
}

#[tokio::test]
async fn batch_events_can_be_built_and_replayed_by_hand() {
    use crate::lifecycle::{get, setup, started, studio_with_mount};
    let t = TestApp::new().await;
    let s = setup(&t).await;
    let id = studio_with_mount(&t, &s, "by hand", "s3://data-bucket/h/").await;
    let (_, job) = started(&t, &s.ws, &id).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let local = Arc::new(Local {
        app: t.app.clone(),
        secret: SECRET.into(),
        batch: Some(t.batch.clone()),
        relay: None,
    });
    let server = tokio::spawn(local.run(listener));

    let path = format!(
        "/_local/jobs/{}/event?status=RUNNING",
        job.job_id().unwrap()
    );
    // A web page open in the developer's browser cannot use these: no token, a form's
    // content type, or a rebound DNS name are refused.
    let bob = mint_token(SECRET, "bob", None);
    assert_eq!(http(addr, "GET", &path, None, "").await.0, 401);
    let form =
        format!("Host: localhost\r\nAuthorization: Bearer {bob}\r\nContent-Type: text/plain\r\n");
    assert_eq!(
        http_with(addr, "POST", "/_local/batch-events", &form, "{}")
            .await
            .0,
        415
    );
    let rebound = format!("Host: evil.example.com\r\nAuthorization: Bearer {bob}\r\n");
    assert_eq!(http_with(addr, "GET", &path, &rebound, "").await.0, 421);
    let (status, event) = http(addr, "GET", &path, Some(&bob), "").await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["detail-type"], "Batch Job State Change");
    assert_eq!(event["detail"]["status"], "RUNNING");
    let body = event.to_string();
    let (status, applied) = http(addr, "POST", "/_local/batch-events", Some(&bob), &body).await;
    assert_eq!((status, &applied), (200, &json!({"applied": "Changed"})));
    assert_eq!(get(&t, &s.ws, &id).await["status"], "running");
    // A duplicate is acknowledged and changes nothing.
    let (_, again) = http(addr, "POST", "/_local/batch-events", Some(&bob), &body).await;
    assert!(
        again["applied"].as_str().unwrap().starts_with("Ignored"),
        "{again}"
    );
    assert_eq!(
        http(addr, "POST", "/_local/batch-events", Some(&bob), "{nope")
            .await
            .0,
        400
    );
    assert_eq!(
        http(addr, "GET", "/_local/jobs/nope/event", Some(&bob), "")
            .await
            .0,
        404
    );
    server.abort();
}
