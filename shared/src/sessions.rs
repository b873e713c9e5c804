//! Studio sessions on AWS Batch (docs/architecture.md): start, stop, the Batch event consumer,
//! the reconciler, and the publisher of status events. Decisions come from
//! `domain::lifecycle`; every status change is one conditional transaction that also
//! takes or releases the session's mount locks and records its checkpoint.

use crate::access::{authorize, authorized_studio, guard, readable, workspace_id, App, Caller};
use crate::clock::{age, new_id, now};
use crate::compute::SubmitError;
use crate::domain::ids::IdKind;
use crate::domain::lifecycle::{
    on_job_report, Actor, AgentChannel, Finish, JobName, JobReport, Outcome, Session,
};
use crate::domain::transitions::{self, Stop};
use crate::domain::validate::StartInput;
use crate::domain::validate::{changed_config, ConfigChanges};
use crate::domain::*;
use crate::error::{Conflict, Error, Missing, Result};
use crate::jobs::connect_environment;
pub use crate::jobs::job_spec;
use crate::objects::Presence;
use crate::store::*;

/// Where a session writes its checkpoint; the container writes `manifest.json` last.
pub use studios_protocol::MANIFEST;
/// Re-reads when a concurrent change beat an event's write.
const APPLY_ATTEMPTS: usize = 3;

/// The studio as it is once a start is accepted: `starting`, with a new session.
pub fn begin(app: &App, studio: &Studio, caller: &Caller) -> Result<Studio> {
    let now = now();
    let attempt_id = uuid::Uuid::now_v7().simple().to_string();
    let checkpoint_id = new_id(IdKind::Checkpoint);
    let save_uri = studio
        .data_prefix()
        .child("checkpoints")
        .child(&checkpoint_id);
    // The agent's credential names its session; only its hash is stored.
    let token = format!(
        "{}.{}.{}.{}{}",
        studio.workspace_id,
        studio.id,
        attempt_id,
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let session = Session {
        agent_token_hash: Some(crate::agents::token_hash(&token)),
        agent: None,
        agent_channel: Some(AgentChannel {
            api_url: app
                .config
                .agent
                .api_url
                .clone()
                .or_else(|| caller.api_url.clone()),
            token,
        }),
        job_name: JobName::format(
            &app.config.job_name_prefix,
            &studio.workspace_id,
            &studio.id,
            &attempt_id,
        ),
        attempt_id,
        job_id: None,
        batch_status: None,
        reached_running: false,
        stop_requested_by: None,
        started_by: Some(caller.user_ref()),
        checkpoint_id,
        save_uri,
        restore_uri: studio.latest_checkpoint.as_ref().map(|c| c.uri.clone()),
        restore_sha256: studio
            .latest_checkpoint
            .as_ref()
            .and_then(|c| c.manifest_sha256.clone()),
        locked_paths: studio.config.mounts.iter().map(|m| m.uri.clone()).collect(),
        studio_name: studio.config.name.clone(),
        started_at: now.clone(),
    };
    Ok(transitions::start(
        studio,
        session,
        &caller.user_ref(),
        &now,
    )?)
}

/// Submits a studio just moved to `starting` from `previous`. If Batch refuses, the
/// studio ends `errored` and its locks are released in the same write; if Batch is busy,
/// it goes back to `previous`. If Batch does not answer, it stays `starting` for the
/// events or the reconciler to settle.
pub async fn submit(app: &App, studio: Studio, previous: StudioStatus) -> Result<Studio> {
    let session = studio
        .session
        .clone()
        .ok_or_else(|| Error::internal("submit without a session"))?;
    let mut spec = job_spec(app, &studio, &session)?;
    let outcome = match connect_environment(app, &studio).await {
        Ok(env) => {
            spec.environment.extend(env);
            app.compute.submit(&spec).await
        }
        Err(e) => {
            // Nothing was submitted: the start is put back, as when Batch is busy.
            tracing::warn!(studio = studio.id, error = %e, "no connect key; start rolled back");
            Err(SubmitError::Throttled)
        }
    };
    match outcome {
        Ok(job_id) => {
            if let Err(e) = app
                .store
                .record_job(&studio, &session.attempt_id, &job_id)
                .await
            {
                // The job's events carry the attempt tag: the consumer records it then.
                tracing::warn!(studio = studio.id, job_id, error = %e, "job id not recorded");
            }
            let mut studio = studio;
            if let Some(s) = studio.session.as_mut() {
                s.job_id = Some(job_id);
            }
            studio.version += 1;
            Ok(studio)
        }
        Err(SubmitError::Rejected(reason)) => {
            let message = format!("AWS Batch refused the job: {reason}");
            let finish = Finish {
                status: StudioStatus::Errored,
                reason: Some(message.clone()),
                batch_status: None,
                record_checkpoint: false,
            };
            finish_session(app, &studio, &finish, Actor::Batch).await?;
            Err(Conflict::BatchRejected { reason }.into())
        }
        Err(SubmitError::Throttled) => {
            let back = transitions::put_back(&studio, previous, &now());
            write_as_system(app, &studio, &back, None).await?;
            Err(Error::Throttled)
        }
        Err(SubmitError::Unknown(detail)) => {
            tracing::warn!(
                studio = studio.id,
                detail,
                "submit outcome unknown; the reconciler settles it"
            );
            Ok(studio)
        }
    }
}

pub async fn start_studio(
    app: &App,
    caller: &Caller,
    ws: &str,
    id: &str,
    input: StartInput,
) -> Result<Studio> {
    let ws = workspace_id(ws)?;
    let mut keys = vec![Key::Member(caller.id.clone()), Key::Studio(id.to_string())];
    keys.extend(input.data_link_ids().into_iter().map(Key::DataLink));
    let fetched = app.store.fetch(ws, &keys).await?;
    authorize(&fetched.members, caller, Permission::OperateStudios)?;
    let current = fetched
        .studios
        .get(id)
        .ok_or(Error::NotFound(Missing::Studio))?;
    transitions::startable(current)?;
    let mut base = current.clone();
    if input.description.is_some() || input.resources.is_some() || input.mounts.is_some() {
        let changes = ConfigChanges {
            description: input.description.as_deref(),
            resources: input.resources,
            mounts: input.mounts.as_deref(),
            ..Default::default()
        };
        base.config = changed_config(current, changes, &fetched.data_links)?.0;
    }
    let next = begin(app, &base, caller)?;
    app.store
        .write_studio(&StudioWrite {
            guard: Some(&guard(ws, caller, Permission::OperateStudios)),
            old: current,
            new: &next,
            expect: &StudioStatus::at_rest(),
            checkpoint: None,
        })
        .await?;
    submit(app, next, current.status).await
}

/// `POST …/stop`. From `running` or `starting` (cancelling the start: the job is
/// terminated or, not yet running, cancelled; no checkpoint then) the studio becomes
/// `stopping` and Batch is asked to end the job; the job's end makes it `stopped`.
/// Stopping again is fine (Batch is asked again). `force` ends a studio stuck in
/// `stopping` for longer than `FORCE_STOP_AFTER_SECONDS` at once: locks released, the
/// checkpoint recorded as its manifest says.
pub async fn stop_studio(
    app: &App,
    caller: &Caller,
    ws: &str,
    id: &str,
    force: bool,
) -> Result<Studio> {
    let mut current = authorized_studio(app, caller, ws, id, Permission::OperateStudios).await?;
    for _ in 0..APPLY_ATTEMPTS {
        match stop_once(app, caller, &current, force).await {
            // A concurrent change (another stop, an event): decide again on a fresh read.
            Err(e) if e.is_concurrent_update() => {
                current =
                    authorized_studio(app, caller, ws, id, Permission::OperateStudios).await?;
            }
            other => return other,
        }
    }
    Err(Error::Throttled)
}

async fn stop_once(app: &App, caller: &Caller, current: &Studio, force: bool) -> Result<Studio> {
    let ws = current.workspace_id.as_str();
    let guard = guard(ws, caller, Permission::OperateStudios);
    let stuck = age(&current.status_updated_at).num_seconds();
    let by = caller.user_ref();
    let after = app.config.force_stop_after_seconds;
    match transitions::stop(current, &by, force, stuck, after, &now())? {
        Stop::Request(next) => {
            app.store
                .write_studio(&StudioWrite {
                    guard: Some(&guard),
                    old: current,
                    new: &next,
                    expect: &[current.status],
                    checkpoint: None,
                })
                .await?;
            // A session whose agent is up saves and exits when it next reports (the
            // channel answers `stopRequested`); Batch is asked only after the grace
            // period. Without an agent (or while starting), Batch is asked at once.
            terminate_unless_saving(app, &next, &caller.id).await;
            Ok(*next)
        }
        // Already stopping: ask Batch again (harmless) unless the agent is still within
        // its grace period, answer as before; the role is checked as a write would,
        // since TerminateJob is an effect of its own.
        Stop::Again => {
            app.store.check_role(&guard).await?;
            terminate_unless_saving(app, current, &caller.id).await;
            Ok(current.clone())
        }
        // Stuck in `stopping` (its job does not end, or Batch lost it) for
        // `FORCE_STOP_AFTER_SECONDS`: ended at once, recorded in the status reason.
        Stop::Force(finish) => {
            terminate(app, current, &caller.id).await;
            finish_as(app, current, &finish, Actor::from(&by), Some(&guard)).await
        }
    }
}

/// Whether a stopping studio's agent is still within `STOP_GRACE_SECONDS` to save and
/// exit by itself.
pub(crate) fn agent_saving(app: &App, studio: &Studio) -> bool {
    let ready = studio.session.as_ref().is_some_and(Session::agent_ready);
    let grace = chrono::Duration::seconds(app.config.agent.stop_grace_seconds as i64);
    studio.status == StudioStatus::Stopping && ready && age(&studio.status_updated_at) < grace
}

async fn terminate_unless_saving(app: &App, studio: &Studio, by_id: &str) {
    if agent_saving(app, studio) {
        tracing::info!(
            studio = studio.id,
            "stop: the agent saves and exits; TerminateJob after the grace period"
        );
        schedule_deadline(app, studio).await;
        return;
    }
    terminate(app, studio, by_id).await;
}

/// TerminateJob at stop + `STOP_GRACE_SECONDS`, by a delayed message (not the 5-minute
/// reconciler, which would make the real grace 2–7 minutes). A failure to schedule is
/// logged: the reconciler still ends the stop later.
async fn schedule_deadline(app: &App, studio: &Studio) {
    let Some(session) = &studio.session else {
        return;
    };
    let deadline = crate::cleanup::StopDeadline {
        workspace_id: studio.workspace_id.clone(),
        studio_id: studio.id.clone(),
        attempt_id: session.attempt_id.clone(),
    };
    let grace = app.config.agent.stop_grace_seconds;
    if let Err(e) = app.tasks.schedule_stop_deadline(&deadline, grace).await {
        tracing::warn!(studio = studio.id, error = %e, "cannot schedule the stop's deadline; the reconciler ends it");
    }
}

/// A stop's deadline came: the studio still `stopping` in the same session (its agent
/// did not save and exit within the grace) has its job terminated. Anything else (it
/// stopped, or started again) is a no-op, so a repeated message is harmless.
pub async fn on_stop_deadline(app: &App, deadline: &crate::cleanup::StopDeadline) -> Result<()> {
    let fetched = app
        .store
        .fetch(
            &deadline.workspace_id,
            &[Key::Studio(deadline.studio_id.clone())],
        )
        .await?;
    let Some(studio) = fetched.studios.get(&deadline.studio_id) else {
        return Ok(());
    };
    let same_session = studio
        .session
        .as_ref()
        .is_some_and(|s| s.attempt_id == deadline.attempt_id);
    if studio.status == StudioStatus::Stopping && same_session {
        tracing::info!(
            studio = studio.id,
            "stop grace elapsed: TerminateJob (the agent did not exit by itself)"
        );
        let grace = app.config.agent.stop_grace_seconds;
        terminate_because(
            app,
            studio,
            &format!("Stopped from Studios: the session did not save and exit within the stop grace ({grace} s)"),
        )
        .await;
    }
    Ok(())
}

/// Asks Batch to end the session's job (it cancels a job that is not running yet). A
/// failure leaves the studio `stopping`; the reconciler asks again. The reason holds
/// ids only, bounded (Batch takes at most 1,024 characters).
pub(crate) async fn terminate(app: &App, studio: &Studio, by_id: &str) {
    terminate_because(
        app,
        studio,
        &format!("Stopped from Studios by user {by_id}"),
    )
    .await
}

async fn terminate_because(app: &App, studio: &Studio, reason: &str) {
    let Some(job_id) = studio.session.as_ref().and_then(|s| s.job_id.clone()) else {
        return;
    };
    let reason: String = reason.chars().take(500).collect();
    if let Err(e) = app.compute.terminate(&job_id, &reason).await {
        tracing::warn!(studio = studio.id, job_id, error = %e, "TerminateJob failed; the reconciler retries");
    }
}

/// Ends a session: status, locks released, checkpoint recorded (if the job ran), in
/// one transaction conditional on the studio being as read.
pub async fn finish_session(
    app: &App,
    studio: &Studio,
    finish: &Finish,
    actor: Actor,
) -> Result<()> {
    finish_as(app, studio, finish, actor, None)
        .await
        .map(|_| ())
}

/// `finish_session`, with the caller's role re-checked in the write when a user ends it.
async fn finish_as(
    app: &App,
    studio: &Studio,
    finish: &Finish,
    actor: Actor,
    guard: Option<&RoleGuard>,
) -> Result<Studio> {
    let Some(session) = &studio.session else {
        return Ok(studio.clone());
    };
    let now = now();
    let checkpoint = if finish.record_checkpoint {
        let (finalized, status_reason) =
            match app.objects.exists(&session.save_uri, MANIFEST).await? {
                Presence::Found => (true, None),
                Presence::Missing => (
                    false,
                    Some("the session wrote no manifest (its save did not finish)".to_string()),
                ),
                Presence::Unreadable(why) => {
                    tracing::warn!(studio = studio.id, why, "checkpoint manifest unreadable");
                    (false, Some(why))
                }
            };
        Some(transitions::checkpoint_of(
            studio,
            session,
            finalized,
            status_reason,
            &now,
        ))
    } else {
        None
    };
    let next = transitions::finished(studio, finish, actor, checkpoint.as_ref(), &now);
    app.store
        .write_studio(&StudioWrite {
            guard,
            old: studio,
            new: &next,
            expect: &[studio.status],
            checkpoint: checkpoint.as_ref(),
        })
        .await?;
    Ok(next)
}

/// A change the system makes (no caller role to check), if the studio is as read.
async fn write_as_system(
    app: &App,
    old: &Studio,
    new: &Studio,
    checkpoint: Option<&Checkpoint>,
) -> Result<()> {
    app.store
        .write_studio(&StudioWrite {
            guard: None,
            old,
            new,
            expect: &[old.status],
            checkpoint,
        })
        .await
}

/// What applying a job report did (for logs and the reconciler's report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Changed,
    Ignored(&'static str),
    UnknownStudio,
}

/// Applies a job report to its studio: one read, one conditional write. A write that
/// lost to a concurrent change is re-decided on a fresh read (bounded).
pub async fn apply_report(
    app: &App,
    ws: &str,
    studio_id: &str,
    report: &JobReport,
) -> Result<Applied> {
    for _ in 0..APPLY_ATTEMPTS {
        let fetched = app
            .store
            .fetch(ws, &[Key::Studio(studio_id.to_string())])
            .await?;
        let Some(studio) = fetched.studios.get(studio_id) else {
            return Ok(Applied::UnknownStudio);
        };
        // A look-alike job (same name, another queue) says nothing about this session.
        if report
            .queue
            .as_ref()
            .is_some_and(|q| q != &studio.compute_env.job_queue)
        {
            return Ok(Applied::Ignored("the job ran on another queue"));
        }
        // Nor one that does not run one of this stack's job definitions.
        let ours = format!(":job-definition/{}-", app.config.job_definitions.prefix);
        if report
            .definition
            .as_ref()
            .is_some_and(|d| !d.contains(&ours))
        {
            return Ok(Applied::Ignored(
                "the job does not use this stack's job definitions",
            ));
        }
        let written = match on_job_report(studio.status, studio.session.as_ref(), report) {
            Outcome::Ignore(why) => return Ok(Applied::Ignored(why)),
            Outcome::Progress {
                status,
                batch_status,
                reached_running,
            } => {
                let next = transitions::progressed(
                    studio,
                    &report.job_id,
                    status,
                    batch_status,
                    reached_running,
                    &now(),
                );
                write_as_system(app, studio, &next, None).await
            }
            Outcome::Finish(mut finish) => {
                // The agent knows best why its session ended.
                let failure = studio
                    .session
                    .as_ref()
                    .and_then(|s| s.agent.as_ref())
                    .and_then(|a| a.failure.clone());
                if let Some(failure) = failure {
                    finish.reason = Some(match (finish.status, finish.reason.take()) {
                        (StudioStatus::Errored, _) | (_, None) => failure,
                        (_, Some(reason)) => format!("{reason}; {failure}"),
                    });
                }
                let mut studio = studio.clone();
                if let Some(s) = studio.session.as_mut() {
                    s.job_id.get_or_insert_with(|| report.job_id.clone());
                    s.batch_status = finish.batch_status.or(s.batch_status);
                }
                finish_session(app, &studio, &finish, Actor::Batch).await
            }
        };
        match written {
            Ok(()) => return Ok(Applied::Changed),
            Err(e) if e.is_concurrent_update() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Throttled)
}

pub async fn list_mounts(app: &App, caller: &Caller, ws: &str) -> Result<Vec<HeldMount>> {
    let ws = workspace_id(ws)?;
    readable(app, caller, ws, app.store.list_mounts(ws)).await
}

/// `POST …/connect`: the running studio's URL; the caller is recorded as connected.
pub async fn connect_studio(
    app: &App,
    caller: &Caller,
    ws: &str,
    id: &str,
) -> Result<(Studio, String)> {
    let mut studio = authorized_studio(app, caller, ws, id, Permission::Connect).await?;
    let attempt_id = transitions::connectable(&studio)?.to_string();
    // Said before anything is recorded: without a relay (or a URL pattern of the
    // platform's own) no browser can reach a session.
    let Some(mut url) = app.config.connect_url(&studio.workspace_id, &studio.id) else {
        return Err(Conflict::ConnectUnavailable.into());
    };
    let connection = Connection {
        name: caller.name.clone(),
        last_seen_at: now(),
    };
    app.store
        .record_connection(
            &guard(&studio.workspace_id, caller, Permission::Connect),
            &studio,
            &attempt_id,
            &caller.id,
            &connection,
        )
        .await?;
    studio.connected_users.insert(caller.id.clone(), connection);
    if let Some(signer) = &app.connect {
        let now = chrono::Utc::now().timestamp();
        let claims = crate::connect::LinkClaims {
            sub: caller.id.clone(),
            name: caller.name.clone(),
            ws: studio.workspace_id.clone(),
            st: studio.id.clone(),
            att: attempt_id,
            iat: now,
            exp: now + crate::connect::LINK_SECONDS,
            jti: uuid::Uuid::new_v4().simple().to_string(),
        };
        let token = crate::connect::sign_link(signer.as_ref(), &claims).await?;
        url = crate::connect::with_token(&url, &token);
    }
    Ok((studio, url))
}
