//! What the API returns (docs/api.md), as types. The handlers serialize these and the API
//! document (`GET /openapi.json`, docs/openapi.json) is derived from the same types, so
//! the two cannot drift apart.

use crate::lifecycle::BatchStatus;
use crate::locks::HeldMount;
use crate::*;
use serde::Serialize;
use utoipa::ToSchema;

/// `GET /workspaces`: the caller's workspaces and role in each.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceList {
    pub workspaces: Vec<WorkspaceSummary>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceSummary {
    pub id: String,
    pub name: String,
    pub role: Role,
}

/// A created workspace, with the creator's role (`owner`).
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceView {
    #[serde(flatten)]
    pub workspace: Workspace,
    pub role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    pub user_id: String,
    #[schema(required = true)]
    pub name: Option<String>,
    pub role: Role,
    pub updated_at: String,
    pub updated_by: String,
}

impl From<&Member> for MemberView {
    fn from(m: &Member) -> Self {
        MemberView {
            user_id: m.user_id.clone(),
            name: m.name.clone(),
            role: m.role,
            updated_at: m.updated_at.clone(),
            updated_by: m.updated_by.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberList {
    pub members: Vec<MemberView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComputeEnvList {
    pub compute_envs: Vec<ComputeEnv>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataLinkList {
    pub data_links: Vec<DataLink>,
}

/// A template the stack offers, with the image its studios run.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateEntry {
    pub kind: TemplateKind,
    pub image: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateList {
    pub templates: Vec<TemplateEntry>,
}

/// A studio as the API returns it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StudioView {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub description: String,
    pub template: Template,
    pub conda_packages: Vec<String>,
    pub compute_env: ComputeEnvRef,
    pub resources: Resources,
    pub mounts: Vec<Mount>,
    pub status: StudioStatus,
    #[schema(required = true)]
    pub status_reason: Option<String>,
    pub status_updated_at: String,
    pub author: UserRef,
    pub created_at: String,
    pub updated_at: String,
    #[schema(required = true)]
    pub last_started_at: Option<String>,
    /// Set for a clone: the studio and checkpoint it started from.
    #[schema(required = true)]
    pub parent: Option<Parent>,
    /// Most recent first; cleared when the session ends.
    pub connected_users: Vec<ConnectedUser>,
    /// While starting, running or stopping.
    #[schema(required = true)]
    pub session: Option<SessionView>,
    /// What the next start restores.
    #[schema(required = true)]
    pub restore_from: Option<RestoreFrom>,
    /// The share link while running (opening it still goes through `connect`).
    #[schema(required = true)]
    pub url: Option<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ComputeEnvRef {
    pub id: String,
    pub name: String,
    pub region: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectedUser {
    pub id: String,
    pub name: String,
    pub last_seen_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    #[schema(required = true)]
    pub job_id: Option<String>,
    /// AWS Batch's status of the job.
    #[schema(required = true)]
    pub job_status: Option<BatchStatus>,
    pub started_at: String,
    #[schema(required = true)]
    pub stop_requested_by: Option<UserRef>,
    /// The session's agent reported that its IDE answers.
    pub ready: bool,
    /// The last user request the agent saw, to the minute.
    #[schema(required = true)]
    pub last_activity_at: Option<String>,
    /// What the session does before it is ready (`restoring the checkpoint`, …).
    #[schema(required = true)]
    pub progress: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreFrom {
    pub checkpoint_id: String,
    pub uri: S3Prefix,
}

impl StudioView {
    /// `url` is the studio's share link while it runs.
    pub fn of(studio: &Studio, warnings: &[String], url: Option<String>) -> StudioView {
        let c = &studio.config;
        let mut connected: Vec<_> = studio.connected_users.iter().collect();
        connected.sort_by(|a, b| b.1.last_seen_at.cmp(&a.1.last_seen_at).then(a.0.cmp(b.0)));
        StudioView {
            id: studio.id.clone(),
            workspace_id: studio.workspace_id.clone(),
            name: c.name.clone(),
            description: c.description.clone(),
            template: c.template.clone(),
            conda_packages: c.conda_packages.clone(),
            compute_env: ComputeEnvRef {
                id: studio.compute_env.id.clone(),
                name: studio.compute_env.name.clone(),
                region: studio.compute_env.region.clone(),
            },
            resources: c.resources,
            mounts: c.mounts.clone(),
            status: studio.status,
            status_reason: studio.status_reason.clone(),
            status_updated_at: studio.status_updated_at.clone(),
            author: studio.author.clone(),
            created_at: studio.created_at.clone(),
            updated_at: studio.updated_at.clone(),
            last_started_at: studio.last_started_at.clone(),
            parent: studio.parent.clone(),
            connected_users: connected
                .into_iter()
                .map(|(id, c)| ConnectedUser {
                    id: id.clone(),
                    name: c.name.clone(),
                    last_seen_at: c.last_seen_at.clone(),
                })
                .collect(),
            session: studio.session.as_ref().map(|s| SessionView {
                job_id: s.job_id.clone(),
                job_status: s.batch_status,
                started_at: s.started_at.clone(),
                stop_requested_by: s.stop_requested_by.clone(),
                ready: s.agent_ready(),
                last_activity_at: s.agent.as_ref().and_then(|a| a.last_activity_at.clone()),
                progress: s.agent.as_ref().and_then(|a| a.detail.clone()),
            }),
            restore_from: studio.latest_checkpoint.as_ref().map(|c| RestoreFrom {
                checkpoint_id: c.id.clone(),
                uri: c.uri.clone(),
            }),
            url,
            warnings: warnings.to_vec(),
        }
    }
}

/// A page of studios, newest first; `nextCursor` continues it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StudioPage {
    pub studios: Vec<StudioView>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// A connect link: the studio's URL with a short-lived, single-use token.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectLink {
    pub url: String,
}

/// A page of checkpoints, newest first; `nextCursor` continues it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointPage {
    pub checkpoints: Vec<Checkpoint>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StudioRef {
    pub id: String,
    pub name: String,
}

/// A path held by a running session.
#[derive(Debug, Serialize, ToSchema)]
pub struct MountHolder {
    pub uri: S3Prefix,
    pub studio: StudioRef,
    pub since: String,
}

impl From<&HeldMount> for MountHolder {
    fn from(h: &HeldMount) -> Self {
        MountHolder {
            uri: h.holder.path.clone(),
            studio: StudioRef {
                id: h.holder.studio_id.clone(),
                name: h.holder.studio_name.clone(),
            },
            since: h.since.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MountList {
    pub mounts: Vec<MountHolder>,
}

/// Every error: `{"error": {code, message, field?}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs (`invalid_request`, `mount_locked`, …: docs/api.md).
    pub code: String,
    /// For people.
    pub message: String,
    /// The request field a 400 is about (`resources.cpus`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
