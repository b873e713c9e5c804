//! Deleting checkpoint data that no studio depends on any more, off the table stream
//! (docs/storage.md). The stream consumer only enqueues a task per released prefix; a
//! worker deletes one page (at most 1,000 objects) per task and enqueues the rest (the
//! key to continue after), so a prefix of any size goes in bounded, resumable steps with
//! their own retries and dead-letter queue, and a slow or refused deletion never holds
//! back the stream (and so other workspaces' status events).

use crate::domain::S3Prefix;
use crate::error::{Error, Result};
use crate::objects::Objects;
use crate::App;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Handler name of the clean-up worker's function (template.yaml uses it).
pub const CLEANUP_HANDLER: &str = "data-cleanup";

/// One step of deleting a released prefix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanupTask {
    pub workspace_id: String,
    pub studio_id: String,
    pub prefix: S3Prefix,
    /// Continue after this key (`None`: from the start).
    #[serde(default)]
    pub after: Option<String>,
    /// Objects deleted by the earlier steps.
    #[serde(default)]
    pub deleted: usize,
}

/// A stop's deadline (docs/architecture.md, "Stopping"): `STOP_GRACE_SECONDS` after a
/// stop was asked of a session whose agent saves by itself, its job is terminated if the
/// studio is still `stopping` in the same session. Delivered by the same queue, delayed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopDeadline {
    pub workspace_id: String,
    pub studio_id: String,
    pub attempt_id: String,
}

/// A message of the task queue: a clean-up step or a stop's deadline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QueuedTask {
    /// First: a clean-up step has no `attemptId`, so it never parses as a deadline.
    StopDeadline(StopDeadline),
    Cleanup(CleanupTask),
}

/// Where clean-up tasks go.
#[async_trait]
pub trait Tasks: Send + Sync {
    async fn enqueue(&self, task: &CleanupTask) -> Result<()>;
    /// Delivers `deadline` to the worker after `delay_seconds` (at most 900, SQS's
    /// longest delay). Without a queue (the local run): nothing; the reconciler ends
    /// stops that overrun their grace (docs/architecture.md).
    async fn schedule_stop_deadline(
        &self,
        deadline: &StopDeadline,
        delay_seconds: u64,
    ) -> Result<()>;
}

/// The stack's clean-up queue (`CLEANUP_QUEUE_URL`).
pub struct SqsTasks {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsTasks {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String) -> Self {
        SqsTasks { client, queue_url }
    }
}

#[async_trait]
impl Tasks for SqsTasks {
    async fn enqueue(&self, task: &CleanupTask) -> Result<()> {
        let body = serde_json::to_string(task).map_err(Error::internal)?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(crate::error::aws)?;
        Ok(())
    }

    async fn schedule_stop_deadline(
        &self,
        deadline: &StopDeadline,
        delay_seconds: u64,
    ) -> Result<()> {
        let body = serde_json::to_string(deadline).map_err(Error::internal)?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(delay_seconds.min(MAX_DELAY_SECONDS) as i32)
            .send()
            .await
            .map_err(crate::error::aws)?;
        Ok(())
    }
}

/// SQS delays a message at most 15 minutes (`StopGraceSeconds` is bounded by it).
pub const MAX_DELAY_SECONDS: u64 = 900;

/// Without a queue (the local run; tests that do not look at the queue): every step at
/// once, where it is enqueued.
pub struct InlineTasks {
    objects: Arc<dyn Objects>,
}

impl InlineTasks {
    pub fn new(objects: Arc<dyn Objects>) -> Self {
        InlineTasks { objects }
    }
}

#[async_trait]
impl Tasks for InlineTasks {
    async fn enqueue(&self, task: &CleanupTask) -> Result<()> {
        let mut task = task.clone();
        loop {
            match step(self.objects.as_ref(), &task).await? {
                Some(next) => task = next,
                None => return Ok(()),
            }
        }
    }

    async fn schedule_stop_deadline(&self, deadline: &StopDeadline, _: u64) -> Result<()> {
        tracing::debug!(
            studio = deadline.studio_id,
            "no task queue: the reconciler ends a stop that overruns its grace"
        );
        Ok(())
    }
}

/// Deletes one page of `task`; the task that continues it, if anything is left.
async fn step(objects: &dyn Objects, task: &CleanupTask) -> Result<Option<CleanupTask>> {
    let (count, after) = objects
        .delete_page(&task.prefix, task.after.as_deref())
        .await?;
    let deleted = task.deleted + count;
    match after {
        Some(after) => Ok(Some(CleanupTask {
            after: Some(after),
            deleted,
            ..task.clone()
        })),
        None => {
            tracing::info!(
                studio = task.studio_id,
                prefix = %task.prefix,
                objects = deleted,
                "checkpoint data deleted"
            );
            Ok(None)
        }
    }
}

/// The worker: one step of `task`, and the rest back on the queue. Idempotent (a
/// repeated step finds fewer or no objects), so the queue's retries are safe.
pub async fn run(app: &App, task: &CleanupTask) -> Result<()> {
    if let Some(next) = step(app.objects.as_ref(), task).await? {
        app.tasks.enqueue(&next).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_messages_parse_as_what_they_are() {
        let cleanup = r#"{"workspaceId":"ws-1","studioId":"st-1","prefix":"s3://work-bucket/w/.studios/st-1/","deleted":3}"#;
        assert!(matches!(
            serde_json::from_str::<QueuedTask>(cleanup).unwrap(),
            QueuedTask::Cleanup(CleanupTask { deleted: 3, .. })
        ));
        let deadline = serde_json::to_string(&StopDeadline {
            workspace_id: "ws-1".into(),
            studio_id: "st-1".into(),
            attempt_id: "a1".into(),
        })
        .unwrap();
        assert_eq!(
            serde_json::from_str::<QueuedTask>(&deadline).unwrap(),
            QueuedTask::StopDeadline(StopDeadline {
                workspace_id: "ws-1".into(),
                studio_id: "st-1".into(),
                attempt_id: "a1".into(),
            })
        );
        assert!(serde_json::from_str::<QueuedTask>(r#"{"workspaceId":"ws-1"}"#).is_err());
    }
}
