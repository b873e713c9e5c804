//! The studio status machine, whole (docs/architecture.md, "The status machine"): the
//! user-driven transitions (start, stop, a forced stop, a start put back when AWS Batch
//! is busy, connect, the "at rest" rule) and the application of what `lifecycle` decided
//! for a Batch report. Pure: each function takes the studio as read, the command or
//! decision, and the clock, and returns the studio to write (the caller writes it with a
//! condition on the status it read) or the conflict that forbids it.

use super::lifecycle::{Actor, BatchStatus, Finish, Session};
use super::{Checkpoint, CheckpointStatus, Studio, StudioStatus, UserRef};
use crate::error::Conflict;

/// A start: only from rest (`stopped`, `errored`); the studio becomes `starting` with
/// `session`, and what belonged to the previous session is cleared.
pub fn start(
    studio: &Studio,
    session: Session,
    by: &UserRef,
    now: &str,
) -> Result<Studio, Conflict> {
    startable(studio)?;
    let mut next = studio.clone();
    next.status = StudioStatus::Starting;
    next.status_reason = None;
    next.status_updated_at = now.to_string();
    next.status_actor = Some(Actor::from(by));
    next.last_started_at = Some(now.to_string());
    next.updated_at = now.to_string();
    next.recorded_checkpoint = None;
    next.connected_users.clear();
    next.session = Some(session);
    next.version += 1;
    Ok(next)
}

/// Whether a start may begin: only from rest.
pub fn startable(studio: &Studio) -> Result<(), Conflict> {
    if studio.status.is_at_rest() {
        return Ok(());
    }
    Err(Conflict::AlreadyActive {
        studio: studio.config.name.clone(),
        status: studio.status.as_str(),
    })
}

/// A start AWS Batch was too busy to take: the studio goes back to how it was.
pub fn put_back(studio: &Studio, previous: StudioStatus, now: &str) -> Studio {
    let mut back = studio.clone();
    back.status = previous;
    back.status_reason = Some("AWS Batch was busy; start again shortly".into());
    back.status_updated_at = now.to_string();
    back.session = None;
    back.version += 1;
    back
}

/// What a stop does to a studio.
#[derive(Clone, Debug, PartialEq)]
pub enum Stop {
    /// `running` or `starting` → `stopping`: write this, then ask the session to end.
    Request(Box<Studio>),
    /// Already `stopping`: nothing to write; ask again.
    Again,
    /// A forced stop of a studio stuck in `stopping`: end it with this.
    Force(Finish),
}

/// A stop by `by`. `stuck_seconds`: how long the studio has been in its status;
/// `force_after_seconds`: when a forced stop becomes possible.
pub fn stop(
    studio: &Studio,
    by: &UserRef,
    force: bool,
    stuck_seconds: i64,
    force_after_seconds: u64,
    now: &str,
) -> Result<Stop, Conflict> {
    match studio.status {
        StudioStatus::Running | StudioStatus::Starting => {
            let mut next = studio.clone();
            next.status = StudioStatus::Stopping;
            next.status_reason = Some(if studio.status == StudioStatus::Starting {
                format!("start cancelled by {}", by.name)
            } else {
                format!("stop requested by {}", by.name)
            });
            next.status_updated_at = now.to_string();
            next.updated_at = now.to_string();
            next.status_actor = Some(Actor::from(by));
            if let Some(s) = next.session.as_mut() {
                s.stop_requested_by = Some(by.clone());
            }
            next.version += 1;
            Ok(Stop::Request(Box::new(next)))
        }
        StudioStatus::Stopping if force => {
            if stuck_seconds < force_after_seconds as i64 {
                return Err(Conflict::StopInProgress {
                    studio: studio.config.name.clone(),
                    since: studio.status_updated_at.clone(),
                    force_after_minutes: force_after_seconds.div_ceil(60),
                });
            }
            Ok(Stop::Force(Finish {
                status: StudioStatus::Stopped,
                reason: Some(format!(
                    "force-stopped by {} after {} minutes in stopping",
                    by.name,
                    stuck_seconds / 60
                )),
                batch_status: None,
                record_checkpoint: studio.session.as_ref().is_some_and(|s| s.reached_running),
            }))
        }
        StudioStatus::Stopping => Ok(Stop::Again),
        StudioStatus::Stopped | StudioStatus::Errored => Err(Conflict::NothingToStop {
            studio: studio.config.name.clone(),
            status: studio.status.as_str(),
        }),
    }
}

/// Connecting needs a running session; its attempt id.
pub fn connectable(studio: &Studio) -> Result<&str, Conflict> {
    match (&studio.status, &studio.session) {
        (StudioStatus::Running, Some(session)) => Ok(&session.attempt_id),
        _ => Err(Conflict::NotRunning {
            studio: studio.config.name.clone(),
            status: studio.status.as_str(),
        }),
    }
}

/// Changing, deleting or cloning (without a checkpoint) needs a studio at rest.
pub fn require_at_rest(studio: &Studio, doing: &'static str) -> Result<(), Conflict> {
    if studio.status.is_at_rest() {
        return Ok(());
    }
    Err(Conflict::NotAtRest {
        studio: studio.config.name.clone(),
        status: studio.status.as_str(),
        doing,
    })
}

/// A job that moved on without ending (`lifecycle::Outcome::Progress`).
pub fn progressed(
    studio: &Studio,
    job_id: &str,
    status: StudioStatus,
    batch_status: BatchStatus,
    reached_running: bool,
    now: &str,
) -> Studio {
    let mut next = studio.clone();
    if let Some(s) = next.session.as_mut() {
        s.batch_status = Some(batch_status);
        s.reached_running = reached_running;
        s.job_id = Some(job_id.to_string());
    }
    if status != studio.status {
        next.status = status;
        next.status_reason = None;
        next.status_updated_at = now.to_string();
        next.status_actor = Some(Actor::Batch);
    }
    next.version += 1;
    next
}

/// The checkpoint a session's end records (`finalized`: its manifest is there).
pub fn checkpoint_of(
    studio: &Studio,
    session: &Session,
    finalized: bool,
    status_reason: Option<String>,
    now: &str,
) -> Checkpoint {
    Checkpoint {
        id: session.checkpoint_id.clone(),
        workspace_id: studio.workspace_id.clone(),
        studio_id: studio.id.clone(),
        name: super::validate::default_checkpoint_name(studio.checkpoint_count + 1),
        status: if finalized {
            CheckpointStatus::Finalized
        } else {
            CheckpointStatus::Invalid
        },
        uri: session.save_uri.clone(),
        saved_by_studio_id: studio.id.clone(),
        job_id: session.job_id.clone(),
        author: session.started_by.clone(),
        created_at: session.started_at.clone(),
        saved_at: now.to_string(),
        status_reason,
        // What the session reported writing; a finalized checkpoint only.
        manifest_sha256: session
            .agent
            .as_ref()
            .and_then(|a| a.manifest_sha256.clone())
            .filter(|_| finalized),
    }
}

/// A session's end (`lifecycle::Finish`): the studio at rest, its session and
/// connections gone, the checkpoint (if any) counted, and restored next if finalized.
pub fn finished(
    studio: &Studio,
    finish: &Finish,
    actor: Actor,
    checkpoint: Option<&Checkpoint>,
    now: &str,
) -> Studio {
    let mut next = studio.clone();
    next.status = finish.status;
    next.status_reason = finish.reason.clone();
    next.status_updated_at = now.to_string();
    next.updated_at = now.to_string();
    next.status_actor = Some(actor);
    next.session = None;
    next.connected_users.clear();
    next.recorded_checkpoint = None;
    if let Some(cp) = checkpoint {
        let reference = cp.reference();
        next.checkpoint_count += 1;
        if cp.status == CheckpointStatus::Finalized {
            next.latest_checkpoint = Some(reference.clone());
        }
        next.recorded_checkpoint = Some(reference);
    }
    next.version += 1;
    next
}

#[cfg(test)]
mod tests {
    use super::super::lifecycle::{on_job_report, JobReport, Outcome};
    use super::super::*;
    use super::*;
    use proptest::prelude::*;

    fn user(n: &str) -> UserRef {
        UserRef {
            id: n.to_lowercase(),
            name: n.into(),
        }
    }

    fn studio() -> Studio {
        serde_json::from_value(serde_json::json!({
            "id": "st-1", "workspaceId": "ws-1", "name": "QC", "description": "",
            "template": {"kind": "jupyter"}, "condaPackages": [],
            "resources": {"cpus": 2, "gpus": 0, "memoryMiB": 8192}, "mounts": [],
            "computeEnv": {"id": "ce-1", "name": "ce", "region": "eu-west-1",
                "jobQueue": "q", "gpuEnabled": false, "maxCpus": 4, "maxMemoryMiB": 16384,
                "allowedWriteBuckets": [], "workDir": "s3://bkt/work/"},
            "status": "stopped", "statusReason": null, "statusUpdatedAt": "t0",
            "author": {"id": "ada", "name": "Ada"}, "createdAt": "t0", "updatedAt": "t0",
            "lastStartedAt": null, "parent": null, "version": 1
        }))
        .unwrap()
    }

    fn session(attempt: u32) -> Session {
        serde_json::from_value(serde_json::json!({
            "attemptId": format!("a{attempt}"), "jobName": format!("j{attempt}"),
            "jobId": null, "batchStatus": null, "reachedRunning": false,
            "stopRequestedBy": null, "checkpointId": format!("cp{attempt}"),
            "saveUri": format!("s3://bkt/work/cp{attempt}/"), "restoreUri": null,
            "lockedPaths": [], "studioName": "QC", "startedAt": "t"
        }))
        .unwrap()
    }

    /// What a user or AWS Batch does next.
    #[derive(Clone, Debug)]
    enum Step {
        Start,
        /// The submit found Batch busy: the start is put back.
        Busy,
        Stop,
        /// A forced stop, `stuck` seconds after the studio entered its status.
        ForceStop {
            stuck: i64,
        },
        /// A report of the job of start number `attempt` (0: the latest).
        Report {
            attempt: u32,
            status: BatchStatus,
        },
        Connect,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            Just(Step::Start),
            Just(Step::Busy),
            Just(Step::Stop),
            (0i64..2000).prop_map(|stuck| Step::ForceStop { stuck }),
            (0u32..3, prop::sample::select(BatchStatus::ALL.to_vec()))
                .prop_map(|(attempt, status)| Step::Report { attempt, status }),
            Just(Step::Connect),
        ]
    }

    proptest! {
        /// Random mixes of user commands and Batch reports (late, duplicated, for older
        /// sessions) keep the machine's invariants.
        #[test]
        fn commands_and_reports_keep_the_invariants(steps in prop::collection::vec(step(), 1..40)) {
            let ada = user("Ada");
            let mut s = studio();
            let mut starts = 0u32;
            let mut ended_after_running = 0u32;
            let mut before_start = s.status;
            for step in steps {
                let before = s.clone();
                match step {
                    Step::Start => match start(&s, session(starts + 1), &ada, "t") {
                        Ok(next) => {
                            prop_assert!(before.status.is_at_rest());
                            before_start = before.status;
                            starts += 1;
                            s = next;
                        }
                        Err(c) => {
                            prop_assert!(!before.status.is_at_rest());
                            prop_assert_eq!(c.code(), "studio_not_stopped");
                        }
                    },
                    Step::Busy => {
                        // Only right after a start, before Batch said anything.
                        if s.status == StudioStatus::Starting
                            && s.session.as_ref().is_some_and(|x| x.batch_status.is_none())
                        {
                            s = put_back(&s, before_start, "t");
                            prop_assert!(s.status.is_at_rest());
                        }
                    }
                    Step::Stop | Step::ForceStop { .. } => {
                        let (force, stuck) = match step {
                            Step::ForceStop { stuck } => (true, stuck),
                            _ => (false, 0),
                        };
                        match stop(&s, &ada, force, stuck, 900, "t") {
                            Ok(Stop::Request(next)) => {
                                prop_assert!(matches!(before.status, StudioStatus::Running | StudioStatus::Starting));
                                prop_assert_eq!(next.status, StudioStatus::Stopping);
                                s = *next;
                            }
                            Ok(Stop::Again) => prop_assert_eq!(s.status, StudioStatus::Stopping),
                            Ok(Stop::Force(finish)) => {
                                prop_assert!(force && stuck >= 900);
                                prop_assert_eq!(finish.status, StudioStatus::Stopped);
                                let ran = finish.record_checkpoint;
                                let cp = ran.then(|| checkpoint_of(&s, s.session.as_ref().unwrap(), true, None, "t"));
                                ended_after_running += u32::from(ran);
                                s = finished(&s, &finish, Actor::from(&ada), cp.as_ref(), "t");
                            }
                            Err(c) => prop_assert!(
                                before.status.is_at_rest() || (force && stuck < 900),
                                "{:?} refused {}", before.status, c
                            ),
                        }
                    }
                    Step::Report { attempt, status } => {
                        let attempt = if attempt == 0 { starts } else { attempt };
                        let report = JobReport {
                            job_id: format!("job{attempt}"),
                            job_name: format!("j{attempt}"),
                            attempt_id: Some(format!("a{attempt}")),
                            queue: None,
                            definition: None,
                            status,
                            status_reason: None,
                            container_reason: None,
                            exit_code: None,
                            started: status == BatchStatus::Running,
                        };
                        match on_job_report(s.status, s.session.as_ref(), &report) {
                            Outcome::Ignore(_) => {}
                            Outcome::Progress { status, batch_status, reached_running } => {
                                prop_assert_eq!(Some(format!("a{attempt}")), s.session.as_ref().map(|x| x.attempt_id.clone()));
                                s = progressed(&s, &report.job_id, status, batch_status, reached_running, "t");
                            }
                            Outcome::Finish(finish) => {
                                let stop_requested = s.session.as_ref().unwrap().stop_requested_by.is_some();
                                if stop_requested {
                                    prop_assert_eq!(finish.status, StudioStatus::Stopped, "a stopped session never ends errored");
                                }
                                let ran = finish.record_checkpoint;
                                let cp = ran.then(|| checkpoint_of(&s, s.session.as_ref().unwrap(), true, None, "t"));
                                ended_after_running += u32::from(ran);
                                s = finished(&s, &finish, Actor::Batch, cp.as_ref(), "t");
                            }
                        }
                    }
                    Step::Connect => {
                        let ok = connectable(&s).is_ok();
                        prop_assert_eq!(ok, s.status == StudioStatus::Running);
                    }
                }
                // The invariants, after every step.
                prop_assert_eq!(s.session.is_some(), !s.status.is_at_rest(), "{:?}", s.status);
                prop_assert_eq!(s.checkpoint_count, ended_after_running, "one checkpoint per session that ran");
                prop_assert!(s.version >= before.version);
                if s.status.is_at_rest() {
                    prop_assert!(s.connected_users.is_empty());
                    prop_assert!(require_at_rest(&s, "delete").is_ok());
                } else {
                    prop_assert!(require_at_rest(&s, "delete").is_err());
                }
                if s.status == StudioStatus::Stopping {
                    prop_assert!(s.session.as_ref().unwrap().stop_requested_by.is_some());
                }
            }
        }
    }
}
