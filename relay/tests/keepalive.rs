//! Connect through idle cutoffs like the load balancer's (relay/src/cutoff.rs: an idle
//! connection is forgotten without a word, its next bytes reset): the real `studio-relay`
//! process, the agent's tunnel and proxy in front of a stand-in IDE that speaks
//! WebSocket and never pings. A studio idle past three cutoffs opens, its idle WebSocket
//! lives on; the agent comes back after the relay restarts; a relay gone silent is left
//! and a tunnel gone silent is dropped.

use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use studios_agent::proxy::{forward_keeping_alive, full, serve, Target};
use studios_relay::cutoff::IdleCutoff;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};

const CUTOFF: Duration = Duration::from_secs(2);
/// The studio, reached at its own origin under the connect domain.
const ST: &str = "st-019ac4b0f1e37d21a6b3c0d9e8f7a655";
const DOMAIN: &str = "studios.test";
const PING: Duration = Duration::from_secs(1);

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
    fn relay_token(&self, st: &str) -> String {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
        let claims =
            serde_json::json!({"aud": "relay", "st": st, "att": "a1", "exp": 4_000_000_000i64});
        let b = URL_SAFE_NO_PAD.encode(claims.to_string());
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let sig = self.0.sign(&rng, format!("{h}.{b}").as_bytes()).unwrap();
        format!("{h}.{b}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

/// `studio-relay` as a process; killed when dropped.
struct RelayProcess {
    child: std::process::Child,
    public: SocketAddr,
    tunnels: SocketAddr,
}

impl RelayProcess {
    fn start(key: &Key, public: &str, tunnels: &str) -> RelayProcess {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_studio-relay"))
            .env("RELAY_PUBLIC_KEY", STANDARD.encode(key.point()))
            .env("RELAY_PUBLIC_ADDR", public)
            .env("RELAY_TUNNEL_ADDR", tunnels)
            .env("RELAY_CONNECT_DOMAIN", DOMAIN)
            .env_remove("RELAY_TOKEN_KEY_ID")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "studio-relay listening: public A, tunnels B"
        let addr = |name: &str| -> SocketAddr {
            let rest = line.split(name).nth(1).unwrap_or_else(|| panic!("{line}"));
            rest.split([',', ' ', '\n'])
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        RelayProcess {
            public: addr("public "),
            tunnels: addr("tunnels "),
            child,
        }
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebSocket frame: opcode and payload (unmasked).
async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await?;
    let len = match h[1] & 0x7f {
        126 => u64::from(s.read_u16().await?),
        127 => s.read_u64().await?,
        n => u64::from(n),
    };
    let mut mask = [0u8; 4];
    if h[1] & 0x80 != 0 {
        s.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).await?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Ok((h[0] & 0x0f, payload))
}

/// A final frame; browsers mask theirs (RFC 6455, 5.3), servers do not.
async fn write_frame<S: AsyncWrite + Unpin>(s: &mut S, opcode: u8, payload: &[u8], masked: bool) {
    assert!(payload.len() < 126);
    let mut frame = vec![0x80 | opcode, payload.len() as u8];
    if masked {
        frame[1] |= 0x80;
        let mask = [0x12, 0x34, 0x56, 0x78];
        frame.extend(mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        frame.extend(payload);
    }
    s.write_all(&frame).await.unwrap();
}

/// A stand-in IDE: `ide <path>` over HTTP; WebSockets echo text frames, ignore control
/// frames and never ping.
async fn ide() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, |mut req: Request<Incoming>| async move {
        if req.headers().contains_key("upgrade") {
            let up = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let mut io = TokioIo::new(up.await.unwrap());
                while let Ok((opcode, payload)) = read_frame(&mut io).await {
                    if opcode == 1 {
                        write_frame(&mut io, 1, &payload, false).await;
                    }
                }
            });
            return Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("upgrade", "websocket")
                .header("connection", "upgrade")
                .body(Full::new(Bytes::new()).map_err(|n| match n {}).boxed())
                .unwrap();
        }
        full(StatusCode::OK, "text/plain", format!("ide {}", req.uri()))
    }));
    addr
}

/// The agent's port in front of `ide` (its proxy, keeping WebSockets alive every `PING`).
async fn agent_port(ide: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let target = Target {
        upstream: studios_agent::upstream::Upstream::Tcp(ide),
        strip_prefix: None,
        headers: vec![],
    };
    tokio::spawn(serve(listener, move |req| {
        let target = target.clone();
        async move { forward_keeping_alive(req, &target, PING).await }
    }));
    addr
}

async fn cutoff_in_front_of(upstream: SocketAddr) -> (Arc<IdleCutoff>, SocketAddr) {
    let cutoff = IdleCutoff::new(upstream, CUTOFF);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(cutoff.clone().serve(listener));
    (cutoff, addr)
}

/// One request to the studio through `front`: the whole answer (it asks for the close).
async fn get(front: SocketAddr, path: &str) -> String {
    let attempt = async {
        let mut s = TcpStream::connect(front).await.ok()?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {ST}.{DOMAIN}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        Some(out)
    };
    tokio::time::timeout(Duration::from_secs(15), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Polls until `path` answers 200 through `front`; how long that took.
async fn until_open(front: SocketAddr, path: &str) -> Duration {
    let started = Instant::now();
    loop {
        if get(front, path).await.starts_with("HTTP/1.1 200") {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{path} never opened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A browser's WebSocket through `front`: data messages arrive on `messages`; pings
/// are counted and answered with pongs, as browsers do.
struct Browser {
    write: Arc<Mutex<WriteHalf<TcpStream>>>,
    messages: mpsc::UnboundedReceiver<Vec<u8>>,
    pings: Arc<AtomicU32>,
}

impl Browser {
    async fn open(front: SocketAddr, path: &str) -> Browser {
        let mut s = TcpStream::connect(front).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {ST}.{DOMAIN}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(s.read_u8().await.unwrap());
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        let (mut read, write) = tokio::io::split(s);
        let write = Arc::new(Mutex::new(write));
        let (tx, messages) = mpsc::unbounded_channel();
        let pings = Arc::new(AtomicU32::new(0));
        let (writer, count) = (write.clone(), pings.clone());
        tokio::spawn(async move {
            while let Ok((opcode, payload)) = read_frame(&mut read).await {
                match opcode {
                    9 => {
                        count.fetch_add(1, Ordering::Relaxed);
                        write_frame(&mut *writer.lock().await, 10, &payload, true).await;
                    }
                    1 => {
                        let _ = tx.send(payload);
                    }
                    _ => {}
                }
            }
        });
        Browser {
            write,
            messages,
            pings,
        }
    }

    /// Sends `text` and waits for its echo.
    async fn echo(&mut self, text: &str) -> String {
        write_frame(&mut *self.write.lock().await, 1, text.as_bytes(), true).await;
        let got = tokio::time::timeout(Duration::from_secs(10), self.messages.recv()).await;
        String::from_utf8(got.ok().flatten().unwrap_or_default()).unwrap()
    }
}

struct Setup {
    key: Key,
    relay: RelayProcess,
    public: (Arc<IdleCutoff>, SocketAddr),
    tunnels: (Arc<IdleCutoff>, SocketAddr),
}

/// The relay behind cutoffs, and studio `ST`'s agent (pinging every `PING`) tunnelled
/// to it.
async fn setup() -> Setup {
    let key = Key::new();
    let relay = RelayProcess::start(&key, "127.0.0.1:0", "127.0.0.1:0");
    let public = cutoff_in_front_of(relay.public).await;
    let tunnels = cutoff_in_front_of(relay.tunnels).await;
    let port = agent_port(ide().await).await;
    let tunnel =
        studios_agent::tunnel::Relay::new(&format!("tcp://{}", tunnels.1), &key.relay_token(ST))
            .unwrap()
            .with_ping(PING);
    tokio::spawn(tunnel.run(port));
    Setup {
        key,
        relay,
        public,
        tunnels,
    }
}

#[tokio::test]
async fn a_studio_idle_past_three_cutoffs_opens_and_its_idle_websocket_lives() {
    let s = setup().await;
    let front = s.public.1;
    let up = until_open(front, "/").await;
    let mut browser = Browser::open(front, "/kernel").await;
    assert_eq!(browser.echo("before").await, "before");
    // A connection that sends nothing (half a request head) is cut like any other:
    // the cutoff is live on this path.
    let mut quiet = TcpStream::connect(front).await.unwrap();
    quiet.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();

    let idle = CUTOFF * 3 + Duration::from_secs(1);
    tokio::time::sleep(idle).await;

    let opened = Instant::now();
    let page = get(front, "/lab?reset=1").await;
    let open_after_idle = opened.elapsed();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.ends_with("ide /lab?reset=1"), "{page}");
    let echoed = Instant::now();
    assert_eq!(
        browser.echo("after").await,
        "after",
        "the idle WebSocket lives"
    );
    let echo_after_idle = echoed.elapsed();
    let pings = browser.pings.load(Ordering::Relaxed);
    assert!(
        pings >= 3,
        "the idle WebSocket got {pings} pings in {idle:?}"
    );
    quiet.write_all(b"Host: h\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    let cut = quiet.read_to_end(&mut rest).await;
    assert!(
        cut.as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the quiet connection was cut: {cut:?} {rest:?}"
    );
    assert_eq!(s.public.0.forgotten(), 1, "only the quiet connection");
    assert_eq!(s.tunnels.0.forgotten(), 0, "no tunnel connection went idle");
    println!(
        "tunnel up in {up:?}; after {idle:?} idle ({} cutoffs of {CUTOFF:?}): opened in {open_after_idle:?}, WebSocket echo in {echo_after_idle:?}, {pings} pings",
        idle.as_secs() / CUTOFF.as_secs()
    );
}

#[tokio::test]
async fn the_agent_comes_back_when_the_relay_restarts() {
    let mut s = setup().await;
    let front = s.public.1;
    until_open(front, "/").await;
    let (public, tunnels) = (s.relay.public.to_string(), s.relay.tunnels.to_string());
    s.relay.child.kill().unwrap();
    s.relay.child.wait().unwrap();
    // Its tunnel ends with it; a new relay on the same ports (as a replaced task behind
    // the same load balancer). `start` returns once it listens.
    s.relay = RelayProcess::start(&s.key, &public, &tunnels);
    let back = until_open(front, "/").await;
    assert!(back < Duration::from_secs(5), "{back:?}");
    println!("after the relay restarted, the studio opened again in {back:?}");
}

#[tokio::test]
async fn the_agent_leaves_a_relay_gone_silent() {
    // A relay that takes the tunnel, answers one PONG, then says nothing more.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut accepted) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let _ = tx.send(Instant::now());
            let mut s = tokio::io::BufReader::new(s);
            let mut line = String::new();
            s.read_line(&mut line).await.unwrap();
            assert!(line.starts_with("HELLO "), "{line}");
            line.clear();
            s.read_line(&mut line).await.unwrap();
            assert_eq!(line, "PING 1\n");
            s.get_mut().write_all(b"PONG\n").await.unwrap();
            held.push(s);
        }
    });
    let tunnel = studios_agent::tunnel::Relay::new(&format!("tcp://{addr}"), "token")
        .unwrap()
        .with_ping(PING);
    tokio::spawn(tunnel.run(addr));
    let first = accepted.recv().await.unwrap();
    let again = tokio::time::timeout(Duration::from_secs(10), accepted.recv())
        .await
        .expect("the agent reconnects")
        .unwrap();
    let after = again - first;
    // Three silent intervals, the tick that notices, the first backoff (0.5 s).
    assert!(
        after >= PING * 3 && after < PING * 5 + Duration::from_secs(1),
        "{after:?}"
    );
    println!("a silent relay was left, and a new tunnel opened, {after:?} after the last answer");
}

#[tokio::test]
async fn the_relay_drops_a_tunnel_gone_silent() {
    let key = Key::new();
    let relay = studios_relay::Relay::new(key.point(), DOMAIN);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(relay.clone().serve_tunnels(listener));
    let mut agent = tokio::io::BufReader::new(TcpStream::connect(addr).await.unwrap());
    agent
        .get_mut()
        .write_all(format!("HELLO {}\nPING 1\n", key.relay_token("st-9")).as_bytes())
        .await
        .unwrap();
    let mut line = String::new();
    agent.read_line(&mut line).await.unwrap();
    assert_eq!(line, "PONG\n");
    let up = Instant::now();
    assert_eq!(relay.studios(), ["st-9"]);
    while !relay.studios().is_empty() {
        assert!(up.elapsed() < Duration::from_secs(6), "still there");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dropped = up.elapsed();
    assert!(dropped >= Duration::from_secs(3), "{dropped:?}");
    // And the connection is closed.
    line.clear();
    assert_eq!(agent.read_line(&mut line).await.unwrap(), 0);
    println!("a tunnel silent after `PING 1` was dropped after {dropped:?}");
}
