//! The connect relay (docs/agent.md, "Connect"; docs/decisions.md): browsers connect to
//! it at `/connect/<studio>/…`; sessions keep an outbound tunnel to it, so no session
//! needs an inbound port on any networking mode (ECS host networking or awsvpc).
//!
//! Tunnel port, one line per message: a session's agent sends `HELLO <relay token>`
//! (ES256, signed with the control plane's relay-token key: `aud` `relay`, the studio
//! `st`, the session `att`, `exp`) and keeps the connection; the newest session of a
//! studio wins. It sends `PING <seconds>` every that many seconds and the relay answers
//! `PONG`: the load balancer in between forgets connections idle for 350 s, and each side
//! learns that the other is gone (the relay drops a tunnel silent for three intervals).
//! For each browser connection the relay writes `OPEN <id>` there and waits for the
//! agent's `DATA <id> <token>` connection, then splices the two byte streams (WebSockets
//! included); a bad token is answered `REFUSED <why>`. Agents that never ping are kept
//! as before (no deadline). Public port: the relay parses the first request head
//! (httparse) to find the studio and forwards it with `Connection: close` (one request
//! per connection, so a connection never crosses studios), except upgrades, which stay
//! open. The agent at the other end checks connect links and cookies; the relay only
//! routes. The words and the tokens are the protocol crate's (`studios_protocol::tunnel`,
//! `studios_protocol::claims::RelayClaims`).
//!
//! Both ports bound the relay's connections together (`RELAY_MAX_CONNECTIONS`, default
//! [`DEFAULT_MAX_CONNECTIONS`]): a connection over the cap is closed at once. A failing
//! accept (out of file descriptors: EMFILE) is logged and retried after 10 ms, doubling
//! to 1 s, instead of spinning. Each tunnel queues at most [`OPEN_QUEUE`] connections
//! waiting for the agent's `OPEN`; a browser over that is answered 503.

pub mod cutoff;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use studios_protocol::claims::RelayClaims;
use studios_protocol::tunnel::{Message, DEFAULT_PING_SECONDS, MAX_LINE};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub use studios_protocol::tunnel::MISSED_PINGS;

const MAX_HEAD: usize = 32 * 1024;
const MAX_HEADERS: usize = 100;
/// Connections (browsers' and sessions' together) when `RELAY_MAX_CONNECTIONS` is not set.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Browser connections one tunnel may have waiting for the agent's data connection.
pub const OPEN_QUEUE: usize = 64;
/// The first and the longest pause after a failed accept.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));
/// The interval announced by `PING <seconds>` is taken within these bounds.
const PING_SECONDS: std::ops::RangeInclusive<u64> = 1..=600;

struct Tunnel {
    attempt: String,
    serial: u64,
    open: mpsc::Sender<u64>,
}

struct Pending {
    studio: String,
    attempt: String,
    data: oneshot::Sender<BufReader<TcpStream>>,
}

pub struct Relay {
    point: Vec<u8>,
    tunnels: Mutex<HashMap<String, Tunnel>>,
    pending: Mutex<HashMap<u64, Pending>>,
    next: AtomicU64,
    connections: Arc<Semaphore>,
    max_connections: usize,
}

impl Relay {
    /// `point`: the public key of the control plane's relay-token key (the uncompressed
    /// P-256 point).
    pub fn new(point: Vec<u8>) -> Arc<Relay> {
        Relay::with_max_connections(point, DEFAULT_MAX_CONNECTIONS)
    }

    /// The relay with at most `max` connections open at once (at least one).
    pub fn with_max_connections(point: Vec<u8>, max: usize) -> Arc<Relay> {
        let max = max.max(1);
        Arc::new(Relay {
            point,
            tunnels: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            connections: Arc::new(Semaphore::new(max)),
            max_connections: max,
        })
    }

    /// The studio and session a relay token names, if it is valid now.
    fn check(&self, token: &str) -> Result<(String, String), &'static str> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        RelayClaims::verify(&self.point, token, now)
    }

    /// The next connection `listener` accepts within the cap (over it: closed at once),
    /// backing off after failed accepts (EMFILE and the like) instead of spinning.
    async fn accept(
        &self,
        listener: &TcpListener,
        port: &'static str,
    ) -> (TcpStream, OwnedSemaphorePermit) {
        let mut pause = ACCEPT_BACKOFF.0;
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => match self.connections.clone().try_acquire_owned() {
                    Ok(permit) => return (stream, permit),
                    Err(_) => {
                        tracing::warn!(port, %peer, max = self.max_connections, "connection closed: the relay is at its connection cap");
                        drop(stream);
                    }
                },
                Err(e) => {
                    tracing::warn!(port, error = %e, retry_ms = pause.as_millis() as u64, "accept failed");
                    tokio::time::sleep(pause).await;
                    pause = next_pause(pause);
                }
            }
        }
    }

    /// Studios with a tunnel now.
    pub fn studios(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .tunnels
            .lock()
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    pub async fn serve_tunnels(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, permit) = self.accept(&listener, "tunnels").await;
            let relay = self.clone();
            tokio::spawn(async move {
                relay.tunnel(stream).await;
                drop(permit);
            });
        }
    }

    async fn tunnel(self: Arc<Self>, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), read_line(&mut reader, &mut line)).await;
        if !matches!(read, Ok(Ok(true))) {
            return;
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        match Message::parse(&line) {
            Some(Message::Hello { token }) => match self.check(&token) {
                Ok((studio, attempt)) => self.control(reader, studio, attempt).await,
                Err(why) => {
                    let refused = Message::Refused { why: why.into() }.encode();
                    let _ = reader.get_mut().write_all(refused.as_bytes()).await;
                }
            },
            Some(Message::Data { id, token }) => {
                let Ok((studio, attempt)) = self.check(&token) else {
                    return;
                };
                let pending = self.pending.lock().ok().and_then(|mut p| p.remove(&id));
                match pending {
                    // Only the session the connection was asked of may answer it.
                    Some(p) if p.studio == studio && p.attempt == attempt => {
                        let _ = p.data.send(reader);
                    }
                    Some(p) => {
                        if let Ok(mut all) = self.pending.lock() {
                            all.insert(id, p);
                        }
                    }
                    None => {}
                }
            }
            _ => {}
        }
    }

    async fn control(
        self: Arc<Self>,
        mut reader: BufReader<TcpStream>,
        studio: String,
        attempt: String,
    ) {
        let (tx, mut rx) = mpsc::channel(OPEN_QUEUE);
        let serial = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut t) = self.tunnels.lock() {
            t.insert(
                studio.clone(),
                Tunnel {
                    attempt: attempt.clone(),
                    serial,
                    open: tx,
                },
            );
        }
        tracing::info!(studio, attempt, "tunnel up");
        // Set by the agent's first PING: until then (agents that never ping) no deadline.
        let mut deadline: Option<Instant> = None;
        let mut line = Vec::new();
        let why = loop {
            let silent = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                id = rx.recv() => match id {
                    Some(id) => {
                        if reader.get_mut().write_all(Message::Open { id }.encode().as_bytes()).await.is_err() {
                            break "the tunnel failed";
                        }
                    }
                    None => break "replaced",
                },
                read = read_line(&mut reader, &mut line) => match read {
                    Ok(true) => {
                        if let Some(every) = ping_interval(&line) {
                            deadline = Some(Instant::now() + every * MISSED_PINGS);
                            if reader.get_mut().write_all(Message::Pong.encode().as_bytes()).await.is_err() {
                                break "the tunnel failed";
                            }
                        }
                        line.clear();
                    }
                    Ok(false) => {}
                    Err(why) => break why,
                },
                _ = silent => break "no ping within three intervals",
            }
        };
        if let Ok(mut t) = self.tunnels.lock() {
            if t.get(&studio).is_some_and(|t| t.serial == serial) {
                t.remove(&studio);
            }
        }
        tracing::info!(studio, why, "tunnel down");
    }

    pub async fn serve_public(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, permit) = self.accept(&listener, "public").await;
            let relay = self.clone();
            tokio::spawn(async move {
                relay.public(stream).await;
                drop(permit);
            });
        }
    }

    async fn public(self: Arc<Self>, mut user: TcpStream) {
        let _ = user.set_nodelay(true);
        let mut buf = Vec::with_capacity(4096);
        let head = tokio::time::timeout(Duration::from_secs(30), async {
            let mut chunk = [0u8; 4096];
            loop {
                match parse_head(&buf) {
                    Ok(Some(head)) => return Ok(head),
                    Ok(None) => {}
                    Err(status) => return Err(Some(status)),
                }
                match user.read(&mut chunk).await {
                    Ok(0) | Err(_) => return Err(None),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
        .unwrap_or(Err(None));
        let head = match head {
            Ok(head) => head,
            Err(Some(status)) => {
                let message = if status == 431 {
                    "the request head is too large"
                } else {
                    "the request is not HTTP/1.1"
                };
                let _ = user.write_all(&reply(status, message)).await;
                return;
            }
            Err(None) => return,
        };
        let tunnel = self.tunnels.lock().ok().and_then(|t| {
            t.get(&head.studio)
                .map(|t| (t.attempt.clone(), t.open.clone()))
        });
        let Some((attempt, open)) = tunnel else {
            let _ = user
                .write_all(&reply(
                    502,
                    "this studio is not running, or its session is not connected yet",
                ))
                .await;
            return;
        };
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(
                id,
                Pending {
                    studio: head.studio.clone(),
                    attempt,
                    data: tx,
                },
            );
        }
        if open.try_send(id).is_err() {
            if let Ok(mut p) = self.pending.lock() {
                p.remove(&id);
            }
            let _ = user
                .write_all(&reply(503, "the session has too many connections opening"))
                .await;
            return;
        }
        let data = tokio::time::timeout(Duration::from_secs(10), rx).await;
        let Ok(Ok(data)) = data else {
            if let Ok(mut p) = self.pending.lock() {
                p.remove(&id);
            }
            let _ = user
                .write_all(&reply(504, "the session did not answer"))
                .await;
            return;
        };
        let mut data = data.into_inner();
        let mut first = head.forward;
        first.extend_from_slice(&buf[head.len..]);
        if data.write_all(&first).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut user, &mut data).await;
    }
}

/// Reads one line into `line` (kept across calls: cancel-safe in `select!`). `Ok(true)`:
/// `line` holds a whole line; `Ok(false)`: not yet.
async fn read_line(
    reader: &mut BufReader<TcpStream>,
    line: &mut Vec<u8>,
) -> Result<bool, &'static str> {
    let room = MAX_LINE.saturating_sub(line.len()) as u64;
    match reader.take(room).read_until(b'\n', line).await {
        Ok(0) if room > 0 => Err("the agent closed the tunnel"),
        Err(_) => Err("the tunnel failed"),
        Ok(_) if line.ends_with(b"\n") => Ok(true),
        Ok(_) if line.len() >= MAX_LINE => Err("an overlong line"),
        Ok(_) => Ok(false),
    }
}

/// The pause after `pause` between failed accepts: doubling, at most 1 s.
fn next_pause(pause: Duration) -> Duration {
    (pause * 2).min(ACCEPT_BACKOFF.1)
}

/// The interval a `PING <seconds>` line announces (a bare `PING`: 60 s).
fn ping_interval(line: &[u8]) -> Option<Duration> {
    let Message::Ping { seconds } = Message::parse(std::str::from_utf8(line).ok()?)? else {
        return None;
    };
    let seconds = seconds.unwrap_or(DEFAULT_PING_SECONDS);
    Some(Duration::from_secs(
        seconds.clamp(*PING_SECONDS.start(), *PING_SECONDS.end()),
    ))
}

/// A browser's first request head, as the relay forwards it.
#[derive(Debug, PartialEq)]
pub struct Head {
    /// Its length in the bytes read (what follows is the body, or the upgraded stream).
    pub len: usize,
    /// The studio of `/connect/<studio>/…` (empty for any other path).
    pub studio: String,
    /// What is sent to the session: the head as read for an upgrade (it stays open),
    /// else the head with `Connection: close` instead of any Connection header.
    pub forward: Vec<u8>,
}

/// The request head at the start of `buf`: `Ok(None)` while incomplete, `Err(status)`
/// (400, 431) if it is not one.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, u16> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(431),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(431),
        Err(_) => return Err(400),
    };
    if len > MAX_HEAD {
        return Err(431);
    }
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err(400);
    };
    let studio = path
        .strip_prefix("/connect/")
        .and_then(|r| r.split(['/', '?']).next())
        .unwrap_or_default()
        .to_string();
    let tokens = |name: &str| {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .flat_map(|h| h.value.split(|&b| b == b','))
            .map(|t| String::from_utf8_lossy(t).trim().to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    let upgrade =
        !tokens("upgrade").is_empty() && tokens("connection").iter().any(|t| t == "upgrade");
    let forward = if upgrade {
        buf[..len].to_vec()
    } else {
        let mut out = format!("{method} {path} HTTP/1.{version}\r\n").into_bytes();
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("connection") {
                continue;
            }
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out
    };
    Ok(Some(Head {
        len,
        studio,
        forward,
    }))
}

fn reply(status: u16, message: &str) -> Vec<u8> {
    let body = serde_json::json!({ "message": message }).to_string();
    let reason = match status {
        400 => "Bad Request",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Gateway Timeout",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(raw: &str) -> (String, String) {
        let head = parse_head(raw.as_bytes()).unwrap().unwrap();
        assert_eq!(head.len, raw.find("\r\n\r\n").unwrap() + 4);
        (head.studio, String::from_utf8(head.forward).unwrap())
    }

    #[test]
    fn requests_are_forwarded_one_per_connection() {
        let (studio, head) = forwarded(
            "GET /connect/st-1/lab?x=1 HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\nbody",
        );
        assert_eq!(studio, "st-1");
        assert_eq!(
            head,
            "GET /connect/st-1/lab?x=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        );
        // Header names in any case; an Upgrade header without `Connection: upgrade` is
        // no upgrade.
        let (_, head) = forwarded(
            "POST /connect/st-2?a HTTP/1.0\r\nCONNECTION: x\r\nUpgrade: websocket\r\n\r\n",
        );
        assert_eq!(
            head,
            "POST /connect/st-2?a HTTP/1.0\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn upgrades_stay_open_as_sent() {
        let raw = "GET /connect/st-1/ws HTTP/1.1\r\nhost: h\r\nupgrade: websocket\r\nconnection: keep-alive, Upgrade\r\n\r\n";
        assert_eq!(forwarded(raw), ("st-1".to_string(), raw.to_string()));
    }

    #[test]
    fn heads_are_parsed_not_scanned() {
        assert_eq!(
            parse_head(b"GET /connect/st-1/ HTTP/1.1\r\nHost: h\r\n"),
            Ok(None)
        );
        assert_eq!(
            parse_head(b"GET /connect/st-1/ HTTP/1.1\r\nHo st: h\r\n\r\n"),
            Err(400)
        );
        assert_eq!(
            parse_head(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
            Err(400)
        );
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "a: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(parse_head(many.as_bytes()), Err(431));
        let long = format!("GET / HTTP/1.1\r\nx: {}", "a".repeat(MAX_HEAD + 1));
        assert_eq!(parse_head(long.as_bytes()), Err(431));
        let (studio, _) = forwarded("GET /elsewhere HTTP/1.1\r\n\r\n");
        assert_eq!(studio, "");
    }

    #[test]
    fn pings_announce_their_interval() {
        assert_eq!(ping_interval(b"PING 5\n"), Some(Duration::from_secs(5)));
        assert_eq!(ping_interval(b"PING\n"), Some(Duration::from_secs(60)));
        assert_eq!(ping_interval(b"PING 0\n"), Some(Duration::from_secs(1)));
        assert_eq!(
            ping_interval(b"PING 99999\n"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(ping_interval(b"PONG\n"), None);
        assert_eq!(ping_interval(b"PINGS 5\n"), None);
    }

    #[test]
    fn failed_accepts_back_off_doubling_to_a_second() {
        let mut pause = ACCEPT_BACKOFF.0;
        let mut pauses = vec![pause];
        for _ in 0..9 {
            pause = next_pause(pause);
            pauses.push(pause);
        }
        let ms: Vec<u128> = pauses.iter().map(|p| p.as_millis()).collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
    }
}
