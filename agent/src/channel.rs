//! The session's channel to the control plane (`POST {STUDIO_API_URL}/agent/report`,
//! docs/api.md): the agent reports `ready`, its last user activity and why it failed;
//! the answer says whether a stop was requested and when to report next. The session's
//! credential is `STUDIO_AGENT_TOKEN`, minted for this session at its start (the control
//! plane keeps only its SHA-256).

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use std::time::Duration;

/// The report and the answer are the protocol crate's (the control plane reads and
/// writes the same types).
pub use studios_protocol::report::{AgentReply as Reply, AgentReportInput as Report};

pub struct Channel {
    url: String,
    token: String,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
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
        })
    }

    pub async fn report(&self, report: &Report) -> Result<Reply, String> {
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
