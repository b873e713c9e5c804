//! Status events (docs/events.md): what customers route to their alerting. They are derived
//! from the table's change stream, so every status change — by the API, a Batch event
//! or the reconciler — is published at least once, in order per studio, without the
//! writers doing anything extra.

use crate::domain::lifecycle::Actor;
use crate::error::{Error, Result};
pub use crate::store::dynamo::change_from_record;
pub use crate::store::Change;
use async_trait::async_trait;
use serde_json::{json, Value};

pub const SOURCE: &str = "studios";
pub const STATUS_CHANGED: &str = "Studio Status Changed";
pub const CHECKPOINT_RECORDED: &str = "Checkpoint Recorded";

#[derive(Clone, Debug, PartialEq)]
pub struct OutgoingEvent {
    pub detail_type: &'static str,
    pub detail: Value,
}

/// The events a change means: a status change of a studio, or a recorded checkpoint.
/// `eventId` is stable across redeliveries (`<studio>:<version>`), so consumers can
/// deduplicate.
pub fn events_for(change: &Change) -> Option<OutgoingEvent> {
    match change {
        // A studio added and started at once is created `starting`: that is a change too.
        Change::Studio {
            old,
            new: Some(new),
        } if old.as_ref().map(|o| o.status) != Some(new.status)
            && (old.is_some() || new.status != crate::domain::StudioStatus::Stopped) =>
        {
            let actor = match &new.status_actor {
                Some(Actor::User { id, name }) => json!({"type": "user", "id": id, "name": name}),
                Some(Actor::Batch) | None => json!({"type": "system", "name": "aws-batch"}),
                Some(Actor::Reconciler) => json!({"type": "system", "name": "reconciler"}),
            };
            Some(OutgoingEvent {
                detail_type: STATUS_CHANGED,
                detail: json!({
                    "eventId": format!("{}:{}", new.id, new.version),
                    "workspaceId": new.workspace_id,
                    "studioId": new.id,
                    "studioName": new.config.name,
                    "previousStatus": old.as_ref().map(|o| o.status),
                    "status": new.status,
                    "statusReason": new.status_reason,
                    "actor": actor,
                    "checkpointId": new.recorded_checkpoint.as_ref().map(|c| &c.id),
                    "occurredAt": new.status_updated_at,
                }),
            })
        }
        // Records a clone inherits are copies: nothing new was saved.
        Change::CheckpointAdded(cp) if !cp.is_inherited() => Some(OutgoingEvent {
            detail_type: CHECKPOINT_RECORDED,
            detail: json!({
                "eventId": format!("{}:checkpoint", cp.id),
                "workspaceId": cp.workspace_id,
                "studioId": cp.studio_id,
                "checkpointId": cp.id,
                "checkpointName": cp.name,
                "status": cp.status,
                "uri": cp.uri,
                "occurredAt": cp.saved_at,
            }),
        }),
        _ => None,
    }
}

#[async_trait]
pub trait EventSink: Send + Sync {
    /// Publishes all `events` or fails (then the whole batch is retried).
    async fn publish(&self, events: &[OutgoingEvent]) -> Result<()>;
}

pub struct EventBridgeSink {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridgeSink {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        EventBridgeSink {
            client,
            bus: bus.into(),
        }
    }
}

const PUT_ATTEMPTS: u32 = 3;

#[async_trait]
impl EventSink for EventBridgeSink {
    async fn publish(&self, events: &[OutgoingEvent]) -> Result<()> {
        use aws_sdk_eventbridge::types::PutEventsRequestEntry;
        // PutEvents takes 10 entries; order within a studio is kept by sending in order.
        for chunk in events.chunks(10) {
            let mut pending: Vec<PutEventsRequestEntry> = chunk
                .iter()
                .map(|e| {
                    PutEventsRequestEntry::builder()
                        .source(SOURCE)
                        .detail_type(e.detail_type)
                        .detail(e.detail.to_string())
                        .event_bus_name(&self.bus)
                        .build()
                })
                .collect();
            for attempt in 1..=PUT_ATTEMPTS {
                let out = self
                    .client
                    .put_events()
                    .set_entries(Some(pending.clone()))
                    .send()
                    .await
                    .map_err(crate::error::aws)?;
                if out.failed_entry_count() == 0 {
                    break;
                }
                // Entries answer in request order; resend only the failed ones.
                let failed: Vec<PutEventsRequestEntry> = out
                    .entries()
                    .iter()
                    .zip(&pending)
                    .filter(|(result, _)| result.error_code().is_some())
                    .map(|(_, entry)| entry.clone())
                    .collect();
                tracing::warn!(failed = failed.len(), attempt, "PutEvents partially failed");
                if attempt == PUT_ATTEMPTS {
                    return Err(Error::internal(format!(
                        "{} status events could not be published",
                        failed.len()
                    )));
                }
                pending = failed;
                tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(attempt)))
                    .await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::lifecycle::Actor;
    use crate::domain::*;

    fn studio(status: StudioStatus, version: u64) -> Box<Studio> {
        Box::new(Studio {
            id: "st-1".into(),
            workspace_id: "ws-1".into(),
            config: StudioConfig {
                name: "RNA".into(),
                description: String::new(),
                template: Template::Kind {
                    kind: TemplateKind::Jupyter,
                },
                conda_packages: vec![],
                resources: Resources::default(),
                mounts: vec![],
            },
            compute_env: ComputeEnvSnapshot {
                id: "ce-1".into(),
                name: "q".into(),
                region: "us-east-1".into(),
                job_queue: "arn:aws:batch:us-east-1:123456789012:job-queue/q".into(),
                gpu_enabled: false,
                max_cpus: 4,
                max_memory_mib: 8192,
                allowed_write_buckets: vec![],
                work_dir: S3Prefix::parse("s3://work-bucket/").unwrap(),
                job_role_arn: None,
            },
            status,
            status_reason: None,
            status_updated_at: "2026-11-25T00:00:00.000Z".into(),
            author: UserRef {
                id: "u".into(),
                name: "U".into(),
            },
            created_at: String::new(),
            updated_at: String::new(),
            last_started_at: None,
            parent: None,
            connected_users: Default::default(),
            version,
            session: None,
            status_actor: Some(Actor::User {
                id: "u".into(),
                name: "U".into(),
            }),
            latest_checkpoint: None,
            recorded_checkpoint: None,
            checkpoint_count: 0,
            data_origins: vec![],
        })
    }

    #[test]
    fn a_status_change_is_one_event_with_a_stable_id() {
        let change = Change::Studio {
            old: Some(studio(StudioStatus::Stopped, 3)),
            new: Some(studio(StudioStatus::Starting, 4)),
        };
        let e = events_for(&change).unwrap();
        assert_eq!(e.detail_type, STATUS_CHANGED);
        assert_eq!(e.detail["eventId"], "st-1:4");
        assert_eq!(e.detail["previousStatus"], "stopped");
        assert_eq!(e.detail["status"], "starting");
        assert_eq!(e.detail["actor"]["type"], "user");
        assert_eq!(
            events_for(&change).unwrap(),
            e,
            "redelivery: the same event"
        );
    }

    #[test]
    fn changes_without_a_status_change_publish_nothing() {
        let same = Change::Studio {
            old: Some(studio(StudioStatus::Running, 3)),
            new: Some(studio(StudioStatus::Running, 4)),
        };
        assert_eq!(events_for(&same), None);
        let added = Change::Studio {
            old: None,
            new: Some(studio(StudioStatus::Stopped, 1)),
        };
        assert_eq!(events_for(&added), None);
        let deleted = Change::Studio {
            old: Some(studio(StudioStatus::Stopped, 1)),
            new: None,
        };
        assert_eq!(events_for(&deleted), None);
    }

    #[test]
    fn added_and_started_has_no_previous_status() {
        let change = Change::Studio {
            old: None,
            new: Some(studio(StudioStatus::Starting, 1)),
        };
        let e = events_for(&change).unwrap();
        assert_eq!(e.detail["previousStatus"], serde_json::Value::Null);
        assert_eq!(e.detail["status"], "starting");
    }
}
