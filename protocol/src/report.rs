//! The agent channel (`POST /agent/report`, docs/api.md "The agent channel"): what a
//! session's agent reports and what the control plane answers.

use serde::{Deserialize, Serialize};

/// Most users one report may ask about (they come from one session's cookies).
pub const MAX_CONNECTED_USERS: usize = 50;

/// What an agent reports (`POST /agent/report`, docs/api.md).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentReportInput {
    // `starting`, `ready` or `failed` (ReportedState).
    #[cfg_attr(feature = "openapi", schema(value_type = ReportedState))]
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub last_activity_at: Option<String>,
    // What a starting session is doing (`installing 3 conda packages`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Users holding the session's connect cookie: the answer names those whose role no
    /// longer allows connecting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(
        feature = "openapi",
        schema(max_items = 50, schema_with = connected_users_schema)
    )]
    pub connected_users: Vec<String>,
    /// The session tunnels to the connect relay and needs a (fresh) relay token: the
    /// answer carries one while the session is live (docs/agent.md, "The tunnel").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub relay_token_wanted: bool,
    /// After a save: the SHA-256 (hex) of the `manifest.json` the session wrote for its
    /// checkpoint (`CHECKPOINT_SAVE_URI`). The control plane records it with the
    /// checkpoint, and a restore refuses a manifest that no longer has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub manifest_sha256: Option<String>,
}

#[cfg(feature = "openapi")]
fn connected_users_schema() -> utoipa::openapi::schema::Schema {
    serde_json::from_value(serde_json::json!({
        "type": "array",
        "maxItems": MAX_CONNECTED_USERS,
        "items": {"type": "string", "minLength": 1, "maxLength": 256},
    }))
    .expect("a valid schema")
}

/// What a session's agent reports it is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(rename_all = "lowercase"))]
pub enum ReportedState {
    Starting,
    Ready,
    Failed,
}

impl ReportedState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportedState::Starting => "starting",
            ReportedState::Ready => "ready",
            ReportedState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<ReportedState> {
        [
            ReportedState::Starting,
            ReportedState::Ready,
            ReportedState::Failed,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl AgentReportInput {
    fn new(state: ReportedState) -> AgentReportInput {
        AgentReportInput {
            state: state.as_str().to_string(),
            ..AgentReportInput::default()
        }
    }

    pub fn starting(detail: impl Into<String>) -> AgentReportInput {
        AgentReportInput {
            detail: Some(detail.into()),
            ..AgentReportInput::new(ReportedState::Starting)
        }
    }

    /// Ready, with the last user request seen and the users holding the cookie.
    pub fn ready(last_activity_at: Option<String>, connected_users: Vec<String>) -> Self {
        AgentReportInput {
            last_activity_at,
            connected_users,
            ..AgentReportInput::new(ReportedState::Ready)
        }
    }

    pub fn failed(reason: String) -> AgentReportInput {
        AgentReportInput {
            reason: Some(reason),
            ..AgentReportInput::new(ReportedState::Failed)
        }
    }

    /// This report, also saying the session saved its checkpoint with this manifest.
    pub fn with_manifest(self, manifest_sha256: Option<String>) -> AgentReportInput {
        AgentReportInput {
            manifest_sha256,
            ..self
        }
    }
}

/// The answer: whether a stop was requested, and when to report next.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AgentReply {
    pub stop_requested: bool,
    // Agents read an answer without it (0) as "keep the interval".
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub report_seconds: u64,
    // Of the users reported, those whose role no longer allows connecting.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub revoked_users: Vec<String>,
    // Asked for with `relayTokenWanted`: a relay token for this session, valid
    // `RELAY_TOKEN_SECONDS` (claims::RelayClaims).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_and_leave_out_what_they_do_not_say() {
        let ready = AgentReportInput::ready(Some("2026-01-01T00:00:00Z".into()), vec!["u".into()]);
        let json = serde_json::to_string(&ready).unwrap();
        assert_eq!(
            json,
            r#"{"state":"ready","lastActivityAt":"2026-01-01T00:00:00Z","connectedUsers":["u"]}"#
        );
        assert_eq!(
            serde_json::from_str::<AgentReportInput>(&json).unwrap(),
            ready
        );
        let starting = AgentReportInput::starting("restoring");
        assert_eq!(
            serde_json::to_string(&starting).unwrap(),
            r#"{"state":"starting","detail":"restoring"}"#
        );
        let failed = AgentReportInput::failed("boom".into());
        assert_eq!(
            serde_json::to_string(&failed).unwrap(),
            r#"{"state":"failed","reason":"boom"}"#
        );
        for r in [ready, starting, failed] {
            let back: AgentReportInput =
                serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
            assert_eq!(back, r);
            assert!(ReportedState::parse(&back.state).is_some());
        }
        assert!(serde_json::from_str::<AgentReportInput>(r#"{"state":"ready","x":1}"#).is_err());
        assert!(serde_json::from_str::<AgentReportInput>(r#"{}"#).is_err());
        assert_eq!(ReportedState::parse("READY"), None);
        let saved = AgentReportInput::failed("boom".into()).with_manifest(Some("ab".repeat(32)));
        let json = serde_json::to_string(&saved).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"state":"failed","reason":"boom","manifestSha256":"{}"}}"#,
                "ab".repeat(32)
            )
        );
        assert_eq!(
            serde_json::from_str::<AgentReportInput>(&json).unwrap(),
            saved
        );
    }

    #[test]
    fn replies_round_trip_and_older_ones_still_read() {
        let reply = AgentReply {
            stop_requested: true,
            report_seconds: 30,
            revoked_users: vec!["u".into()],
            relay_token: None,
        };
        let json = serde_json::to_string(&reply).unwrap();
        assert_eq!(
            json,
            r#"{"stopRequested":true,"reportSeconds":30,"revokedUsers":["u"]}"#
        );
        assert_eq!(serde_json::from_str::<AgentReply>(&json).unwrap(), reply);
        let old: AgentReply = serde_json::from_str(r#"{"stopRequested":false}"#).unwrap();
        assert_eq!(old, AgentReply::default());
        assert!(serde_json::from_str::<AgentReply>(r#"{"reportSeconds":1}"#).is_err());
        let with_token = AgentReply {
            relay_token: Some("t".into()),
            ..AgentReply::default()
        };
        let json = serde_json::to_string(&with_token).unwrap();
        assert!(json.ends_with(r#","relayToken":"t"}"#), "{json}");
        assert_eq!(
            serde_json::from_str::<AgentReply>(&json).unwrap(),
            with_token
        );
    }

    #[test]
    fn a_relay_token_is_asked_for_only_when_wanted() {
        let mut report = AgentReportInput::ready(None, vec![]);
        assert_eq!(
            serde_json::to_string(&report).unwrap(),
            r#"{"state":"ready"}"#
        );
        report.relay_token_wanted = true;
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(json, r#"{"state":"ready","relayTokenWanted":true}"#);
        assert_eq!(
            serde_json::from_str::<AgentReportInput>(&json).unwrap(),
            report
        );
    }
}
