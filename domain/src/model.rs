//! The product's entities, as stored and (mostly) as returned.

use super::lifecycle::{Actor, Session};
use super::{Role, S3Prefix, StudioStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Timestamps are RFC 3339 UTC strings with milliseconds: sortable and readable. The
/// domain never reads the clock: whoever calls it passes `now` in this form.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// How long after `from` the moment `to` is (zero if either cannot be read: judged as new).
pub fn elapsed(from: &str, to: &str) -> chrono::Duration {
    match (
        chrono::DateTime::parse_from_rfc3339(from),
        chrono::DateTime::parse_from_rfc3339(to),
    ) {
        (Ok(from), Ok(to)) => to - from,
        _ => chrono::Duration::zero(),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserRef {
    pub id: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub description: String,
    pub created_at: String,
    pub created_by: UserRef,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub workspace_id: String,
    /// Copied here so "my workspaces" is one query.
    pub workspace_name: String,
    pub user_id: String,
    pub name: Option<String>,
    pub role: Role,
    pub updated_at: String,
    pub updated_by: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComputeEnv {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub region: String,
    pub job_queue: String,
    pub gpu_enabled: bool,
    pub max_cpus: u32,
    #[serde(rename = "maxMemoryMiB")]
    pub max_memory_mib: u32,
    pub allowed_write_buckets: Vec<String>,
    pub work_dir: S3Prefix,
    /// The IAM role its sessions run with (their AWS credentials); none: the stack's
    /// default role, which may only read the stack's data buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_role_arn: Option<String>,
    pub created_at: String,
    pub created_by: UserRef,
}

/// What a studio keeps of its compute environment. A compute environment cannot be
/// changed and cannot be deleted while a studio uses it, so this copy never goes stale,
/// and an update or start needs no second read to validate against it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComputeEnvSnapshot {
    pub id: String,
    pub name: String,
    pub region: String,
    pub job_queue: String,
    pub gpu_enabled: bool,
    pub max_cpus: u32,
    #[serde(rename = "maxMemoryMiB")]
    pub max_memory_mib: u32,
    pub allowed_write_buckets: Vec<String>,
    pub work_dir: S3Prefix,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_role_arn: Option<String>,
}

impl From<&ComputeEnv> for ComputeEnvSnapshot {
    fn from(ce: &ComputeEnv) -> Self {
        ComputeEnvSnapshot {
            id: ce.id.clone(),
            name: ce.name.clone(),
            region: ce.region.clone(),
            job_queue: ce.job_queue.clone(),
            gpu_enabled: ce.gpu_enabled,
            max_cpus: ce.max_cpus,
            max_memory_mib: ce.max_memory_mib,
            allowed_write_buckets: ce.allowed_write_buckets.clone(),
            work_dir: ce.work_dir.clone(),
            job_role_arn: ce.job_role_arn.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataLink {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub uri: S3Prefix,
    pub region: String,
    pub created_at: String,
    pub created_by: UserRef,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TemplateKind {
    Jupyter,
    Rstudio,
    Vscode,
    Xpra,
}

impl TemplateKind {
    pub const ALL: [TemplateKind; 4] = [
        TemplateKind::Jupyter,
        TemplateKind::Rstudio,
        TemplateKind::Vscode,
        TemplateKind::Xpra,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TemplateKind::Jupyter => "jupyter",
            TemplateKind::Rstudio => "rstudio",
            TemplateKind::Vscode => "vscode",
            TemplateKind::Xpra => "xpra",
        }
    }

    pub fn parse(s: &str) -> Option<TemplateKind> {
        TemplateKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// `{"kind": "jupyter"}` or `{"image": "<uri>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Template {
    Kind { kind: TemplateKind },
    Image { image: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    pub cpus: u32,
    pub gpus: u32,
    #[serde(rename = "memoryMiB")]
    pub memory_mib: u32,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpus: 2,
            gpus: 0,
            memory_mib: 8192,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    pub uri: S3Prefix,
    pub name: String,
    pub mount_path: String,
    pub access: Access,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_link_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Parent {
    pub studio_id: String,
    pub checkpoint_id: String,
}

/// A member connected to the running session (keyed by user id in the studio).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    pub name: String,
    pub last_seen_at: String,
}

/// The user-editable part of a studio.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StudioConfig {
    pub name: String,
    pub description: String,
    pub template: Template,
    pub conda_packages: Vec<String>,
    pub resources: Resources,
    pub mounts: Vec<Mount>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Studio {
    pub id: String,
    pub workspace_id: String,
    #[serde(flatten)]
    pub config: StudioConfig,
    pub compute_env: ComputeEnvSnapshot,
    pub status: StudioStatus,
    pub status_reason: Option<String>,
    pub status_updated_at: String,
    pub author: UserRef,
    pub created_at: String,
    pub updated_at: String,
    pub last_started_at: Option<String>,
    pub parent: Option<Parent>,
    /// Who connected to the running session, by user id; cleared when it ends.
    #[serde(default)]
    pub connected_users: BTreeMap<String, Connection>,
    /// Optimistic-concurrency counter: every write is conditional on the version it read.
    pub version: u64,
    /// The run in progress (starting, running, stopping); `None` at rest.
    #[serde(default)]
    pub session: Option<Session>,
    /// Who made the last status change (published with it).
    #[serde(default)]
    pub status_actor: Option<Actor>,
    /// The newest finalized checkpoint: what a restart restores.
    #[serde(default)]
    pub latest_checkpoint: Option<CheckpointRef>,
    /// The checkpoint recorded by the last status change, if it recorded one.
    #[serde(default)]
    pub recorded_checkpoint: Option<CheckpointRef>,
    /// Checkpoints recorded so far (default names are "checkpoint-<n>").
    #[serde(default)]
    pub checkpoint_count: u32,
    /// Other studios whose saved checkpoint data this studio's history points into
    /// (inherited by "start as new"): their data is kept while this studio exists.
    #[serde(default)]
    pub data_origins: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointRef {
    pub id: String,
    pub uri: S3Prefix,
    /// Its manifest's SHA-256 as recorded (a restore refuses another manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointStatus {
    /// The session wrote its manifest: safe to restore.
    Finalized,
    /// No manifest: the save did not complete (killed after the grace period, crashed).
    Invalid,
}

/// The state a session saved when its job ended (docs/api.md). A clone holds its own
/// copies of the checkpoints it inherited: same id and data, its own name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    pub id: String,
    pub workspace_id: String,
    /// The studio whose history this record belongs to.
    pub studio_id: String,
    pub name: String,
    pub status: CheckpointStatus,
    /// Where the data is (under the work directory of the studio that saved it).
    pub uri: S3Prefix,
    /// The studio whose session saved the data (differs from `studio_id` if inherited).
    pub saved_by_studio_id: String,
    pub job_id: Option<String>,
    /// Who started the session that saved it.
    pub author: Option<UserRef>,
    /// When the session that writes it started.
    pub created_at: String,
    /// When the session ended and the checkpoint was recorded.
    pub saved_at: String,
    /// Why an `invalid` checkpoint is invalid (no manifest, or the manifest could not
    /// be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// The SHA-256 (hex) of the `manifest.json` the session reported writing: a restore
    /// refuses a manifest that no longer has it. Absent on checkpoints recorded before
    /// hashes were, or whose session's last report did not arrive (docs/security.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub manifest_sha256: Option<String>,
}

impl Checkpoint {
    pub fn reference(&self) -> CheckpointRef {
        CheckpointRef {
            id: self.id.clone(),
            uri: self.uri.clone(),
            manifest_sha256: self.manifest_sha256.clone(),
        }
    }

    pub fn is_inherited(&self) -> bool {
        self.saved_by_studio_id != self.studio_id
    }
}

impl Studio {
    /// A new studio, stopped, as `author` adds it.
    pub fn new(
        id: String,
        workspace_id: &str,
        config: StudioConfig,
        compute_env: ComputeEnvSnapshot,
        author: UserRef,
        now: &str,
    ) -> Studio {
        let now = now.to_string();
        Studio {
            id,
            workspace_id: workspace_id.to_string(),
            config,
            compute_env,
            status: super::StudioStatus::Stopped,
            status_reason: None,
            status_updated_at: now.clone(),
            status_actor: Some(Actor::from(&author)),
            author,
            created_at: now.clone(),
            updated_at: now,
            last_started_at: None,
            parent: None,
            connected_users: BTreeMap::new(),
            version: 1,
            session: None,
            latest_checkpoint: None,
            recorded_checkpoint: None,
            checkpoint_count: 0,
            data_origins: Vec::new(),
        }
    }

    /// Where this studio's sessions save their checkpoints: `<workDir>.studios/<id>/`.
    pub fn data_prefix(&self) -> S3Prefix {
        self.compute_env.work_dir.child(".studios").child(&self.id)
    }
}
