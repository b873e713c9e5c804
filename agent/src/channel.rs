//! The session's channel to the control plane (`POST {STUDIO_API_URL}/agent/report`,
//! docs/api.md): the agent reports `ready`, its last user activity and why it failed;
//! the answer says whether a stop was requested and when to report next. The session's
//! credential is `STUDIO_AGENT_TOKEN`, minted for this session at its start (the control
//! plane keeps only its SHA-256). With a relay, every report asks for the next relay
//! token when the last one is due for renewal, and hands it to the tunnel.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use studios_protocol::claims::{RELAY_TOKEN_REFRESH_SECONDS, RELAY_TOKEN_SECONDS};
use tokio::sync::watch;

/// The report and the answer are the protocol crate's (the control plane reads and
/// writes the same types).
pub use studios_protocol::report::{AgentReply as Reply, AgentReportInput as Report};

pub struct Channel {
    url: String,
    token: String,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    relay: Option<RelayTokens>,
}

/// The relay tokens the channel fetches for the tunnel: the newest, and when to ask for
/// the next (unix seconds; 0: now).
struct RelayTokens {
    newest: watch::Sender<Option<String>>,
    renew_at: AtomicI64,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Channel {
    pub fn new(api_url: &str, token: &str) -> Result<Channel, String> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("no TLS root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Channel {
            url: format!("{}/agent/report", api_url.trim_end_matches('/')),
            token: token.to_string(),
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build(https),
            relay: None,
        })
    }

    /// The same channel, fetching relay tokens: the receiver sees each new one.
    pub fn with_relay_tokens(mut self) -> (Channel, watch::Receiver<Option<String>>) {
        let (newest, receiver) = watch::channel(None);
        self.relay = Some(RelayTokens {
            newest,
            renew_at: AtomicI64::new(0),
        });
        (self, receiver)
    }

    pub async fn report(&self, report: &Report) -> Result<Reply, String> {
        let mut report = report.clone();
        report.relay_token_wanted = self
            .relay
            .as_ref()
            .is_some_and(|r| unix_now() >= r.renew_at.load(Ordering::Relaxed));
        let reply = self.send(&report).await?;
        if let (Some(relay), Some(token)) = (&self.relay, &reply.relay_token) {
            relay.renew_at.store(
                unix_now() + RELAY_TOKEN_SECONDS - RELAY_TOKEN_REFRESH_SECONDS,
                Ordering::Relaxed,
            );
            relay.newest.send_replace(Some(token.clone()));
        }
        Ok(reply)
    }

    async fn send(&self, report: &Report) -> Result<Reply, String> {
        let body = serde_json::to_vec(report).map_err(|e| e.to_string())?;
        let request = hyper::Request::post(&self.url)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("{}: {e}", self.url))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if !status.is_success() {
                return Err(format!(
                    "{} answered {status}: {}",
                    self.url,
                    String::from_utf8_lossy(&body)
                ));
            }
            serde_json::from_slice::<Reply>(&body).map_err(|e| format!("unreadable answer: {e}"))
        };
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .map_err(|_| format!("{}: no answer within 10 s", self.url))?
    }
}
