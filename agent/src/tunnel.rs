//! The session's outbound tunnel to the connect relay (docs/agent.md, "Connect"):
//! sessions need no inbound port in any networking mode. The agent keeps one control
//! connection to the relay (`HELLO <STUDIO_RELAY_TOKEN>`); for every browser connection
//! the relay asks `OPEN <id>`, and the agent opens a data connection (`DATA <id> <token>`)
//! that it splices with its own port (where links, cookies and the IDE proxy apply).
//! `STUDIO_RELAY_ADDR` is `tls://host:port` (AWS: the relay's load balancer) or
//! `tcp://host:port`.

use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

#[derive(Clone)]
pub struct Relay {
    host: String,
    port: u16,
    tls: Option<tokio_rustls::TlsConnector>,
    token: String,
}

impl Relay {
    pub fn new(addr: &str, token: &str) -> Result<Relay, String> {
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
            token: token.to_string(),
        })
    }

    async fn connect(&self) -> Result<Box<dyn Stream>, String> {
        let tcp = tokio::time::timeout(
            Duration::from_secs(10),
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| "relay: connect timed out".to_string())?
        .map_err(|e| format!("relay: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(tls) => {
                let name = tokio_rustls::rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| format!("relay: {e}"))?;
                Ok(Box::new(
                    tls.connect(name, tcp)
                        .await
                        .map_err(|e| format!("relay TLS: {e}"))?,
                ))
            }
        }
    }

    /// Keeps the tunnel up for as long as the session runs (reconnecting with backoff).
    pub async fn run(self, local: std::net::SocketAddr) {
        let mut backoff = Duration::from_millis(500);
        loop {
            match self.serve_once(local).await {
                Ok(()) => backoff = Duration::from_millis(500),
                Err(e) => tracing::warn!(error = %e, "relay tunnel down; reconnecting"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    async fn serve_once(&self, local: std::net::SocketAddr) -> Result<(), String> {
        let mut control = BufReader::new(self.connect().await?);
        control
            .write_all(format!("HELLO {}\n", self.token).as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        loop {
            line.clear();
            let n = control
                .read_line(&mut line)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the relay closed the tunnel".into());
            }
            let line = line.trim();
            if let Some(id) = line.strip_prefix("OPEN ") {
                let (relay, id) = (self.clone(), id.to_string());
                tokio::spawn(async move {
                    if let Err(e) = relay.open(&id, local).await {
                        tracing::warn!(error = %e, "relay connection not opened");
                    }
                });
            } else if let Some(why) = line.strip_prefix("REFUSED ") {
                return Err(format!("the relay refused the tunnel: {why}"));
            }
        }
    }

    async fn open(&self, id: &str, local: std::net::SocketAddr) -> Result<(), String> {
        let mut data = self.connect().await?;
        data.write_all(format!("DATA {id} {}\n", self.token).as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut agent = TcpStream::connect(local).await.map_err(|e| e.to_string())?;
        let _ = tokio::io::copy_bidirectional(&mut data, &mut agent).await;
        Ok(())
    }
}
