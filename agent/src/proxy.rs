//! The agent's port: a health endpoint and an HTTP/WebSocket reverse proxy to the IDE on
//! loopback. The local run's `/connect/<studio>/` route forwards here with the same code.

use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderName, HeaderValue, HOST, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

pub type Body = BoxBody<Bytes, hyper::Error>;

/// Where requests go, and how.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// Removed from the front of the path (an IDE that serves at `/`).
    pub strip_prefix: Option<String>,
    /// Set on every forwarded request (the IDE's own token).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

pub fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .body(
            Full::new(body.into())
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap_or_default()
}

fn unavailable(why: &str) -> Response<Body> {
    full(
        StatusCode::BAD_GATEWAY,
        "application/json",
        serde_json::json!({"message": why}).to_string(),
    )
}

/// Forwards `req` to `target` (WebSocket upgrades included: once both sides switch
/// protocols, bytes are copied both ways until either closes).
pub async fn forward(mut req: Request<Incoming>, target: &Target) -> Response<Body> {
    let stream =
        match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(target.addr)).await {
            Ok(Ok(s)) => s,
            _ => return unavailable("the session's IDE is not answering (yet)"),
        };
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(pair) => pair,
        Err(_) => return unavailable("the session's IDE refused the connection"),
    };
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let client_upgrade = req
        .headers()
        .contains_key(UPGRADE)
        .then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let path = match &target.strip_prefix {
        Some(prefix) => match path.strip_prefix(prefix.trim_end_matches('/')) {
            Some("") => "/".to_string(),
            Some(rest) if rest.starts_with('/') => rest.to_string(),
            Some(rest) if rest.starts_with('?') => format!("/{rest}"),
            _ => path,
        },
        None => path,
    };
    parts.uri = match path.parse() {
        Ok(uri) => uri,
        Err(_) => return unavailable("unreadable request path"),
    };
    if !parts.headers.contains_key(HOST) {
        if let Ok(host) = HeaderValue::from_str(&target.addr.to_string()) {
            parts.headers.insert(HOST, host);
        }
    }
    for (name, value) in &target.headers {
        parts.headers.insert(name.clone(), value.clone());
    }
    let mut response = match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(r) => r,
        Err(_) => return unavailable("the session's IDE closed the connection"),
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client) = client_upgrade {
            let ide = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                if let (Ok(client), Ok(ide)) = tokio::join!(client, ide) {
                    let _ = tokio::io::copy_bidirectional(
                        &mut TokioIo::new(client),
                        &mut TokioIo::new(ide),
                    )
                    .await;
                }
            });
        }
    }
    response.map(|b| b.boxed())
}

/// Whether the IDE answers HTTP at `path` (any status below 500).
pub async fn probe(addr: SocketAddr, path: &str, headers: &[(HeaderName, HeaderValue)]) -> bool {
    let attempt = async {
        let stream = TcpStream::connect(addr).await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(conn);
        let mut req = Request::get(path).header(HOST, addr.to_string());
        for (n, v) in headers {
            req = req.header(n, v);
        }
        let req = req.body(Full::new(Bytes::new())).ok()?;
        let res = sender.send_request(req).await.ok()?;
        Some(res.status().as_u16() < 500)
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Serves connections from `listener` with `handle` (HTTP/1.1 with upgrades).
pub async fn serve<F, Fut>(listener: tokio::net::TcpListener, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let handle = handle.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An "IDE" that echoes the path and the auth header, and upgrades to an echo socket.
    async fn ide() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, |mut req: Request<Incoming>| async move {
            if req.headers().contains_key(UPGRADE) {
                let up = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    let mut io = TokioIo::new(up.await.unwrap());
                    let mut buf = [0u8; 5];
                    io.read_exact(&mut buf).await.unwrap();
                    io.write_all(&buf).await.unwrap();
                });
                return Response::builder()
                    .status(StatusCode::SWITCHING_PROTOCOLS)
                    .header("upgrade", "websocket")
                    .header("connection", "upgrade")
                    .body(Full::new(Bytes::new()).map_err(|n| match n {}).boxed())
                    .unwrap();
            }
            let auth = req
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            full(
                StatusCode::OK,
                "text/plain",
                format!("{} {auth}", req.uri()),
            )
        }));
        addr
    }

    #[tokio::test]
    async fn requests_and_websockets_reach_the_ide_with_its_token() {
        let target = Target {
            addr: ide().await,
            strip_prefix: Some("/connect/st-1/".into()),
            headers: vec![(
                HeaderName::from_static("authorization"),
                HeaderValue::from_static("token secret"),
            )],
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = listener.local_addr().unwrap();
        let t = target.clone();
        tokio::spawn(serve(listener, move |req| {
            let t = t.clone();
            async move { forward(req, &t).await }
        }));
        let mut s = TcpStream::connect(front).await.unwrap();
        s.write_all(b"GET /connect/st-1/lab?x=1 HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.ends_with("/lab?x=1 token secret"), "{out}");

        let mut s = TcpStream::connect(front).await.unwrap();
        s.write_all(b"GET /connect/st-1/ws HTTP/1.1\r\nhost: h\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n")
            .await
            .unwrap();
        let mut head = vec![0u8; 4096];
        let n = s.read(&mut head).await.unwrap();
        assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 101"));
        s.write_all(b"hello").await.unwrap();
        let mut echo = [0u8; 5];
        s.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"hello");
        assert!(probe(target.addr, "/", &[]).await);
    }

    #[tokio::test]
    async fn a_missing_ide_is_a_502() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(!probe(addr, "/", &[]).await);
    }
}
