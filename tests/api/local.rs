//! The local run (infra/run-local.sh) end to end over real HTTP: the API Gateway stand-in
//! routes, checks the bearer token as the JWT authorizer would, and serves the handlers.

use serde_json::{json, Value};
use std::sync::Arc;
use studios_functions::local::{mint_token, Local};
use studios_integration_tests::{TestApp, PLATFORM_ADMIN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "test-secret";

async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
    });
    let server = tokio::spawn(local.run(listener));

    let admin = mint_token(SECRET, PLATFORM_ADMIN, Some("Ada Admin"));
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
