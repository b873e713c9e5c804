//! The connect relay (docs/agent.md, "Connect"; docs/decisions.md): browsers connect to
//! it at `/connect/<studio>/…`; sessions keep an outbound tunnel to it, so no session
//! needs an inbound port on any networking mode (ECS host networking or awsvpc).
//!
//! Tunnel port: a session's agent sends `HELLO <relay token>` (ES256, signed by the
//! control plane: `aud` `relay`, the studio `st`, the session `att`, `exp`) and keeps
//! the connection; the newest session of a studio wins. For each browser connection the
//! relay writes `OPEN <id>` there and waits for the agent's `DATA <id> <token>`
//! connection, then splices the two byte streams (WebSockets included). Public port:
//! the relay reads the first request head to find the studio and forwards it with
//! `Connection: close` (one request per connection, so a connection never crosses
//! studios), except upgrades, which stay open. The agent at the other end checks connect
//! links and cookies; the relay only routes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

const MAX_HEAD: usize = 32 * 1024;

struct Tunnel {
    attempt: String,
    serial: u64,
    open: mpsc::UnboundedSender<u64>,
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
}

impl Relay {
    /// `point`: the control plane's public key (the uncompressed P-256 point).
    pub fn new(point: Vec<u8>) -> Arc<Relay> {
        Arc::new(Relay {
            point,
            tunnels: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        })
    }

    /// The studio and session a relay token names, if it is valid now.
    fn check(&self, token: &str) -> Result<(String, String), &'static str> {
        let claims = studios_agent::auth::verify_token(&self.point, token)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        if claims["aud"] != "relay" {
            return Err("not a relay token");
        }
        if claims["exp"].as_i64().unwrap_or(0) <= now {
            return Err("expired");
        }
        match (claims["st"].as_str(), claims["att"].as_str()) {
            (Some(st), Some(att)) if !st.is_empty() => Ok((st.to_string(), att.to_string())),
            _ => Err("names no session"),
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
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let relay = self.clone();
            tokio::spawn(async move { relay.tunnel(stream).await });
        }
    }

    async fn tunnel(self: Arc<Self>, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            let mut limited = (&mut reader).take(4096);
            limited.read_line(&mut line).await
        })
        .await;
        if !matches!(read, Ok(Ok(n)) if n > 0) {
            return;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["HELLO", token] => match self.check(token) {
                Ok((studio, attempt)) => self.control(reader, studio, attempt).await,
                Err(why) => {
                    let _ = reader
                        .get_mut()
                        .write_all(format!("REFUSED {why}\n").as_bytes())
                        .await;
                }
            },
            ["DATA", id, token] => {
                let (Ok(id), Ok((studio, attempt))) = (id.parse::<u64>(), self.check(token)) else {
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
        reader: BufReader<TcpStream>,
        studio: String,
        attempt: String,
    ) {
        let (tx, mut rx) = mpsc::unbounded_channel();
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
        let mut stream = reader.into_inner();
        let (mut read, mut write) = stream.split();
        let mut buf = [0u8; 64];
        loop {
            tokio::select! {
                id = rx.recv() => match id {
                    Some(id) => if write.write_all(format!("OPEN {id}\n").as_bytes()).await.is_err() { break },
                    None => break,
                },
                n = read.read(&mut buf) => if !matches!(n, Ok(n) if n > 0) { break },
            }
        }
        if let Ok(mut t) = self.tunnels.lock() {
            if t.get(&studio).is_some_and(|t| t.serial == serial) {
                t.remove(&studio);
            }
        }
        tracing::info!(studio, "tunnel down");
    }

    pub async fn serve_public(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let relay = self.clone();
            tokio::spawn(async move { relay.public(stream).await });
        }
    }

    async fn public(self: Arc<Self>, mut user: TcpStream) {
        let _ = user.set_nodelay(true);
        let mut buf = Vec::with_capacity(4096);
        let head_end = tokio::time::timeout(Duration::from_secs(30), async {
            let mut chunk = [0u8; 4096];
            loop {
                if let Some(i) = find(&buf, b"\r\n\r\n") {
                    return Some(i + 4);
                }
                if buf.len() > MAX_HEAD {
                    return None;
                }
                match user.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
        .ok()
        .flatten();
        let Some(head_end) = head_end else { return };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let path = head.split_whitespace().nth(1).unwrap_or_default();
        let studio = path
            .strip_prefix("/connect/")
            .and_then(|r| r.split(['/', '?']).next())
            .unwrap_or_default()
            .to_string();
        let tunnel = self
            .tunnels
            .lock()
            .ok()
            .and_then(|t| t.get(&studio).map(|t| (t.attempt.clone(), t.open.clone())));
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
                    studio: studio.clone(),
                    attempt,
                    data: tx,
                },
            );
        }
        let _ = open.send(id);
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
        let upgrade = head
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("upgrade:"));
        let mut first = if upgrade {
            head.clone().into_bytes()
        } else {
            close_after(&head).into_bytes()
        };
        first.extend_from_slice(&buf[head_end..]);
        if data.write_all(&first).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut user, &mut data).await;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The request head with `Connection: close` instead of any Connection header.
pub fn close_after(head: &str) -> String {
    let mut out = String::with_capacity(head.len() + 20);
    let body = head.trim_end_matches("\r\n");
    for line in body.split("\r\n") {
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

fn reply(status: u16, message: &str) -> Vec<u8> {
    let body = serde_json::json!({ "message": message }).to_string();
    let reason = if status == 502 {
        "Bad Gateway"
    } else {
        "Gateway Timeout"
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
    fn requests_are_forwarded_one_per_connection() {
        let head = "GET /connect/st-1/lab HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n";
        assert_eq!(
            close_after(head),
            "GET /connect/st-1/lab HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        );
    }
}
