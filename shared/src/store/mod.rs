//! The storage port: what the service needs from a database, in the product's words.
//! `dynamo` is the adapter; every write is one conditional `TransactWriteItems`, and a
//! failed condition comes back as a typed `Error`, never as a string to parse.

pub mod dynamo;

pub use crate::domain::locks::HeldMount;
use crate::domain::locks::Holder;
use crate::domain::search::StudioFilter;
use crate::domain::*;
use crate::error::Result;
use async_trait::async_trait;
use std::collections::HashMap;

/// Items to read together in one round trip.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Workspace,
    Member(String),
    ComputeEnv(String),
    DataLink(String),
    Studio(String),
    Lock(S3Prefix),
    /// A checkpoint record of a studio's history: (studio id, checkpoint id).
    Checkpoint(String, String),
}

/// A mount-lock item as read: its holder, and the sessions holding paths below it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LockState {
    pub holder: Option<Holder>,
    pub intents: Vec<Holder>,
}

/// A studio change written as one transaction.
pub struct StudioWrite<'a> {
    /// The caller's role, re-checked in the write (`None`: the system acts).
    pub guard: Option<&'a RoleGuard>,
    pub old: &'a Studio,
    pub new: &'a Studio,
    /// The statuses `old` must still be in (with its version) for the write to apply.
    pub expect: &'a [StudioStatus],
    /// Recorded with the change (the end of a session that ran).
    pub checkpoint: Option<&'a Checkpoint>,
}

#[derive(Clone, Debug)]
pub struct WorkspaceRecord {
    pub workspace: Workspace,
    pub owner_count: u32,
}

/// What a `fetch` found; absent keys are simply missing from the maps.
#[derive(Default, Debug)]
pub struct Fetched {
    pub workspace: Option<WorkspaceRecord>,
    pub members: HashMap<String, Member>,
    pub compute_envs: HashMap<String, ComputeEnv>,
    pub data_links: HashMap<String, DataLink>,
    pub studios: HashMap<String, Studio>,
    /// By checkpoint id.
    pub checkpoints: HashMap<String, Checkpoint>,
}

/// What a clone ("start as new") takes from its source, written with it.
pub struct Lineage<'a> {
    /// Must still exist when the clone is written (its data is what the clone uses).
    pub source_id: &'a str,
    /// The clone's copies of the inherited checkpoint records, oldest first.
    pub history: &'a [Checkpoint],
}

/// The caller's role as read, re-checked inside the write (a `ConditionCheck`) so that a
/// concurrent demotion cannot slip a write through.
#[derive(Clone, Debug)]
pub struct RoleGuard {
    pub workspace_id: String,
    pub user_id: String,
    pub roles: Vec<Role>,
}

impl RoleGuard {
    pub fn new(workspace_id: &str, user_id: &str, permission: Permission) -> Self {
        RoleGuard {
            workspace_id: workspace_id.to_string(),
            user_id: user_id.to_string(),
            roles: Role::holders(permission),
        }
    }
}

/// A member's new role, with what it replaces (`None`: a new member).
#[derive(Clone, Debug)]
pub struct MemberChange {
    pub member: Member,
    pub previous_role: Option<Role>,
}

#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Opaque; passed back as `cursor` to continue.
    pub next_cursor: Option<String>,
}

/// One consistent read of several items of a workspace (every action starts with it).
#[async_trait]
pub trait Reads: Send + Sync {
    /// One consistent read of several items of a workspace.
    async fn fetch(&self, workspace_id: &str, keys: &[Key]) -> Result<Fetched>;
}

/// Workspaces and their members.
#[async_trait]
pub trait WorkspaceStore: Send + Sync {
    /// The caller's memberships across workspaces.
    async fn memberships(&self, user_id: &str) -> Result<Vec<Member>>;
    async fn list_members(&self, workspace_id: &str) -> Result<Vec<Member>>;
    async fn create_workspace(&self, workspace: &Workspace, owner: &Member) -> Result<()>;
    /// Fails with `Conflict::LastOwner` if it would leave the workspace without an owner.
    async fn put_member(&self, guard: &RoleGuard, change: &MemberChange) -> Result<()>;
    async fn remove_member(&self, guard: &RoleGuard, member: &Member) -> Result<()>;
    /// The caller's role, checked as a write would (one `ConditionCheck`): for effects
    /// outside the table (a TerminateJob) that must still follow the role.
    async fn check_role(&self, guard: &RoleGuard) -> Result<()>;
}

/// Compute environments and data links.
#[async_trait]
pub trait CatalogStore: Send + Sync {
    async fn list_compute_envs(&self, workspace_id: &str) -> Result<Vec<ComputeEnv>>;
    async fn list_data_links(&self, workspace_id: &str) -> Result<Vec<DataLink>>;
    async fn create_compute_env(&self, guard: &RoleGuard, ce: &ComputeEnv) -> Result<()>;
    /// Fails with `Conflict::ComputeEnvInUse` while a studio uses it.
    async fn delete_compute_env(&self, guard: &RoleGuard, ce: &ComputeEnv) -> Result<()>;
    async fn create_data_link(&self, guard: &RoleGuard, link: &DataLink) -> Result<()>;
    async fn delete_data_link(&self, guard: &RoleGuard, link_id: &str) -> Result<()>;
}

/// Studios and their sessions.
#[async_trait]
pub trait StudioStore: Send + Sync {
    /// Newest first.
    async fn list_studios(
        &self,
        workspace_id: &str,
        filter: &StudioFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Studio>>;
    /// Fails with `Conflict::NameTaken` if the name is in use in the workspace; with a
    /// session (add-and-start) also takes its mount locks, or fails with `Conflict::MountLocked`. A
    /// clone is written with its inherited history and registered as a dependent of the
    /// checkpoint data it points into.
    async fn create_studio(
        &self,
        guard: &RoleGuard,
        studio: &Studio,
        lineage: Option<&Lineage<'_>>,
    ) -> Result<()>;
    /// Writes `new` over `old`: renames claim the new name; a new session takes its mount
    /// locks (`Conflict::MountLocked` naming the holder); an ended session releases
    /// them; a checkpoint is recorded once.
    async fn write_studio(&self, write: &StudioWrite<'_>) -> Result<()>;
    /// Records the job id of the session `attempt_id` (no-op if it ended or has one).
    async fn record_job(&self, studio: &Studio, attempt_id: &str, job_id: &str) -> Result<()>;
    /// Records what the agent of the session `attempt_id` reported; `false` if that
    /// session has ended.
    async fn record_agent(
        &self,
        studio: &Studio,
        attempt_id: &str,
        agent: &crate::domain::lifecycle::AgentState,
    ) -> Result<bool>;
    /// Records `user_id` as connected to the session `attempt_id`, if it still runs
    /// (`Conflict::NotRunning` otherwise).
    async fn record_connection(
        &self,
        guard: &RoleGuard,
        studio: &Studio,
        attempt_id: &str,
        user_id: &str,
        connection: &Connection,
    ) -> Result<()>;
    /// Every studio with a session (starting, running, stopping), across workspaces.
    async fn active_studios(&self) -> Result<Vec<Studio>>;
    /// Deletes if the stored studio is still `studio` (same version) and at rest, and
    /// withdraws it as a dependent of the checkpoint data it used.
    async fn delete_studio(&self, guard: &RoleGuard, studio: &Studio) -> Result<()>;
}

/// Mount locks beyond the studio transactions that take and release them.
#[async_trait]
pub trait LockStore: Send + Sync {
    async fn list_mounts(&self, workspace_id: &str) -> Result<Vec<HeldMount>>;
    /// Deletes a mount-lock item if it still has neither holder nor intents (a start may
    /// have taken it again meanwhile); whether it did.
    async fn delete_empty_lock(&self, ws: &str, sort_key: &str) -> Result<bool>;
}

/// Checkpoint records and the data they point to.
#[async_trait]
pub trait CheckpointStore: Send + Sync {
    /// A page of a studio's checkpoints, newest first.
    async fn list_checkpoints(
        &self,
        workspace_id: &str,
        studio_id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Checkpoint>>;
    /// A studio's whole checkpoint history, oldest first.
    async fn history(&self, workspace_id: &str, studio_id: &str) -> Result<Vec<Checkpoint>>;
    /// Renames `checkpoint` (as read) to `name`: `Conflict::CheckpointNameTaken` if
    /// another checkpoint of the studio has it.
    async fn rename_checkpoint(
        &self,
        guard: &RoleGuard,
        checkpoint: &Checkpoint,
        name: &str,
    ) -> Result<()>;
    /// Removes the checkpoint records of a deleted studio; returns how many.
    async fn purge_checkpoints(&self, workspace_id: &str, studio_id: &str) -> Result<usize>;
    /// Stops tracking the checkpoint data saved by `studio_id` if no studio depends on
    /// it any more. `true`: nothing can depend on it again, so it may be deleted.
    async fn release_data(&self, workspace_id: &str, studio_id: &str) -> Result<bool>;
}

/// The storage port: one narrow port per aggregate; a store is all of them.
pub trait Store:
    Reads + WorkspaceStore + CatalogStore + StudioStore + LockStore + CheckpointStore
{
}

impl<T> Store for T where
    T: Reads + WorkspaceStore + CatalogStore + StudioStore + LockStore + CheckpointStore
{
}

/// One change of the table, as the stream reports it.
#[derive(Clone, Debug)]
pub enum Change {
    Studio {
        old: Option<Box<Studio>>,
        new: Option<Box<Studio>>,
    },
    CheckpointAdded(Box<Checkpoint>),
    /// A mount-lock item lost its last holder and intent (released): it can go.
    LockEmptied {
        workspace_id: String,
        sort_key: String,
    },
    /// No studio depends on the checkpoint data saved by `studio_id` any more.
    DataReleased {
        workspace_id: String,
        studio_id: String,
        prefix: Option<S3Prefix>,
    },
}
