//! The session's outbound tunnel to the connect relay (docs/agent.md, "Connect"):
//! sessions need no inbound port in any networking mode. The agent keeps one control
//! connection to the relay (`HELLO <STUDIO_RELAY_TOKEN>`); for every browser connection
//! the relay asks `OPEN <id>`, and the agent opens a data connection (`DATA <id> <token>`)
//! that it splices with its own port (where links, cookies and the IDE proxy apply).
//! `STUDIO_RELAY_ADDR` is `tls://host:port` (AWS: the relay's load balancer) or
//! `tcp://host:port`.
//!
//! Keepalive: the load balancer forgets a connection idle for 350 s without telling
//! either end, so the agent sends `PING <seconds>` every `STUDIO_RELAY_PING_SECONDS`
//! (60) and the relay answers `PONG`. A relay that has answered once and then stays
//! silent for three intervals is taken for gone: the agent reconnects (backoff from
//! 0.5 s after a tunnel that was up, doubling to 30 s while the relay cannot be
//! reached). A relay that never answers PONG (an older one) gets the pings all the
//! same, which keep the path open, and no deadline.

use std::sync::Arc;
use std::time::Duration;
use studios_protocol::tunnel::{Message, DEFAULT_PING_SECONDS, MAX_LINE, MISSED_PINGS};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The keepalive interval, `STUDIO_RELAY_PING_SECONDS` (whole seconds, default 60): of
/// the tunnel's pings, and of the WebSocket pings toward browsers (proxy.rs). Under the
/// load balancer's 350 s with room for a lost ping or two.
pub fn keepalive() -> Result<Duration, String> {
    match std::env::var("STUDIO_RELAY_PING_SECONDS") {
        Err(_) => Ok(Duration::from_secs(DEFAULT_PING_SECONDS)),
        Ok(v) if v.trim().is_empty() => Ok(Duration::from_secs(DEFAULT_PING_SECONDS)),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(s) if (1..=600).contains(&s) => Ok(Duration::from_secs(s)),
            _ => Err(format!(
                "STUDIO_RELAY_PING_SECONDS '{v}' is not a whole number of seconds from 1 to 600"
            )),
        },
    }
}

#[derive(Clone)]
pub struct Relay {
    host: String,
    port: u16,
    tls: Option<tokio_rustls::TlsConnector>,
    /// The newest relay token (the channel renews it; `None` until the first arrives).
    token: tokio::sync::watch::Receiver<Option<String>>,
    ping: Duration,
}

impl Relay {
    /// The tunnel to `addr` with one fixed `token`, pinging every `keepalive()`.
    pub fn new(addr: &str, token: &str) -> Result<Relay, String> {
        Relay::with_tokens(addr, tokio::sync::watch::channel(Some(token.to_string())).1)
    }

    /// The tunnel to `addr` with the newest token `tokens` holds (docs/agent.md, "The
    /// tunnel": the channel fetches them), pinging every `keepalive()`.
    pub fn with_tokens(
        addr: &str,
        token: tokio::sync::watch::Receiver<Option<String>>,
    ) -> Result<Relay, String> {
        let ping = keepalive()?;
        let (tls, rest) = match addr.split_once("://") {
            Some(("tls", rest)) => (true, rest),
            Some(("tcp", rest)) => (false, rest),
            _ => {
                return Err(format!(
                    "STUDIO_RELAY_ADDR '{addr}' is not tls://host:port or tcp://host:port"
                ))
            }
        };
        let (host, port) = rest
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse().ok()?)))
            .ok_or_else(|| format!("STUDIO_RELAY_ADDR '{addr}' has no port"))?;
        let tls = if tls {
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            let config = tokio_rustls::rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        Ok(Relay {
            host,
            port,
            tls,
            token,
            ping,
        })
    }

    /// The same tunnel with another keepalive interval (tests).
    pub fn with_ping(mut self, every: Duration) -> Relay {
        self.ping = every.max(Duration::from_secs(1));
        self
    }

    async fn connect(&self) -> Result<Box<dyn Stream>, String> {
        let connect = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| format!("relay: {e}"))?;
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                None => Ok::<Box<dyn Stream>, String>(Box::new(tcp)),
                Some(tls) => {
                    let name =
                        tokio_rustls::rustls::pki_types::ServerName::try_from(self.host.clone())
                            .map_err(|e| format!("relay: {e}"))?;
                    let tls = tls
                        .connect(name, tcp)
                        .await
                        .map_err(|e| format!("relay TLS: {e}"))?;
                    Ok(Box::new(tls) as Box<dyn Stream>)
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), connect)
            .await
            .map_err(|_| "relay: connect timed out".to_string())?
    }

    /// Keeps the tunnel up for as long as the session runs (reconnecting with backoff).
    pub async fn run(self, local: std::net::SocketAddr) {
        let first = Duration::from_millis(500);
        let mut backoff = first;
        loop {
            let mut up = false;
            let why = match self.serve_once(local, &mut up).await {
                Err(why) => why,
                Ok(never) => match never {},
            };
            if up {
                backoff = first;
            }
            tracing::warn!(error = %why, retry_ms = backoff.as_millis() as u64, "relay tunnel down; reconnecting");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    /// One control connection, until it fails; `up` is set once the relay has said
    /// anything (it took the tunnel).
    async fn serve_once(
        &self,
        local: std::net::SocketAddr,
        up: &mut bool,
    ) -> Result<std::convert::Infallible, String> {
        let token = self
            .token
            .clone()
            .wait_for(Option::is_some)
            .await
            .map_err(|_| "no relay token: the agent channel is gone".to_string())?
            .clone()
            .unwrap_or_default();
        let (read, mut write) = tokio::io::split(self.connect().await?);
        let mut read = BufReader::new(read);
        let seconds = self.ping.as_secs();
        let hello = Message::Hello { token };
        let ping = Message::Ping {
            seconds: Some(seconds),
        }
        .encode();
        write
            .write_all(format!("{}{ping}", hello.encode()).as_bytes())
            .await
            .map_err(|e| format!("relay: {e}"))?;
        write.flush().await.map_err(|e| format!("relay: {e}"))?;
        let mut ticks = tokio::time::interval_at(Instant::now() + self.ping, self.ping);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut heard, mut answers) = (Instant::now(), false);
        let mut line = Vec::new();
        loop {
            let room = MAX_LINE.saturating_sub(line.len()) as u64;
            tokio::select! {
                n = async { (&mut read).take(room).read_until(b'\n', &mut line).await } => {
                    match n {
                        Ok(0) if room > 0 => return Err("the relay closed the tunnel".into()),
                        Err(e) => return Err(format!("relay: {e}")),
                        Ok(_) if line.ends_with(b"\n") => {}
                        Ok(_) if line.len() >= MAX_LINE => return Err("the relay sent an overlong line".into()),
                        Ok(_) => continue,
                    }
                    heard = Instant::now();
                    *up = true;
                    let text = String::from_utf8_lossy(&line).into_owned();
                    line.clear();
                    match Message::parse(&text) {
                        Some(Message::Pong) => answers = true,
                        Some(Message::Open { id }) => {
                            let relay = self.clone();
                            tokio::spawn(async move {
                                if let Err(e) = relay.open(id, local).await {
                                    tracing::warn!(error = %e, "relay connection not opened");
                                }
                            });
                        }
                        Some(Message::Refused { why }) => {
                            return Err(format!("the relay refused the tunnel: {why}"));
                        }
                        _ => {}
                    }
                }
                _ = ticks.tick() => {
                    let silent = heard.elapsed();
                    if answers && silent > self.ping * MISSED_PINGS {
                        return Err(format!("the relay has not answered for {} s", silent.as_secs()));
                    }
                    write
                        .write_all(ping.as_bytes())
                        .await
                        .map_err(|e| format!("relay: {e}"))?;
                    write.flush().await.map_err(|e| format!("relay: {e}"))?;
                }
            }
        }
    }

    async fn open(&self, id: u64, local: std::net::SocketAddr) -> Result<(), String> {
        let mut data = self.connect().await?;
        let token = self.token.borrow().clone().unwrap_or_default();
        data.write_all(Message::Data { id, token }.encode().as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        data.flush().await.map_err(|e| e.to_string())?;
        let mut agent = TcpStream::connect(local).await.map_err(|e| e.to_string())?;
        let _ = tokio::io::copy_bidirectional(&mut data, &mut agent).await;
        Ok(())
    }
}
