//! The session lifecycle (docs/architecture.md, "The status machine"): how AWS Batch job states move a studio. Pure: the
//! event consumer and the reconciler both decide here, then write what was decided.

use super::{S3Prefix, StudioStatus, UserRef};
use serde::{Deserialize, Serialize};

/// AWS Batch job states, in the order a job passes through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BatchStatus {
    Submitted,
    Pending,
    Runnable,
    Starting,
    Running,
    Succeeded,
    Failed,
}

impl BatchStatus {
    pub const ALL: [BatchStatus; 7] = [
        BatchStatus::Submitted,
        BatchStatus::Pending,
        BatchStatus::Runnable,
        BatchStatus::Starting,
        BatchStatus::Running,
        BatchStatus::Succeeded,
        BatchStatus::Failed,
    ];

    /// Jobs are submitted with `retryStrategy.attempts = 1`, so a job's states only move
    /// forward: an event applies only if it ranks after the recorded one.
    pub fn rank(self) -> u8 {
        match self {
            BatchStatus::Submitted => 1,
            BatchStatus::Pending => 2,
            BatchStatus::Runnable => 3,
            BatchStatus::Starting => 4,
            BatchStatus::Running => 5,
            BatchStatus::Succeeded | BatchStatus::Failed => 6,
        }
    }

    pub fn is_terminal(self) -> bool {
        self.rank() == 6
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Submitted => "SUBMITTED",
            BatchStatus::Pending => "PENDING",
            BatchStatus::Runnable => "RUNNABLE",
            BatchStatus::Starting => "STARTING",
            BatchStatus::Running => "RUNNING",
            BatchStatus::Succeeded => "SUCCEEDED",
            BatchStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<BatchStatus> {
        BatchStatus::ALL.into_iter().find(|b| b.as_str() == s)
    }
}

/// Who caused a status change (published with it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Actor {
    User {
        id: String,
        name: String,
    },
    /// AWS Batch reported the job's state (an event or the reconciler's look-up).
    Batch,
    /// The reconciler acted on its own (a start that never got a job).
    Reconciler,
}

impl From<&UserRef> for Actor {
    fn from(u: &UserRef) -> Self {
        Actor::User {
            id: u.id.clone(),
            name: u.name.clone(),
        }
    }
}

/// One run of a studio on AWS Batch: from start until its job ends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// New on every start; names the job and tags it, so events of older jobs are
    /// recognised even before the job id is recorded.
    pub attempt_id: String,
    pub job_name: String,
    pub job_id: Option<String>,
    /// The last Batch status applied (progress detail while starting).
    pub batch_status: Option<BatchStatus>,
    /// Whether the job ever ran: only then does its end record a checkpoint.
    pub reached_running: bool,
    pub stop_requested_by: Option<UserRef>,
    /// Who started it (the author of its checkpoint).
    #[serde(default)]
    pub started_by: Option<UserRef>,
    /// The checkpoint this session writes when it stops.
    pub checkpoint_id: String,
    pub save_uri: S3Prefix,
    pub restore_uri: Option<S3Prefix>,
    /// The SHA-256 (hex) the restored checkpoint's manifest had when it was recorded
    /// (`CHECKPOINT_RESTORE_SHA256`); `None`: none was recorded (an older checkpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_sha256: Option<String>,
    /// The mounted paths locked for this session (their ancestors carry intents).
    pub locked_paths: Vec<S3Prefix>,
    /// The studio's name when the locks were taken (it is in the lock items).
    pub studio_name: String,
    pub started_at: String,
    /// SHA-256 (hex) of the session's agent credential (docs/agent.md); the credential
    /// itself is only ever in the job's environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_token_hash: Option<String>,
    /// What the session's agent reported over its channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentState>,
    /// The channel as the job gets it, in memory between the start and the submit;
    /// never stored.
    #[serde(skip)]
    pub agent_channel: Option<AgentChannel>,
}

/// What a session's agent needs to reach the control plane (its job's environment).
#[derive(Clone, Debug, PartialEq)]
pub struct AgentChannel {
    pub api_url: Option<String>,
    pub token: String,
}

/// The agent's reports (`POST /agent/report`): ready once the IDE answers, the last user
/// request seen at its port, and why it failed (the status reason when the job ends).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// What the session is doing before it is ready (`installing 3 conda packages`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The SHA-256 (hex) of the manifest its save wrote (recorded with the checkpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
}

impl Session {
    /// Whether an agent reported the IDE ready: a stop asks it to save first.
    pub fn agent_ready(&self) -> bool {
        self.agent.as_ref().is_some_and(|a| a.ready_at.is_some())
    }
}

/// A job's state, from an EventBridge event or from DescribeJobs: untrusted input.
#[derive(Clone, Debug, PartialEq)]
pub struct JobReport {
    pub job_id: String,
    pub job_name: String,
    /// From the job's name (or tags): which start this job belongs to.
    pub attempt_id: Option<String>,
    /// The job queue's ARN, when the report says (events and DescribeJobs do).
    pub queue: Option<String>,
    /// The job definition's ARN, when the report says.
    pub definition: Option<String>,
    pub status: BatchStatus,
    pub status_reason: Option<String>,
    pub container_reason: Option<String>,
    pub exit_code: Option<i64>,
    /// Batch sets `startedAt` when the job starts running.
    pub started: bool,
}

/// What a job report means for a studio.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Nothing to change (duplicate, late, stale, or for another session); logged.
    Ignore(&'static str),
    /// The job moved on but has not ended.
    Progress {
        status: StudioStatus,
        batch_status: BatchStatus,
        reached_running: bool,
    },
    /// The job ended: the session ends, its locks go, maybe a checkpoint is recorded.
    Finish(Finish),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Finish {
    pub status: StudioStatus,
    pub reason: Option<String>,
    pub batch_status: Option<BatchStatus>,
    pub record_checkpoint: bool,
}

/// Decides what `report` does to a studio in `status` with `session`.
pub fn on_job_report(
    status: StudioStatus,
    session: Option<&Session>,
    report: &JobReport,
) -> Outcome {
    let Some(session) = session else {
        return Outcome::Ignore("the studio has no running session");
    };
    if status.is_at_rest() {
        return Outcome::Ignore("the session already ended");
    }
    let same_attempt = report.attempt_id.as_deref() == Some(session.attempt_id.as_str())
        || session.job_id.as_deref() == Some(report.job_id.as_str());
    if !same_attempt {
        return Outcome::Ignore("the job belongs to an earlier session");
    }
    if let Some(job_id) = &session.job_id {
        if job_id != &report.job_id {
            return Outcome::Ignore("the job is not the session's current job");
        }
    }
    let recorded = session.batch_status.map(BatchStatus::rank).unwrap_or(0);
    if report.status.rank() <= recorded {
        return Outcome::Ignore("the job already reached this state");
    }
    let reached_running = session.reached_running
        || report.started
        || report.status.rank() >= BatchStatus::Running.rank();
    if !report.status.is_terminal() {
        let status = match (report.status, status) {
            (_, StudioStatus::Stopping) => StudioStatus::Stopping,
            (BatchStatus::Running, _) => StudioStatus::Running,
            _ => StudioStatus::Starting,
        };
        return Outcome::Progress {
            status,
            batch_status: report.status,
            reached_running,
        };
    }
    // Batch's `started` flag on a terminal report covers a lost RUNNING event.
    let ran = session.reached_running || report.started;
    let finish = match (report.status, &session.stop_requested_by) {
        (BatchStatus::Succeeded, None) => Finish {
            status: StudioStatus::Stopped,
            reason: Some("the session ended".into()),
            batch_status: Some(report.status),
            record_checkpoint: ran,
        },
        // A stop (its agent saved and exited, or Batch ended the job) ends `stopped`.
        (_, Some(by)) => Finish {
            status: StudioStatus::Stopped,
            reason: Some(format!("stopped by {}", by.name)),
            batch_status: Some(report.status),
            record_checkpoint: ran,
        },
        _ => Finish {
            status: StudioStatus::Errored,
            reason: Some(failure_reason(report)),
            batch_status: Some(report.status),
            record_checkpoint: ran,
        },
    };
    Outcome::Finish(finish)
}

fn failure_reason(report: &JobReport) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(r) = report.status_reason.as_deref().filter(|r| !r.is_empty()) {
        parts.push(r.to_string());
    }
    if let Some(r) = report.container_reason.as_deref().filter(|r| !r.is_empty()) {
        parts.push(r.to_string());
    }
    if let Some(code) = report.exit_code {
        parts.push(format!("exit code {code}"));
    }
    if parts.is_empty() {
        "the AWS Batch job failed".to_string()
    } else {
        parts.join("; ")
    }
}

/// The reconciler's decision for a session whose job AWS Batch does not know: it vanished
/// (finished jobs disappear after about a day), or the submit was lost. Only once the
/// session is older than the grace period: a job submitted moments ago may not be listed
/// yet.
pub fn on_missing_job(session: &Session, grace_elapsed: bool) -> Option<Finish> {
    if !grace_elapsed {
        return None;
    }
    Some(match &session.job_id {
        Some(_) => Finish {
            status: if session.stop_requested_by.is_some() {
                StudioStatus::Stopped
            } else {
                StudioStatus::Errored
            },
            reason: Some("the AWS Batch job no longer exists".into()),
            batch_status: None,
            record_checkpoint: session.reached_running,
        },
        // Stopped before AWS Batch ever listed a job: nothing ran.
        None if session.stop_requested_by.is_some() => Finish {
            status: StudioStatus::Stopped,
            reason: Some("stopped before AWS Batch ran the session".into()),
            batch_status: None,
            record_checkpoint: false,
        },
        None => Finish {
            status: StudioStatus::Errored,
            reason: Some("the session was never submitted to AWS Batch".into()),
            batch_status: None,
            record_checkpoint: false,
        },
    })
}

/// A session job's name: `<prefix>-<workspace id>-<studio id>-<attempt id>`. The name
/// is the one field of a `Batch Job State Change` event that is certainly there and
/// under our control, so it (not the job's tags) is how an event finds its studio, and
/// its prefix (per stack) is what the stack's EventBridge rule matches
/// (docs/decisions.md, "Batch events are matched by job name").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobName<'a> {
    pub prefix: &'a str,
    pub workspace_id: &'a str,
    pub studio_id: &'a str,
    pub attempt_id: &'a str,
}

/// Batch job names are at most 128 characters.
pub const MAX_JOB_NAME: usize = 128;
/// Longest attempt id in a job name (a simple UUID: 32 hex digits).
const ATTEMPT_LEN: usize = 32;
/// Longest job-name prefix: what is left of 128 after `-ws…-st…-<attempt>`.
pub const MAX_JOB_NAME_PREFIX: usize = MAX_JOB_NAME - (3 + 2 * ID_LEN + ATTEMPT_LEN);
const ID_LEN: usize = 35;

impl JobName<'_> {
    pub fn format(prefix: &str, workspace_id: &str, studio_id: &str, attempt_id: &str) -> String {
        format!("{prefix}-{workspace_id}-{studio_id}-{attempt_id}")
    }

    /// Reads a job name back (from the right: the prefix may itself contain `-`).
    /// `None` for anything that is not a studio job's name.
    pub fn parse(name: &str) -> Option<JobName<'_>> {
        use super::ids::{is_well_formed, IdKind};
        let (rest, attempt_id) = name.rsplit_once('-')?;
        if attempt_id.is_empty()
            || attempt_id.len() > ATTEMPT_LEN
            || !attempt_id.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return None;
        }
        let split = rest.len().checked_sub(ID_LEN)?;
        let (rest, studio_id) = (rest.get(..split)?, rest.get(split..)?);
        let rest = rest.strip_suffix('-')?;
        let split = rest.len().checked_sub(ID_LEN)?;
        let (rest, workspace_id) = (rest.get(..split)?, rest.get(split..)?);
        let prefix = rest.strip_suffix('-')?;
        let ok = !prefix.is_empty()
            && is_well_formed(IdKind::Workspace, workspace_id)
            && is_well_formed(IdKind::Studio, studio_id);
        ok.then_some(JobName {
            prefix,
            workspace_id,
            studio_id,
            attempt_id,
        })
    }
}

/// The attempt id in a session job's name (when the job's tags are not at hand).
pub fn attempt_from_job_name(job_name: &str) -> Option<&str> {
    JobName::parse(job_name).map(|n| n.attempt_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn session(job: Option<&str>) -> Session {
        Session {
            attempt_id: "a2".into(),
            job_name: "studio-st-1-a2".into(),
            job_id: job.map(String::from),
            batch_status: None,
            reached_running: false,
            stop_requested_by: None,
            started_by: None,
            checkpoint_id: "cp-1".into(),
            save_uri: S3Prefix::parse("s3://work-bucket/cp-1").unwrap(),
            restore_uri: None,
            restore_sha256: None,
            locked_paths: vec![],
            studio_name: "s".into(),
            started_at: "t".into(),
            agent_token_hash: None,
            agent: None,
            agent_channel: None,
        }
    }

    fn report(job: &str, attempt: &str, status: BatchStatus) -> JobReport {
        JobReport {
            job_id: job.into(),
            job_name: format!("studio-st-1-{attempt}"),
            attempt_id: Some(attempt.into()),
            queue: None,
            definition: None,
            status,
            status_reason: None,
            container_reason: None,
            exit_code: None,
            started: status.rank() >= BatchStatus::Running.rank(),
        }
    }

    #[test]
    fn statuses_map_as_designed() {
        let s = session(Some("j2"));
        for (b, want) in [
            (BatchStatus::Pending, StudioStatus::Starting),
            (BatchStatus::Runnable, StudioStatus::Starting),
            (BatchStatus::Starting, StudioStatus::Starting),
            (BatchStatus::Running, StudioStatus::Running),
        ] {
            match on_job_report(StudioStatus::Starting, Some(&s), &report("j2", "a2", b)) {
                Outcome::Progress { status, .. } => assert_eq!(status, want, "{b:?}"),
                other => panic!("{b:?}: {other:?}"),
            }
        }
        let done = on_job_report(
            StudioStatus::Running,
            Some(&s),
            &report("j2", "a2", BatchStatus::Succeeded),
        );
        assert!(matches!(
            done,
            Outcome::Finish(Finish {
                status: StudioStatus::Stopped,
                record_checkpoint: true,
                ..
            })
        ));
    }

    #[test]
    fn failure_after_a_stop_request_is_a_stop() {
        let mut s = session(Some("j2"));
        s.reached_running = true;
        s.batch_status = Some(BatchStatus::Running);
        s.stop_requested_by = Some(UserRef {
            id: "u".into(),
            name: "Ada".into(),
        });
        let mut r = report("j2", "a2", BatchStatus::Failed);
        r.status_reason = Some("Stopped by Ada".into());
        r.exit_code = Some(143);
        let Outcome::Finish(f) = on_job_report(StudioStatus::Stopping, Some(&s), &r) else {
            panic!()
        };
        assert_eq!(f.status, StudioStatus::Stopped);
        assert_eq!(f.reason.as_deref(), Some("stopped by Ada"));
        assert!(f.record_checkpoint);
    }

    #[test]
    fn failure_otherwise_is_an_error_with_batch_reasons() {
        let mut r = report("j2", "a2", BatchStatus::Failed);
        r.started = false;
        r.status_reason = Some("CannotPullContainerError".into());
        r.container_reason = Some("image not found".into());
        let Outcome::Finish(f) = on_job_report(StudioStatus::Starting, Some(&session(None)), &r)
        else {
            panic!()
        };
        assert_eq!(f.status, StudioStatus::Errored);
        assert_eq!(
            f.reason.as_deref(),
            Some("CannotPullContainerError; image not found")
        );
        assert!(!f.record_checkpoint, "a job that never ran saves nothing");
    }

    #[test]
    fn stale_duplicate_and_foreign_reports_are_ignored() {
        let mut s = session(Some("j2"));
        s.batch_status = Some(BatchStatus::Running);
        s.reached_running = true;
        let old_job = report("j1", "a1", BatchStatus::Failed);
        assert!(matches!(
            on_job_report(StudioStatus::Running, Some(&s), &old_job),
            Outcome::Ignore(_)
        ));
        let dup = report("j2", "a2", BatchStatus::Running);
        assert!(matches!(
            on_job_report(StudioStatus::Running, Some(&s), &dup),
            Outcome::Ignore(_)
        ));
        let late = report("j2", "a2", BatchStatus::Runnable);
        assert!(matches!(
            on_job_report(StudioStatus::Running, Some(&s), &late),
            Outcome::Ignore(_)
        ));
        assert!(matches!(
            on_job_report(StudioStatus::Stopped, None, &dup),
            Outcome::Ignore(_)
        ));
    }

    #[test]
    fn a_report_before_the_job_id_is_recorded_matches_by_attempt() {
        let s = session(None);
        let r = report("j9", "a2", BatchStatus::Runnable);
        assert!(matches!(
            on_job_report(StudioStatus::Starting, Some(&s), &r),
            Outcome::Progress { .. }
        ));
    }

    #[test]
    fn job_names_come_back_apart() {
        use crate::ids::{format_id, IdKind};
        let unique = 0x0193_8a2b_4c5d_7e6f_8a9b_0c1d_2e3f_4a5b_u128;
        let (ws, st) = (
            format_id(IdKind::Workspace, unique),
            format_id(IdKind::Studio, unique + 1),
        );
        let attempt = format!("{:032x}", unique + 2);
        for prefix in ["studios-3f2a1b4c", "a", "my-stack_x-1"] {
            let name = JobName::format(prefix, &ws, &st, &attempt);
            let parsed = JobName::parse(&name).expect("parses");
            assert_eq!(parsed.prefix, prefix);
            assert_eq!(parsed.workspace_id, ws);
            assert_eq!(parsed.studio_id, st);
            assert_eq!(parsed.attempt_id, attempt);
            assert_eq!(attempt_from_job_name(&name), Some(attempt.as_str()));
        }
        let longest = "p".repeat(MAX_JOB_NAME_PREFIX);
        assert_eq!(
            JobName::format(&longest, &ws, &st, &attempt).len(),
            MAX_JOB_NAME
        );
        for foreign in [
            "event-test",
            "other-job",
            "",
            &format!("{ws}-{st}-{attempt}"),
            &format!("x-{st}-{ws}-{attempt}"),
            &format!("x-{ws}-{st}-"),
            &format!("x-{ws}-{st}-{attempt}{attempt}"),
            &format!("x-{ws}-{st}-a\u{e9}b"),
        ] {
            assert_eq!(JobName::parse(foreign), None, "{foreign}");
        }
    }

    // ---- property: any delivery of a job's reports ends as a simple model says ----

    /// The model: a job's life is a prefix of this path, ending in SUCCEEDED or FAILED.
    fn job_path() -> impl Strategy<Value = Vec<BatchStatus>> {
        use BatchStatus::*;
        (0usize..=5, prop::bool::ANY).prop_map(|(len, ok)| {
            let path = [Submitted, Pending, Runnable, Starting, Running];
            let mut v: Vec<BatchStatus> = path[..len.min(5)].to_vec();
            v.push(if ok { Succeeded } else { Failed });
            v
        })
    }

    /// Applies reports in the given order to a studio started for attempt a2.
    fn replay(reports: &[JobReport]) -> (StudioStatus, usize) {
        let mut status = StudioStatus::Starting;
        let mut sess = Some(session(None));
        let mut checkpoints = 0;
        for r in reports {
            match on_job_report(status, sess.as_ref(), r) {
                Outcome::Ignore(_) => {}
                Outcome::Progress {
                    status: st,
                    batch_status,
                    reached_running,
                } => {
                    let s = sess.as_mut().unwrap();
                    status = st;
                    s.batch_status = Some(batch_status);
                    s.reached_running = reached_running;
                    s.job_id = Some(r.job_id.clone());
                }
                Outcome::Finish(f) => {
                    status = f.status;
                    checkpoints += usize::from(f.record_checkpoint);
                    sess = None;
                }
            }
        }
        (status, checkpoints)
    }

    proptest! {
        #[test]
        fn duplicates_reordering_and_old_jobs_do_not_change_the_outcome(
            path in job_path(),
            old in job_path(),
            dup_mask in prop::collection::vec(any::<bool>(), 12),
            order in prop::collection::vec(any::<u32>(), 24),
        ) {
            // A terminal report says whether the job started (Batch's startedAt).
            let reports = |path: &[BatchStatus], job: &str, attempt: &str| -> Vec<JobReport> {
                let ran = path.contains(&BatchStatus::Running);
                path.iter()
                    .map(|&b| {
                        let mut r = report(job, attempt, b);
                        r.started = ran && b.rank() >= BatchStatus::Running.rank();
                        r
                    })
                    .collect()
            };
            let mine = reports(&path, "j2", "a2");
            let theirs = reports(&old, "j1", "a1");
            let mut all: Vec<JobReport> = mine.clone();
            all.extend(theirs);
            for (i, dup) in dup_mask.iter().enumerate() {
                if *dup && i < mine.len() {
                    all.push(mine[i].clone());
                }
            }
            // Shuffle deterministically by the generated keys.
            let mut keyed: Vec<(u32, JobReport)> =
                all.into_iter().enumerate().map(|(i, r)| (order.get(i).copied().unwrap_or(0), r)).collect();
            keyed.sort_by_key(|(k, _)| *k);
            let delivered: Vec<JobReport> = keyed.into_iter().map(|(_, r)| r).collect();

            let (status, checkpoints) = replay(&delivered);
            // The model: the terminal report decides; a job that ran saves one checkpoint.
            let last = *path.last().unwrap();
            let ran = path.contains(&BatchStatus::Running);
            let want = if last == BatchStatus::Succeeded { StudioStatus::Stopped } else { StudioStatus::Errored };
            prop_assert_eq!(status, want);
            prop_assert_eq!(checkpoints, usize::from(ran));
        }
    }
}
