//! The relay with a real agent tunnel (the agent's `tunnel` module) in front of a
//! stand-in agent port: browsers' requests and WebSockets reach the right session;
//! unknown studios, forged tokens and other sessions' data connections do not.

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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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

/// A stand-in for a session's agent port: echoes the path, upgrades to an echo socket.
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
            full(
                StatusCode::OK,
                "text/plain",
                format!("{name} {}", req.uri()),
            )
        },
    ));
    addr
}

async fn get(public: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(public).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: studios.example\r\nConnection: keep-alive\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("the connection is closed after one request")
        .unwrap();
    out
}

#[tokio::test]
async fn browsers_reach_the_session_through_its_outbound_tunnel() {
    let key = Key::new();
    let relay = studios_relay::Relay::new(key.point());
    let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tunnels = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (public_addr, tunnel_addr) = (public.local_addr().unwrap(), tunnels.local_addr().unwrap());
    tokio::spawn(relay.clone().serve_public(public));
    tokio::spawn(relay.clone().serve_tunnels(tunnels));

    // Two sessions, each with its tunnel; one impostor with a token of another key.
    for (studio, name) in [("st-1", "one"), ("st-2", "two")] {
        let port = agent_port(name).await;
        let t = studios_agent::tunnel::Relay::new(
            &format!("tcp://{tunnel_addr}"),
            &key.relay_token(studio, "a1"),
        )
        .unwrap();
        tokio::spawn(t.run(port));
    }
    let impostor = agent_port("impostor").await;
    let t = studios_agent::tunnel::Relay::new(
        &format!("tcp://{tunnel_addr}"),
        &Key::new().relay_token("st-3", "a1"),
    )
    .unwrap();
    tokio::spawn(t.run(impostor));
    for _ in 0..100 {
        if relay.studios().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        relay.studios(),
        ["st-1", "st-2"],
        "the forged token got no tunnel"
    );

    let out = get(public_addr, "/connect/st-1/lab?x=1").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("one /connect/st-1/lab?x=1"), "{out}");
    assert!(get(public_addr, "/connect/st-2/")
        .await
        .ends_with("two /connect/st-2/"));
    let none = get(public_addr, "/connect/st-3/").await;
    assert!(
        none.starts_with("HTTP/1.1 502") && none.contains("not running"),
        "{none}"
    );

    // A WebSocket stays open through the tunnel.
    let mut s = TcpStream::connect(public_addr).await.unwrap();
    s.write_all(b"GET /connect/st-2/ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
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

#[tokio::test]
async fn connections_over_the_cap_are_closed_and_a_freed_place_is_taken_again() {
    let relay = studios_relay::Relay::with_max_connections(Key::new().point(), 1);
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
    let answer = get(public, "/connect/st-1/").await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
}
