//! The three background consumers (docs/architecture.md): AWS Batch job state changes
//! (EventBridge), the reconciler (schedule) and the table stream (status events and
//! clean-up after deleted studios). They drive the use cases; no use case calls them.

use crate::access::App;
use crate::clock::age;
use crate::domain::lifecycle::*;
use crate::domain::*;
use crate::error::Result;
use crate::events::{events_for, Change};
use crate::sessions::*;
use serde_json::Value;

/// Handler names of the functions that are not API routes (template.yaml uses them).
pub const BATCH_EVENTS_HANDLER: &str = "batch-events";

/// The table-stream consumer: status events, and clean-up after deleted studios.
pub const TABLE_STREAM_HANDLER: &str = "table-stream";

pub const RECONCILE_HANDLER: &str = "reconcile";

pub const EVENT_HANDLERS: [&str; 3] = [
    BATCH_EVENTS_HANDLER,
    TABLE_STREAM_HANDLER,
    RECONCILE_HANDLER,
];

/// The EventBridge consumer for `aws.batch` / `Batch Job State Change`. Input is
/// untrusted: anything that is not a studio job of this stack is logged and
/// acknowledged. The studio is found by the job's name (`JobName`), never by its tags:
/// whether Batch copies a job's tags into its events is not documented.
pub async fn on_batch_event(app: &App, event: &Value) -> Result<Applied> {
    let detail = &event["detail"];
    let text = |v: &Value| v.as_str().map(String::from);
    let job_name = detail["jobName"].as_str().unwrap_or_default();
    let Some(name) = JobName::parse(job_name).filter(|n| n.prefix == app.config.job_name_prefix)
    else {
        tracing::info!(job = ?detail["jobId"], name = job_name, "not a studio job of this stack; ignored");
        return Ok(Applied::UnknownStudio);
    };
    let Some(status) = detail["status"].as_str().and_then(BatchStatus::parse) else {
        tracing::warn!(status = ?detail["status"], "unknown job status; ignored");
        return Ok(Applied::Ignored("unknown job status"));
    };
    let report = JobReport {
        job_id: text(&detail["jobId"]).unwrap_or_default(),
        attempt_id: Some(name.attempt_id.to_string()),
        job_name: job_name.to_string(),
        queue: text(&detail["jobQueue"]),
        definition: text(&detail["jobDefinition"]),
        status,
        status_reason: text(&detail["statusReason"]),
        container_reason: text(&detail["container"]["reason"]),
        exit_code: detail["container"]["exitCode"].as_i64(),
        started: detail["startedAt"].is_number(),
    };
    let applied = apply_report(app, name.workspace_id, name.studio_id, &report).await?;
    tracing::info!(
        studio = name.studio_id,
        job = report.job_id,
        status = status.as_str(),
        ?applied,
        "batch event"
    );
    Ok(applied)
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    pub checked: usize,
    pub changed: usize,
    /// Studios left alone: AWS could not say (an API error is "unknown"), or a missing
    /// job is younger than the grace period.
    pub unknown: usize,
}

/// Repairs what events missed (docs/architecture.md), through the same decisions as the consumer.
pub async fn reconcile(app: &App) -> Result<ReconcileReport> {
    let studios = app.store.active_studios().await?;
    let mut report = ReconcileReport {
        checked: studios.len(),
        ..Default::default()
    };
    let job_ids: Vec<String> = studios
        .iter()
        .filter_map(|s| s.session.as_ref()?.job_id.clone())
        .collect();
    let described = match app.compute.describe(&job_ids).await {
        Ok(jobs) => Some(jobs),
        Err(e) => {
            tracing::warn!(error = %e, "DescribeJobs failed; jobs are unknown this round");
            None
        }
    };
    let grace = chrono::Duration::seconds(app.config.submit_grace_seconds as i64);
    for studio in &studios {
        let Some(session) = &studio.session else {
            continue;
        };
        let session_age = age(&session.started_at);
        let grace_elapsed = session_age >= grace;
        let outcome = match &session.job_id {
            Some(job_id) => match &described {
                None => None,
                Some(jobs) => match jobs.iter().find(|j| &j.job_id == job_id) {
                    Some(job) => {
                        settle_job(app, studio, session_age, job).await;
                        Some(apply_report(app, &studio.workspace_id, &studio.id, job).await)
                    }
                    None => match on_missing_job(session, grace_elapsed) {
                        Some(finish) => Some(
                            finish_session(app, studio, &finish, Actor::Reconciler)
                                .await
                                .map(|_| Applied::Changed),
                        ),
                        None => None,
                    },
                },
            },
            None => {
                match app
                    .compute
                    .find_by_name(&studio.compute_env.job_queue, &session.job_name)
                    .await
                {
                    Ok(Some(job)) => {
                        settle_job(app, studio, session_age, &job).await;
                        Some(apply_report(app, &studio.workspace_id, &studio.id, &job).await)
                    }
                    Ok(None) => match on_missing_job(session, grace_elapsed) {
                        Some(f) => Some(
                            finish_session(app, studio, &f, Actor::Reconciler)
                                .await
                                .map(|_| Applied::Changed),
                        ),
                        None => None,
                    },
                    Err(e) => {
                        tracing::warn!(studio = studio.id, error = %e, "ListJobs failed; unknown");
                        None
                    }
                }
            }
        };
        match outcome {
            // Left alone this round: AWS could not say, or it is too early to judge.
            None => report.unknown += 1,
            Some(Ok(Applied::Changed)) => report.changed += 1,
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                report.unknown += 1;
                tracing::warn!(studio = studio.id, error = %e, "reconcile failed; retried next round");
            }
        }
    }
    tracing::info!(?report, "reconciled");
    Ok(report)
}

/// The reconciler's nudges to a live job: a stop that Batch has not carried out yet is
/// asked again, and a start that has not reached RUNNING within
/// `START_DEADLINE_SECONDS` is cancelled (its FAILED event then errors the studio with
/// this reason, and releases its locks).
async fn settle_job(app: &App, studio: &Studio, session_age: chrono::Duration, job: &JobReport) {
    if job.status.is_terminal() {
        return;
    }
    if studio.status == StudioStatus::Stopping {
        if agent_saving(app, studio) {
            return;
        }
        let by = studio
            .session
            .as_ref()
            .and_then(|s| s.stop_requested_by.as_ref())
            .map_or("reconciler", |u| u.id.as_str());
        terminate(app, studio, by).await;
        return;
    }
    let deadline = app.config.start_deadline_seconds;
    let overdue = session_age >= chrono::Duration::seconds(deadline as i64);
    if studio.status == StudioStatus::Starting && job.status != BatchStatus::Running && overdue {
        let reason = format!(
            "the session did not start within {} minutes (AWS Batch status {}); check the compute environment's capacity and the studio's resources",
            deadline.div_ceil(60),
            job.status.as_str()
        );
        tracing::warn!(
            studio = studio.id,
            job = job.job_id,
            reason,
            "start overdue; cancelled"
        );
        if let Err(e) = app.compute.terminate(&job.job_id, &reason).await {
            tracing::warn!(studio = studio.id, error = %e, "TerminateJob failed; retried next round");
        }
    }
}

/// What the table-stream consumer did with a batch of changes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StreamReport {
    pub published: usize,
    /// Checkpoint records removed after their studio was deleted.
    pub purged: usize,
    /// Checkpoint-data prefixes deleted from S3 (nothing depended on them any more).
    pub data_deleted: usize,
    /// Mount-lock items deleted once released (neither holder nor intents left).
    pub locks_deleted: usize,
}

/// The table-stream consumer: publishes the status events of the changes, then cleans
/// up after deleted studios. An error fails the batch, so Lambda retries it (every step
/// is idempotent).
pub async fn on_table_changes(app: &App, changes: &[Change]) -> Result<StreamReport> {
    let events: Vec<_> = changes.iter().filter_map(events_for).collect();
    if !events.is_empty() {
        app.events.publish(&events).await?;
    }
    let mut report = StreamReport {
        published: events.len(),
        ..Default::default()
    };
    for change in changes {
        match change {
            Change::Studio {
                old: Some(old),
                new: None,
            } => {
                report.purged += app
                    .store
                    .purge_checkpoints(&old.workspace_id, &old.id)
                    .await?;
            }
            Change::LockEmptied {
                workspace_id,
                sort_key,
            } => {
                report.locks_deleted +=
                    usize::from(app.store.delete_empty_lock(workspace_id, sort_key).await?);
            }
            Change::DataReleased {
                workspace_id,
                studio_id,
                prefix,
            } => {
                let deleted = crate::checkpoints::delete_released_data(
                    app,
                    workspace_id,
                    studio_id,
                    prefix.as_ref(),
                )
                .await?;
                report.data_deleted += usize::from(deleted);
            }
            _ => {}
        }
    }
    Ok(report)
}

/// The task queue's worker (`CLEANUP_HANDLER`): a clean-up step, or a stop's deadline.
pub async fn run_queued(app: &App, task: &crate::cleanup::QueuedTask) -> Result<()> {
    use crate::cleanup::QueuedTask;
    match task {
        QueuedTask::Cleanup(task) => crate::cleanup::run(app, task).await,
        QueuedTask::StopDeadline(deadline) => on_stop_deadline(app, deadline).await,
    }
}
