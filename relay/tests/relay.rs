//! The relay with a real agent tunnel (the agent's `tunnel` module) in front of a
//! stand-in agent port: browsers' requests and WebSockets reach the right session by
//! their `Host`; unknown studios, forged tokens and other sessions' data connections do
//! not; a hand-written tunnel end that keeps its data connection open (or answers more
//! than it was asked) never sees nor answers the browser's next request
//! (docs/security.md, "The relay").

use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;
use studios_agent::proxy::{full, serve};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const DOMAIN: &str = "studios.test";
const ST1: &str = "st-019ac4b0f1e37d21a6b3c0d9e8f7a601";
const ST2: &str = "st-019ac4b0f1e37d21a6b3c0d9e8f7a602";
const ST3: &str = "st-019ac4b0f1e37d21a6b3c0d9e8f7a603";

struct Key(EcdsaKeyPair);

impl Key {
    fn new() -> Key {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Key(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap())
    }
    fn point(&self) -> Vec<u8> {
        self.0.public_key().as_ref().to_vec()
    }
    fn relay_token(&self, st: &str, att: &str) -> String {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
        let claims =
            serde_json::json!({"aud": "relay", "st": st, "att": att, "exp": 4_000_000_000i64});
        let b = URL_SAFE_NO_PAD.encode(claims.to_string());
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let sig = self.0.sign(&rng, format!("{h}.{b}").as_bytes()).unwrap();
        format!("{h}.{b}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

/// A stand-in for a session's agent port: answers `<name> <path> <body>`, upgrades to an
/// echo socket.
async fn agent_port(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        move |mut req: Request<Incoming>| async move {
            if req.headers().contains_key("upgrade") {
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
            let uri = req.uri().to_string();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&body);
            full(
                StatusCode::OK,
                "text/plain",
                format!("{name} {uri} {body}").trim_end().to_string(),
            )
        },
    ));
    addr
}

/// One request for `studio` on a connection of its own, which it asks to close: the
/// whole answer.
async fn get(public: SocketAddr, studio: &str, path: &str) -> String {
    let mut s = TcpStream::connect(public).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {studio}.{DOMAIN}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("the connection is closed after the request asking for it")
        .unwrap();
    out
}

/// One response read off a kept connection: its head and its `Content-Length` body.
async fn response(s: &mut BufReader<TcpStream>) -> (String, String) {
    let read = async {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            assert!(s.read_line(&mut line).await.unwrap() > 0, "closed: {head}");
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no content-length: {head}"));
        let mut body = vec![0u8; length];
        s.read_exact(&mut body).await.unwrap();
        (head, String::from_utf8(body).unwrap())
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("a response")
}

/// The relay on two free ports: (it, public, tunnels).
async fn relay(key: &Key) -> (std::sync::Arc<studios_relay::Relay>, SocketAddr, SocketAddr) {
    let relay = studios_relay::Relay::new(key.point(), DOMAIN);
    let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tunnels = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (public_addr, tunnel_addr) = (public.local_addr().unwrap(), tunnels.local_addr().unwrap());
    tokio::spawn(relay.clone().serve_public(public));
    tokio::spawn(relay.clone().serve_tunnels(tunnels));
    (relay, public_addr, tunnel_addr)
}

/// Studio `studio`'s session, its real tunnel in front of `agent_port(name)`.
async fn session(key: &Key, tunnels: SocketAddr, studio: &str, name: &'static str) {
    let port = agent_port(name).await;
    let t = studios_agent::tunnel::Relay::new(
        &format!("tcp://{tunnels}"),
        &key.relay_token(studio, "a1"),
    )
    .unwrap();
    tokio::spawn(t.run(port));
}

async fn until_up(relay: &studios_relay::Relay, n: usize) {
    for _ in 0..100 {
        if relay.studios().len() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn browsers_reach_the_session_through_its_outbound_tunnel() {
    let key = Key::new();
    let (relay, public_addr, tunnel_addr) = relay(&key).await;

    // Two sessions, each with its tunnel; one impostor with a token of another key.
    session(&key, tunnel_addr, ST1, "one").await;
    session(&key, tunnel_addr, ST2, "two").await;
    let impostor = agent_port("impostor").await;
    let t = studios_agent::tunnel::Relay::new(
        &format!("tcp://{tunnel_addr}"),
        &Key::new().relay_token(ST3, "a1"),
    )
    .unwrap();
    tokio::spawn(t.run(impostor));
    until_up(&relay, 2).await;
    let mut up = relay.studios();
    up.sort();
    assert_eq!(up, [ST1, ST2], "the forged token got no tunnel");

    let out = get(public_addr, ST1, "/lab?x=1").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("one /lab?x=1"), "{out}");
    assert!(get(public_addr, ST2, "/").await.ends_with("two /"));
    let none = get(public_addr, ST3, "/").await;
    assert!(
        none.starts_with("HTTP/1.1 502") && none.contains("not running"),
        "{none}"
    );
    // The old path form routes nowhere: only the Host names a studio.
    let mut s = TcpStream::connect(public_addr).await.unwrap();
    s.write_all(format!("GET /connect/{ST1}/ HTTP/1.1\r\nHost: relay.{DOMAIN}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut old = String::new();
    s.read_to_string(&mut old).await.unwrap();
    assert!(old.starts_with("HTTP/1.1 404"), "{old}");

    // One kept connection: requests framed by length and by chunks, each answered once,
    // each going where its own Host says.
    let mut s = BufReader::new(TcpStream::connect(public_addr).await.unwrap());
    s.get_mut()
        .write_all(
            format!(
                "POST /a HTTP/1.1\r\nHost: {ST1}.{DOMAIN}\r\nContent-Length: 5\r\n\r\nhello\
                 POST /b HTTP/1.1\r\nHost: {ST2}.{DOMAIN}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n\
                 GET /c HTTP/1.1\r\nHost: {ST1}.{DOMAIN}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let (head, body) = response(&mut s).await;
    assert!(
        head.starts_with("HTTP/1.1 200") && !head.to_lowercase().contains("connection: close"),
        "{head}"
    );
    assert_eq!(body, "one /a hello");
    assert_eq!(response(&mut s).await.1, "two /b abcde");
    assert_eq!(response(&mut s).await.1, "one /c");

    // A WebSocket stays open through the tunnel.
    let mut s = TcpStream::connect(public_addr).await.unwrap();
    s.write_all(format!("GET /ws HTTP/1.1\r\nHost: {ST2}.{DOMAIN}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = vec![0u8; 1024];
    let n = s.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 101"));
    s.write_all(b"hello").await.unwrap();
    let mut echo = [0u8; 5];
    s.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"hello");
}

/// A hand-written tunnel end for `studio` (a valid relay token, no agent code): it
/// answers each data connection's request with one response plus a forged second one,
/// keeps the connection open and reports everything it receives after its answer.
async fn fake_session(
    key: &Key,
    tunnels: SocketAddr,
    studio: &str,
) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    let token = key.relay_token(studio, "a1");
    let mut control = BufReader::new(TcpStream::connect(tunnels).await.unwrap());
    control
        .get_mut()
        .write_all(format!("HELLO {token}\n").as_bytes())
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut line = String::new();
        while control.read_line(&mut line).await.unwrap_or(0) > 0 {
            let id = line.trim().strip_prefix("OPEN ").map(str::to_string);
            line.clear();
            let Some(id) = id else { continue };
            let mut data = BufReader::new(TcpStream::connect(tunnels).await.unwrap());
            data.get_mut()
                .write_all(format!("DATA {id} {token}\n").as_bytes())
                .await
                .unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = String::new();
                loop {
                    let mut l = String::new();
                    if data.read_line(&mut l).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push_str(&l);
                    if l == "\r\n" {
                        break;
                    }
                }
                let _ = tx.send(format!("request: {head}"));
                data.get_mut()
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: keep-alive\r\n\r\nfake\
                          HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged",
                    )
                    .await
                    .unwrap();
                // Kept open: whatever comes now is the browser's next request.
                let mut rest = vec![0u8; 4096];
                while let Ok(n) = data.read(&mut rest).await {
                    if n == 0 {
                        break;
                    }
                    let _ = tx.send(format!("after: {}", String::from_utf8_lossy(&rest[..n])));
                }
            });
        }
    });
    rx
}

#[tokio::test]
async fn a_tunnel_end_that_keeps_the_connection_gets_no_second_request() {
    let key = Key::new();
    let (relay, public, tunnels) = relay(&key).await;
    let mut fake = fake_session(&key, tunnels, ST1).await;
    session(&key, tunnels, ST2, "two").await;
    until_up(&relay, 2).await;

    // One browser connection: first to the fake studio, then to another one with its
    // cookie. The paths name the studios too, as the old path-routed relay had them.
    let mut s = BufReader::new(TcpStream::connect(public).await.unwrap());
    s.get_mut()
        .write_all(
            format!("GET /connect/{ST1}/ HTTP/1.1\r\nHost: {ST1}.{DOMAIN}\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let (head, body) = response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "fake");
    let first = fake.recv().await.unwrap();
    assert!(
        first.starts_with(&format!("request: GET /connect/{ST1}/ ")),
        "{first}"
    );
    assert!(first.contains("Connection: close"), "{first}");

    s.get_mut()
        .write_all(
            format!("GET /connect/{ST2}/secret HTTP/1.1\r\nHost: {ST2}.{DOMAIN}\r\nCookie: __Host-studios-session=victim\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    // The second request is answered by its own studio, not by the forged response.
    let (head, body) = response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, format!("two /connect/{ST2}/secret"));
    // And the fake end saw nothing after its answer: its data connection was closed.
    let leaked = tokio::time::timeout(Duration::from_millis(500), fake.recv()).await;
    assert!(
        matches!(leaked, Ok(None) | Err(_)),
        "the fake tunnel end received: {leaked:?}"
    );
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_and_a_freed_place_is_taken_again() {
    let relay = studios_relay::Relay::with_max_connections(Key::new().point(), DOMAIN, 1);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = listener.local_addr().unwrap();
    tokio::spawn(relay.serve_public(listener));
    // The one place: a connection that has not sent its head yet.
    let held = TcpStream::connect(public).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = TcpStream::connect(public).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), over.read(&mut buf))
        .await
        .expect("the connection over the cap is closed at once");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = get(public, ST1, "/").await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
}
