//! The one error type of the control plane. Variants follow what the caller should do;
//! the HTTP edge (`studios_shared::http::error_response`) maps them to status codes in exactly one place.

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of thing was not found (also used for "not visible to you").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Workspace,
    Member,
    ComputeEnv,
    DataLink,
    Studio,
    Checkpoint,
    Route,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Missing::Workspace => "workspace",
            Missing::Member => "member",
            Missing::ComputeEnv => "compute environment",
            Missing::DataLink => "data link",
            Missing::Checkpoint => "checkpoint",
            Missing::Studio => "studio",
            Missing::Route => "route",
        })
    }
}

/// Why the current state forbids a change (409), with what explains it. Its `code` (the
/// API's machine-readable `error.code`, docs/api.md) and its wording are chosen here, in
/// one place; who detects a conflict only says which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// Another write changed the item between this request's read and its write.
    ConcurrentUpdate(Changed),
    /// Another studio of the workspace has this name (case ignored).
    NameTaken {
        name: String,
    },
    /// A start of a studio that is not at rest.
    AlreadyActive {
        studio: String,
        status: &'static str,
    },
    /// A change only a studio at rest (`stopped`, `errored`) allows.
    NotAtRest {
        studio: String,
        status: &'static str,
        doing: &'static str,
    },
    /// A clone without a checkpoint of a studio that is not at rest.
    CloneSourceActive {
        studio: String,
        status: &'static str,
    },
    /// A stop of a studio that has no session.
    NothingToStop {
        studio: String,
        status: &'static str,
    },
    /// A connect to a studio that is not running.
    NotRunning {
        studio: String,
        status: &'static str,
    },
    /// A forced stop before the studio has been stopping long enough.
    StopInProgress {
        studio: String,
        since: String,
        force_after_minutes: u64,
    },
    /// AWS Batch refused the job (its error code and message).
    BatchRejected {
        reason: String,
    },
    /// A mount (or a path above or below it) is held by a running session.
    MountLocked {
        requested: String,
        holder: Option<LockHolder>,
    },
    ComputeEnvInUse {
        name: String,
        studios: u64,
    },
    /// Removing or demoting the last owner.
    LastOwner {
        removing: bool,
    },
    NoCheckpoint {
        studio: String,
    },
    CheckpointInvalid {
        checkpoint: String,
    },
    CheckpointInUse {
        checkpoint: String,
        studio: String,
    },
    CheckpointNameTaken {
        name: Option<String>,
    },
    /// The session's checkpoint was recorded already.
    CheckpointRecorded,
    /// The data a clone's history points into was deleted meanwhile.
    CheckpointDataGone {
        origin: String,
    },
    /// A new item's id exists already (`kind`: workspace, member, studio, …).
    IdTaken {
        kind: &'static str,
    },
    /// The stack has no way for a browser to reach a session (no connect relay).
    ConnectUnavailable,
}

/// What a concurrent write changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// The studio, now in this status.
    Studio {
        status: String,
    },
    Member,
    Checkpoint,
}

/// Who holds a path a mount collides with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub studio_id: String,
    pub studio_name: String,
    pub path: String,
}

impl Conflict {
    /// The API's `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Conflict::ConcurrentUpdate(_) => "concurrent_update",
            Conflict::NameTaken { .. } => "name_taken",
            Conflict::AlreadyActive { .. }
            | Conflict::NotAtRest { .. }
            | Conflict::CloneSourceActive { .. } => "studio_not_stopped",
            Conflict::NothingToStop { .. } | Conflict::NotRunning { .. } => "studio_not_running",
            Conflict::StopInProgress { .. } => "stop_in_progress",
            Conflict::BatchRejected { .. } => "batch_rejected",
            Conflict::MountLocked { .. } => "mount_locked",
            Conflict::ComputeEnvInUse { .. } => "compute_env_in_use",
            Conflict::LastOwner { .. } => "last_owner",
            Conflict::NoCheckpoint { .. } => "no_checkpoint",
            Conflict::CheckpointInvalid { .. } => "checkpoint_invalid",
            Conflict::CheckpointInUse { .. } => "checkpoint_in_use",
            Conflict::CheckpointNameTaken { .. } => "checkpoint_name_taken",
            Conflict::CheckpointRecorded => "checkpoint_exists",
            Conflict::CheckpointDataGone { .. } => "checkpoint_data_gone",
            Conflict::IdTaken { kind: "workspace" } => "workspace_exists",
            Conflict::IdTaken { kind: "member" } => "member_exists",
            Conflict::IdTaken { .. } => "exists",
            Conflict::ConnectUnavailable => "connect_unavailable",
        }
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conflict::ConcurrentUpdate(Changed::Studio { status }) => write!(
                f,
                "the studio changed meanwhile (it is now {status}); read it again and retry"
            ),
            Conflict::ConcurrentUpdate(Changed::Member) => f.write_str(
                "the member was changed by someone else meanwhile; read it again and retry",
            ),
            Conflict::ConcurrentUpdate(Changed::Checkpoint) => f.write_str(
                "the checkpoint was renamed by someone else meanwhile; read it again and retry",
            ),
            Conflict::NameTaken { name } => {
                write!(f, "a studio named '{name}' already exists in this workspace")
            }
            Conflict::AlreadyActive { studio, status } => {
                write!(f, "studio '{studio}' is already {status}")
            }
            Conflict::NotAtRest {
                studio,
                status,
                doing,
            } => write!(
                f,
                "cannot {doing} studio '{studio}' while it is {status}; stop it first"
            ),
            Conflict::CloneSourceActive { studio, status } => write!(
                f,
                "studio '{studio}' is {status}; pass checkpointId to start from one of its earlier checkpoints"
            ),
            Conflict::NothingToStop { studio, status } => {
                write!(f, "studio '{studio}' is {status}")
            }
            Conflict::NotRunning { studio, status } => {
                write!(f, "studio '{studio}' is {status}; connect once it is running")
            }
            Conflict::StopInProgress {
                studio,
                since,
                force_after_minutes,
            } => write!(
                f,
                "studio '{studio}' has been stopping since {since}; a forced stop is possible {force_after_minutes} minutes after that"
            ),
            Conflict::BatchRejected { reason } => write!(
                f,
                "AWS Batch refused the job: {reason}; the studio is now errored"
            ),
            Conflict::MountLocked { requested, holder } => match holder {
                Some(h) if &h.path == requested => write!(
                    f,
                    "{requested} is mounted by running studio '{}' ({}); stop it first",
                    h.studio_name, h.studio_id
                ),
                Some(h) => write!(
                    f,
                    "{requested} overlaps {}, mounted by running studio '{}' ({}); stop it first",
                    h.path, h.studio_name, h.studio_id
                ),
                None => write!(f, "{requested} is mounted by another running studio"),
            },
            Conflict::ComputeEnvInUse { name, studios } => write!(
                f,
                "compute environment '{name}' is used by {studios} studio(s); delete them first"
            ),
            Conflict::LastOwner { removing: true } => {
                f.write_str("the last owner cannot be removed; make someone else owner first")
            }
            Conflict::LastOwner { removing: false } => f.write_str(
                "a workspace must keep at least one owner; make someone else owner first",
            ),
            Conflict::NoCheckpoint { studio } => {
                write!(f, "studio '{studio}' has no finalized checkpoint to start from")
            }
            Conflict::CheckpointInvalid { checkpoint } => write!(
                f,
                "checkpoint '{checkpoint}' is invalid (its save did not complete); choose a finalized one"
            ),
            Conflict::CheckpointInUse { checkpoint, studio } => write!(
                f,
                "checkpoint '{checkpoint}' is in use by the running session of studio '{studio}'; choose another or stop it first"
            ),
            Conflict::CheckpointNameTaken { name: Some(name) } => {
                write!(f, "another checkpoint of this studio is named '{name}'")
            }
            Conflict::CheckpointNameTaken { name: None } => {
                f.write_str("the checkpoint name is taken")
            }
            Conflict::CheckpointRecorded => f.write_str("the checkpoint was already recorded"),
            Conflict::CheckpointDataGone { origin } => write!(
                f,
                "the checkpoint data saved by studio {origin} was deleted meanwhile"
            ),
            Conflict::IdTaken { kind } => write!(f, "a {kind} with this id exists"),
            Conflict::ConnectUnavailable => f.write_str(
                "this Studios stack runs no connect relay (its RelayDomain parameter is empty), so no browser can reach a session; ask the platform team to deploy the relay (docs/deploy.md)",
            ),
        }
    }
}

impl From<Conflict> for Error {
    fn from(c: Conflict) -> Self {
        Error::Conflict(c)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed: fix `field` and send it again (400).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// No caller identity (401).
    #[error("authentication required")]
    Unauthenticated,
    /// The caller is a member but lacks the permission (403).
    #[error("{0}")]
    Forbidden(String),
    /// Absent, or not visible to the caller (404).
    #[error("{0} not found")]
    NotFound(Missing),
    /// The current state forbids the change (409).
    #[error("{0}")]
    Conflict(Conflict),
    /// The body is not JSON by its Content-Type (415).
    #[error("the request body must be JSON (Content-Type: application/json), not {0}")]
    UnsupportedMediaType(String),
    /// A known path with another method (405 + Allow).
    #[error("{method} is not allowed here; use {allow}")]
    MethodNotAllowed { method: String, allow: String },
    /// DynamoDB throttled us or transactions kept colliding: retry later (503 + Retry-After).
    #[error("the service is busy; retry shortly")]
    Throttled,
    /// Anything else: logged with detail, answered with a safe message (500).
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Whether another write changed what this one read (decide again on a fresh read).
    pub fn is_concurrent_update(&self) -> bool {
        matches!(self, Error::Conflict(Conflict::ConcurrentUpdate(_)))
    }

    pub fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Internal(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_conflict_names_the_path_and_who_holds_it() {
        let holder = LockHolder {
            studio_id: "st-1".into(),
            studio_name: "QC".into(),
            path: "s3://bkt/reads/".into(),
        };
        let locked = |requested: &str, holder: Option<LockHolder>| Conflict::MountLocked {
            requested: requested.into(),
            holder,
        };
        let same = locked("s3://bkt/reads/", Some(holder.clone()));
        assert_eq!(same.code(), "mount_locked");
        assert_eq!(
            same.to_string(),
            "s3://bkt/reads/ is mounted by running studio 'QC' (st-1); stop it first"
        );
        assert_eq!(
            locked("s3://bkt/reads/x/", Some(holder)).to_string(),
            "s3://bkt/reads/x/ overlaps s3://bkt/reads/, mounted by running studio 'QC' (st-1); stop it first"
        );
    }

    #[test]
    fn codes_are_the_documented_ones() {
        let docs = include_str!("../../docs/api.md");
        let all = [
            Conflict::ConcurrentUpdate(Changed::Member),
            Conflict::NameTaken { name: "n".into() },
            Conflict::NotAtRest {
                studio: "s".into(),
                status: "running",
                doing: "delete",
            },
            Conflict::NothingToStop {
                studio: "s".into(),
                status: "stopped",
            },
            Conflict::StopInProgress {
                studio: "s".into(),
                since: "t".into(),
                force_after_minutes: 15,
            },
            Conflict::BatchRejected { reason: "r".into() },
            Conflict::MountLocked {
                requested: "s3://b/".into(),
                holder: None,
            },
            Conflict::ComputeEnvInUse {
                name: "c".into(),
                studios: 1,
            },
            Conflict::LastOwner { removing: true },
            Conflict::NoCheckpoint { studio: "s".into() },
            Conflict::CheckpointInvalid {
                checkpoint: "c".into(),
            },
            Conflict::CheckpointInUse {
                checkpoint: "c".into(),
                studio: "s".into(),
            },
            Conflict::CheckpointNameTaken { name: None },
        ];
        for c in all {
            assert!(
                docs.contains(&format!("`{}`", c.code())),
                "{} is not in docs/api.md",
                c.code()
            );
        }
        assert!(Error::from(Conflict::ConcurrentUpdate(Changed::Checkpoint)).is_concurrent_update());
        assert!(!Error::from(Conflict::LastOwner { removing: false }).is_concurrent_update());
    }
}
