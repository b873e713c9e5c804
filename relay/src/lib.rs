//! The connect relay (docs/agent.md, "Connect"; docs/security.md, "The relay"):
//! browsers reach studio `st-…` at its own origin, `https://st-….<connect domain>/`;
//! sessions keep an outbound tunnel to it, so no session needs an inbound port on any
//! networking mode (ECS host networking or awsvpc).
//!
//! Tunnel port, one line per message: a session's agent sends `HELLO <relay token>`
//! (ES256, signed with the control plane's relay-token key: `aud` `relay`, the studio
//! `st`, the session `att`, `exp`) and keeps the connection; the newest session of a
//! studio wins. It sends `PING <seconds>` every that many seconds and the relay answers
//! `PONG`: the load balancer in between forgets connections idle for 350 s, and each side
//! learns that the other is gone (the relay drops a tunnel silent for three intervals).
//! For each browser request the relay writes `OPEN <id>` there and waits for the
//! agent's `DATA <id> <token>` connection; a bad token is answered `REFUSED <why>`.
//! Agents that never ping are kept as before (no deadline). Public port (`http`): the
//! relay reads every request head itself (httparse, bounded, within
//! [`HEAD_TIMEOUT`]), routes it by its `Host` (exactly `<studio id>.<connect domain>`),
//! sends it with `Connection: close` and its body over a data connection of its own, and
//! passes back exactly one response, framed by its length or chunks; the browser's next
//! request on the connection is read and routed by the relay again. Only a `101` to an
//! upgrade request (WebSockets) splices the two connections. The agent at the other end
//! checks connect links and cookies; the relay only routes. The words and the tokens are
//! the protocol crate's (`studios_protocol::tunnel`, `studios_protocol::claims::RelayClaims`).
//!
//! Both ports bound the relay's connections together (`RELAY_MAX_CONNECTIONS`, default
//! [`DEFAULT_MAX_CONNECTIONS`]): a connection over the cap is closed at once. A failing
//! accept (out of file descriptors: EMFILE) is logged and retried after 10 ms, doubling
//! to 1 s, instead of spinning. Each tunnel queues at most [`OPEN_QUEUE`] connections
//! waiting for the agent's `OPEN`; a browser over that is answered 503.

pub mod cutoff;
pub mod http;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use studios_protocol::claims::RelayClaims;
use studios_protocol::tunnel::{Message, DEFAULT_PING_SECONDS, MAX_LINE};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub use studios_protocol::tunnel::MISSED_PINGS;

/// How long a browser has for a request head (from its connection, or from the first
/// byte of a later request on it).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a browser's connection may stay idle between two requests.
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(60);
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
    /// The connect domain: browsers reach studio `st-…` at `st-….<domain>`.
    domain: String,
    tunnels: Mutex<HashMap<String, Tunnel>>,
    pending: Mutex<HashMap<u64, Pending>>,
    next: AtomicU64,
    connections: Arc<Semaphore>,
    max_connections: usize,
}

impl Relay {
    /// `point`: the public key of the control plane's relay-token key (the uncompressed
    /// P-256 point); `domain`: the connect domain (browsers reach a studio at
    /// `<studio id>.<domain>`).
    pub fn new(point: Vec<u8>, domain: &str) -> Arc<Relay> {
        Relay::with_max_connections(point, domain, DEFAULT_MAX_CONNECTIONS)
    }

    /// The relay with at most `max` connections open at once (at least one).
    pub fn with_max_connections(point: Vec<u8>, domain: &str, max: usize) -> Arc<Relay> {
        let max = max.max(1);
        Arc::new(Relay {
            point,
            domain: domain.trim().trim_matches('.').to_ascii_lowercase(),
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
                // Only the session the connection was asked of may answer it: checked
                // before it is taken, under one lock, so another studio's token can
                // neither claim nor (for a moment) hide it.
                let pending = self.pending.lock().ok().and_then(|mut p| {
                    p.get(&id)
                        .is_some_and(|p| p.studio == studio && p.attempt == attempt)
                        .then(|| p.remove(&id))
                        .flatten()
                });
                if let Some(p) = pending {
                    let _ = p.data.send(reader);
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

    /// One browser connection: request after request, each read and routed by the relay
    /// itself (docs/security.md, "The relay").
    async fn public(self: Arc<Self>, user: TcpStream) {
        let _ = user.set_nodelay(true);
        let (r, mut w) = user.into_split();
        let mut r = BufReader::new(r);
        let mut buf = Vec::new();
        let mut first = true;
        loop {
            if !first {
                // The next request of a kept connection: its first byte within the idle
                // time, then its head within the head time as for the first.
                match tokio::time::timeout(KEEP_ALIVE_IDLE, r.fill_buf()).await {
                    Ok(Ok(b)) if !b.is_empty() => {}
                    _ => return,
                }
            }
            first = false;
            let read = tokio::time::timeout(HEAD_TIMEOUT, http::read_head(&mut r, &mut buf)).await;
            let request = match read {
                Ok(Ok(true)) => http::parse_request(&buf, &self.domain),
                Ok(Ok(false)) => return,
                Ok(Err(431)) => Err((431, "the request head is too large")),
                Ok(Err(_)) => Err((400, "the request is not HTTP/1.1")),
                Err(_) => Err((408, "the request head did not arrive in time")),
            };
            let request = match request {
                Ok(request) => request,
                Err((status, message)) => {
                    let _ = w.write_all(&reply(status, message)).await;
                    return;
                }
            };
            match self.exchange(&mut r, &mut w, request).await {
                Ok(true) => {}
                Ok(false) => return,
                Err((status, message)) => {
                    let _ = w.write_all(&reply(status, message)).await;
                    return;
                }
            }
        }
    }

    /// A data connection from the session of `studio`'s tunnel (`OPEN`, then the agent's
    /// `DATA`).
    async fn open_data(&self, studio: &str) -> Result<BufReader<TcpStream>, (u16, &'static str)> {
        let tunnel = self
            .tunnels
            .lock()
            .ok()
            .and_then(|t| t.get(studio).map(|t| (t.attempt.clone(), t.open.clone())));
        let Some((attempt, open)) = tunnel else {
            return Err((
                502,
                "this studio is not running, or its session is not connected yet",
            ));
        };
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(
                id,
                Pending {
                    studio: studio.to_string(),
                    attempt,
                    data: tx,
                },
            );
        }
        if open.try_send(id).is_err() {
            if let Ok(mut p) = self.pending.lock() {
                p.remove(&id);
            }
            return Err((503, "the session has too many connections opening"));
        }
        let data = tokio::time::timeout(Duration::from_secs(10), rx).await;
        let Ok(Ok(data)) = data else {
            if let Ok(mut p) = self.pending.lock() {
                p.remove(&id);
            }
            return Err((504, "the session did not answer"));
        };
        Ok(data)
    }

    /// Forwards one request (head and body) over a data connection of its own and passes
    /// back one response, framed by the relay; a `101` to an upgrade request splices the
    /// two connections instead. `Ok(true)`: the browser's connection may carry another
    /// request; `Err`: nothing was sent to the browser yet, answer this.
    async fn exchange(
        &self,
        r: &mut BufReader<OwnedReadHalf>,
        w: &mut OwnedWriteHalf,
        request: http::Request,
    ) -> Result<bool, (u16, &'static str)> {
        let data = self.open_data(&request.studio).await?;
        let (data_r, mut data_w) = tokio::io::split(data);
        let mut data_r = BufReader::new(data_r);
        if data_w.write_all(&request.forward).await.is_err() {
            return Err((502, "the session closed the connection"));
        }
        let send = async {
            if request.upgrade {
                // The upgraded stream's bytes follow the 101, not the head.
                return Ok(());
            }
            http::copy_body(r, &mut data_w, request.body).await
        };
        let receive = async {
            let mut head = Vec::new();
            loop {
                match http::read_head(&mut data_r, &mut head).await {
                    Ok(true) => {}
                    _ => return Err((502, "the session did not answer with HTTP")),
                }
                let response = http::parse_response(&head, request.head, request.keep_alive)
                    .map_err(|why| (502, why))?;
                if response.status == 101 && !request.upgrade {
                    return Err((502, "the session switched protocols unasked"));
                }
                // Interim answers (100 Continue) precede the response.
                let last = !(100..200).contains(&response.status) || response.status == 101;
                if w.write_all(&response.forward).await.is_err() {
                    return Ok(None);
                }
                if last {
                    return Ok(Some(response));
                }
            }
        };
        let (sent, response) = tokio::join!(send, receive);
        let Some(response) = response? else {
            return Ok(false);
        };
        if response.status == 101 {
            let (mut r, mut w) = (r, w);
            let (mut data_r, mut data_w) = (data_r, data_w);
            let up = async {
                let _ = tokio::io::copy(&mut r, &mut data_w).await;
                let _ = data_w.shutdown().await;
            };
            let down = async {
                let _ = tokio::io::copy(&mut data_r, &mut w).await;
                let _ = w.shutdown().await;
            };
            tokio::join!(up, down);
            return Ok(false);
        }
        if http::copy_body(&mut data_r, w, response.body)
            .await
            .is_err()
        {
            return Ok(false);
        }
        // The data connection ends here, whatever its other end does next.
        Ok(sent.is_ok() && request.keep_alive && response.body != http::Body::UntilClose)
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

fn reply(status: u16, message: &str) -> Vec<u8> {
    let body = serde_json::json!({ "message": message }).to_string();
    let reason = match status {
        400 => "Bad Request",
        404 => "Not Found",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
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
