//! The session agents' channel (`POST /agent/report`, docs/api.md "The agent channel"):
//! a session's own credential, not a user's token, is checked; the agent reports ready,
//! progress, activity and failures, and learns whether a stop was requested.

use crate::access::App;
use crate::domain::*;
use crate::error::{Error, Result};
use crate::store::*;

/// SHA-256 (hex) of an agent credential.
pub fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

use studios_protocol::report::MAX_CONNECTED_USERS;
/// The report and the answer are the protocol crate's (the agent sends and reads the
/// same types).
pub use studios_protocol::report::{AgentReply, AgentReportInput, ReportedState};

/// Longest failure reason kept (a status reason is shown in lists).
const MAX_AGENT_REASON: usize = 1000;
/// Longest progress detail kept.
const MAX_DETAIL: usize = 200;
/// Activity is written at most this often (seconds), so reports are mostly reads.
const ACTIVITY_RESOLUTION: i64 = 60;

/// `POST /agent/report`: authenticated by the session's own credential (not a user's
/// token): one read, and a write only when something changed (ready, a failure, or
/// activity at least a minute newer); a relay token, when asked for, is one signature.
pub async fn agent_report(app: &App, token: &str, input: AgentReportInput) -> Result<AgentReply> {
    let state = input.state.as_str();
    if ReportedState::parse(state).is_none() {
        return Err(Error::invalid("state", "must be starting, ready or failed"));
    }
    let activity = match input.last_activity_at.as_deref() {
        None => None,
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| Error::invalid("lastActivityAt", "must be an RFC 3339 time"))?
                .with_timezone(&chrono::Utc),
        ),
    };
    let mut parts = token.splitn(4, '.');
    let (Some(ws), Some(st), Some(attempt), Some(_)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::Unauthenticated);
    };
    use crate::domain::ids::{is_well_formed, IdKind};
    if !is_well_formed(IdKind::Workspace, ws) || !is_well_formed(IdKind::Studio, st) {
        return Err(Error::Unauthenticated);
    }
    if input.connected_users.len() > MAX_CONNECTED_USERS
        || input
            .connected_users
            .iter()
            .any(|u| u.is_empty() || u.len() > 256)
    {
        return Err(Error::invalid(
            "connectedUsers",
            "at most 50 user ids of 1-256 characters",
        ));
    }
    let manifest_sha256 = match input.manifest_sha256.as_deref() {
        None => None,
        Some(h) if studios_protocol::env::is_sha256_hex(h) => Some(h.to_ascii_lowercase()),
        Some(_) => {
            return Err(Error::invalid(
                "manifestSha256",
                "must be a SHA-256 as 64 hex digits",
            ))
        }
    };
    // One read: the studio and the member items of the connected users.
    let mut keys = vec![Key::Studio(st.to_string())];
    keys.extend(input.connected_users.iter().cloned().map(Key::Member));
    let fetched = app.store.fetch(ws, &keys).await?;
    let studio = fetched.studios.get(st).ok_or(Error::Unauthenticated)?;
    let session = studio
        .session
        .as_ref()
        .filter(|s| s.attempt_id == attempt)
        .ok_or(Error::Unauthenticated)?;
    let expected = session.agent_token_hash.as_deref().unwrap_or_default();
    if !constant_time_eq(expected.as_bytes(), token_hash(token).as_bytes()) {
        return Err(Error::Unauthenticated);
    }
    let before = session.agent.clone().unwrap_or_default();
    let mut after = before.clone();
    let now = chrono::Utc::now();
    if state == "ready" && after.ready_at.is_none() {
        after.ready_at = Some(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    }
    // What a starting session is doing; gone once it is ready.
    after.detail = match state {
        "starting" => input
            .detail
            .as_deref()
            .map(|d| {
                d.chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_DETAIL)
                    .collect()
            })
            .or(after.detail),
        "ready" => None,
        _ => after.detail,
    };
    if state == "failed" {
        let reason: String = input
            .reason
            .as_deref()
            .unwrap_or("the session's agent failed")
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_AGENT_REASON)
            .collect();
        after.failure = Some(reason);
    }
    // The checkpoint's manifest as the session wrote it: recorded with the checkpoint
    // when the session ends (docs/security.md, "Checkpoints and restore").
    if manifest_sha256.is_some() {
        after.manifest_sha256 = manifest_sha256;
    }
    if let Some(at) = activity.map(|a| a.min(now)) {
        let newer = match after
            .last_activity_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        {
            Some(old) => at.timestamp() - old.timestamp() >= ACTIVITY_RESOLUTION,
            None => true,
        };
        if newer {
            after.last_activity_at = Some(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
    }
    if after != before {
        app.store.record_agent(studio, attempt, &after).await?;
    }
    let revoked_users = input
        .connected_users
        .iter()
        .filter(|u| {
            !fetched
                .members
                .get(u.as_str())
                .is_some_and(|m| m.role.allows(Permission::Connect))
        })
        .cloned()
        .collect();
    // The relay token: never in the job's environment (where `batch:DescribeJobs`,
    // Batch events and the DLQ would show it), short-lived, and issued only to the live
    // session that authenticated just now (docs/security.md, "The relay").
    let live = matches!(
        studio.status,
        StudioStatus::Starting | StudioStatus::Running
    );
    let relay_token = match (&app.relay, &app.config.relay_tunnel_addr) {
        (Some(signer), Some(_)) if input.relay_token_wanted && live => {
            let claims = studios_protocol::claims::RelayClaims::new(
                studio.id.clone(),
                attempt.to_string(),
                now.timestamp(),
            );
            Some(studios_protocol::claims::sign(signer.as_ref(), &claims).await?)
        }
        _ => None,
    };
    Ok(AgentReply {
        stop_requested: studio.status == StudioStatus::Stopping,
        report_seconds: app.config.agent.report_seconds,
        revoked_users,
        relay_token,
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hashes_are_sha256_hex_and_compared_in_full() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
