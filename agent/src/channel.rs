//! The session's channel to the control plane (`POST {STUDIO_API_URL}/agent/report`,
//! docs/api.md): the agent reports `ready`, its last user activity and why it failed;
//! the answer says whether a stop was requested and when to report next. The session's
//! credential is `STUDIO_AGENT_TOKEN`, minted for this session at its start (the control
//! plane keeps only its SHA-256).

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `starting`, `ready` or `failed`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_activity_at: Option<String>,
    /// What a starting session is doing (`installing 3 conda packages`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Users holding a live connect cookie (the answer says which were revoked).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connected_users: Vec<String>,
}

impl Report {
    fn new(state: &'static str) -> Report {
        Report {
            state,
            reason: None,
            last_activity_at: None,
            detail: None,
            connected_users: vec![],
        }
    }

    pub fn starting(detail: impl Into<String>) -> Report {
        Report {
            detail: Some(detail.into()),
            ..Report::new("starting")
        }
    }

    /// Ready, with the last user request seen and the users holding the cookie.
    pub fn ready(last_activity_at: Option<String>, connected_users: Vec<String>) -> Report {
        Report {
            last_activity_at,
            connected_users,
            ..Report::new("ready")
        }
    }

    pub fn failed(reason: String) -> Report {
        Report {
            reason: Some(reason),
            ..Report::new("failed")
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Reply {
    pub stop_requested: bool,
    #[serde(default)]
    pub report_seconds: Option<u64>,
    /// Of the users reported, those whose role no longer allows connecting.
    #[serde(default)]
    pub revoked_users: Vec<String>,
}

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
