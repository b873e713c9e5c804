//! The agent's port: a health endpoint and an HTTP/WebSocket reverse proxy to the IDE, on
//! a loopback port or a unix socket (upstream.rs).
//!
//! WebSockets idle for the keepalive interval (`tunnel::keepalive`, 60 s) get a ping
//! toward the browser (docs/agent.md, "Connect"): the relay's load balancer forgets
//! connections with no bytes for 350 s, and kernels, terminals and remote desktops can
//! stay quiet for longer. The ping (`0x89 0x00`, a control frame without payload) goes
//! between two of the IDE's frames, found by reading the frame headers of what the IDE
//! sends; the browser's pong reaches the IDE, which RFC 6455 (5.5.3) lets ignore an
//! unsolicited pong.

use crate::upstream::Upstream;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderName, HeaderValue, HOST, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub type Body = BoxBody<Bytes, hyper::Error>;

/// Where requests go, and how.
#[derive(Clone, Debug)]
pub struct Target {
    pub upstream: Upstream,
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
/// protocols, bytes are copied both ways until either closes), with the keepalive of
/// `STUDIO_RELAY_PING_SECONDS`.
pub async fn forward(req: Request<Incoming>, target: &Target) -> Response<Body> {
    let every = crate::tunnel::keepalive().unwrap_or(Duration::from_secs(60));
    forward_keeping_alive(req, target, every).await
}

/// `forward`, pinging WebSockets idle for `every`.
pub async fn forward_keeping_alive(
    mut req: Request<Incoming>,
    target: &Target,
    every: Duration,
) -> Response<Body> {
    let stream = match tokio::time::timeout(Duration::from_secs(5), target.upstream.connect()).await
    {
        Ok(Ok(s)) => s,
        _ => return unavailable("the session's IDE is not answering (yet)"),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(pair) => pair,
        Err(_) => return unavailable("the session's IDE refused the connection"),
    };
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let websocket = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
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
        if let Ok(host) = HeaderValue::from_str(&target.upstream.host()) {
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
                    let (mut client, mut ide) = (TokioIo::new(client), TokioIo::new(ide));
                    if websocket {
                        splice_websocket(client, ide, every).await;
                    } else {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut ide).await;
                    }
                }
            });
        }
    }
    // A studio's pages never widen a Service Worker's scope (docs/security.md).
    response.headers_mut().remove("service-worker-allowed");
    response.map(|b| b.boxed())
}

/// A ping frame from a server: FIN, opcode 9, unmasked, no payload (RFC 6455, 5.5.2).
pub const PING_FRAME: [u8; 2] = [0x89, 0x00];

/// Where the frames of one direction of a WebSocket begin and end, from their headers
/// (RFC 6455, 5.2): the 2 first bytes, 2 or 8 more of length, 4 of mask if masked.
#[derive(Default, Debug)]
pub struct Frames {
    header: [u8; 14],
    have: usize,
    payload_left: u64,
}

impl Frames {
    /// Follows `bytes`, the next bytes of the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = (bytes.len() as u64).min(self.payload_left);
                self.payload_left -= n;
                bytes = &bytes[n as usize..];
                continue;
            }
            self.header[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if self.have < 2 {
                continue;
            }
            let length_bytes = match self.header[1] & 0x7f {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            let mask_bytes = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
            if self.have < 2 + length_bytes + mask_bytes {
                continue;
            }
            self.payload_left = match length_bytes {
                0 => u64::from(self.header[1] & 0x7f),
                2 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
                _ => {
                    let mut n = [0u8; 8];
                    n.copy_from_slice(&self.header[2..10]);
                    u64::from_be_bytes(n)
                }
            };
            self.have = 0;
        }
    }

    /// Whether the stream is between two frames.
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.payload_left == 0
    }
}

/// Copies a WebSocket both ways until both ends have closed, pinging the client when
/// no byte has passed either way for `every`.
pub async fn splice_websocket<C, S>(client: C, server: S, every: Duration)
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    use std::sync::atomic::{AtomicU64, Ordering};
    let start = tokio::time::Instant::now();
    let since_start = || start.elapsed().as_millis() as u64;
    // When a byte last passed (ms since `start`), in either direction.
    let last = AtomicU64::new(0);
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut server_read, mut server_write) = tokio::io::split(server);
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if server_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    last.store(since_start(), Ordering::Relaxed);
                }
            }
        }
        let _ = server_write.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut frames = Frames::default();
        loop {
            let idle_at = start + Duration::from_millis(last.load(Ordering::Relaxed)) + every;
            tokio::select! {
                read = server_read.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        frames.feed(&buf[..n]);
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        last.store(since_start(), Ordering::Relaxed);
                    }
                },
                _ = tokio::time::sleep_until(idle_at) => {
                    let quiet = since_start().saturating_sub(last.load(Ordering::Relaxed));
                    if quiet < every.as_millis() as u64 {
                        continue; // the client sent something meanwhile
                    }
                    // Mid-frame (the IDE stalled inside one): the next boundary will do.
                    if frames.at_boundary()
                        && (client_write.write_all(&PING_FRAME).await.is_err()
                            || client_write.flush().await.is_err())
                    {
                        break;
                    }
                    last.store(since_start(), Ordering::Relaxed);
                }
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(up, down);
}

/// Whether the IDE answers HTTP at `path` (any status below 500).
pub async fn probe(upstream: &Upstream, path: &str, headers: &[(HeaderName, HeaderValue)]) -> bool {
    let attempt = async {
        let stream = upstream.connect().await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(conn);
        let mut req = Request::get(path).header(HOST, upstream.host());
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
    use tokio::net::TcpStream;

    /// An "IDE" that echoes the path and the auth header, and upgrades to an echo socket.
    async fn ide(mut req: Request<Incoming>) -> Response<Body> {
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
        let host = req
            .headers()
            .get(HOST)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        full(
            StatusCode::OK,
            "text/plain",
            format!("{host} {} {auth}", req.uri()),
        )
    }

    async fn ide_on_tcp() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, ide));
        Upstream::Tcp(addr)
    }

    /// The same IDE on a unix socket (code-server and Xpra listen on one: ide.rs).
    async fn ide_on_unix(dir: &std::path::Path) -> Upstream {
        let path = dir.join("ide.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|req| async move {
                        Ok::<_, std::convert::Infallible>(ide(req).await)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Upstream::Unix(path)
    }

    async fn requests_and_websockets_reach(upstream: Upstream, host: &str) {
        let target = Target {
            upstream,
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
        assert!(out.ends_with("h /lab?x=1 token secret"), "{out}");
        // HTTP/1.0 without a Host: the IDE gets one.
        let mut s = TcpStream::connect(front).await.unwrap();
        s.write_all(b"GET /connect/st-1/ HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.ends_with(&format!("{host} / token secret")), "{out}");

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
        assert!(probe(&target.upstream, "/", &[]).await);
    }

    #[tokio::test]
    async fn requests_and_websockets_reach_the_ide_with_its_token() {
        let tcp = ide_on_tcp().await;
        let host = tcp.host();
        requests_and_websockets_reach(tcp, &host).await;
    }

    #[tokio::test]
    async fn an_ide_on_a_unix_socket_is_reached_the_same_way() {
        let dir = tempfile::tempdir().unwrap();
        requests_and_websockets_reach(ide_on_unix(dir.path()).await, "localhost").await;
    }

    #[test]
    fn frame_boundaries_follow_the_headers() {
        let mut f = Frames::default();
        assert!(f.at_boundary());
        // A text frame "hi" split across reads: inside until its last byte.
        f.feed(&[0x81]);
        assert!(!f.at_boundary());
        f.feed(&[0x02, b'h']);
        assert!(!f.at_boundary());
        f.feed(b"i");
        assert!(f.at_boundary());
        // 16-bit and 64-bit lengths, a masked frame, an empty one, several in one read.
        let mut bytes = vec![0x82, 126, 0x01, 0x00];
        bytes.extend(vec![7u8; 256]);
        bytes.extend([0x82, 127, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3]);
        bytes.extend([0x81, 0x82, 9, 9, 9, 9, b'o', b'k']);
        bytes.extend([0x8a, 0x00]);
        f.feed(&bytes[..bytes.len() - 3]);
        assert!(!f.at_boundary());
        f.feed(&bytes[bytes.len() - 3..]);
        assert!(f.at_boundary());
        // A 64-bit length is followed for as long as it says.
        f.feed(&[0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0]);
        f.feed(&vec![0u8; 1 << 20]);
        assert!(!f.at_boundary());
    }

    #[tokio::test]
    async fn idle_websockets_get_pings_between_frames_only() {
        let every = Duration::from_millis(200);
        let (browser, client) = tokio::io::duplex(1 << 16);
        let (ide, server) = tokio::io::duplex(1 << 16);
        tokio::spawn(splice_websocket(client, server, every));
        let (mut browser, mut ide) = (browser, ide);
        // The IDE sends a frame, then stays quiet: pings come, one per interval.
        ide.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
        let mut got = [0u8; 4];
        browser.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, &[0x81, 0x02, b'h', b'i']);
        let started = tokio::time::Instant::now();
        for _ in 0..2 {
            let mut ping = [0u8; 2];
            browser.read_exact(&mut ping).await.unwrap();
            assert_eq!(ping, PING_FRAME);
        }
        assert!(started.elapsed() >= every * 2, "{:?}", started.elapsed());
        // The browser's pong goes through to the IDE.
        browser.write_all(&[0x8a, 0x80, 1, 2, 3, 4]).await.unwrap();
        let mut pong = [0u8; 6];
        ide.read_exact(&mut pong).await.unwrap();
        assert_eq!(pong, [0x8a, 0x80, 1, 2, 3, 4]);
        // Inside a frame the IDE stalls in, nothing is injected.
        ide.write_all(&[0x82, 0x04, 1, 2]).await.unwrap();
        let mut part = [0u8; 4];
        browser.read_exact(&mut part).await.unwrap();
        let more = tokio::time::timeout(every * 3, browser.read(&mut [0u8; 1])).await;
        assert!(more.is_err(), "no ping inside a frame");
        ide.write_all(&[3, 4]).await.unwrap();
        let mut rest = [0u8; 4];
        browser.read_exact(&mut rest).await.unwrap();
        assert_eq!(
            rest,
            [3, 4, 0x89, 0x00],
            "then the ping, once the frame is whole"
        );
    }

    #[tokio::test]
    async fn a_missing_ide_is_a_502() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(!probe(&Upstream::Tcp(addr), "/", &[]).await);
        let dir = tempfile::tempdir().unwrap();
        assert!(!probe(&Upstream::Unix(dir.path().join("none.sock")), "/", &[]).await);
    }
}
