//! The local run's demo data, created through the same service functions the API runs:
//! workspace `demo` (alice owner, bob maintain, carol connect, dave view), a compute
//! environment on the emulated job queue, and two data links.

use studios_shared::domain::validate::{
    ComputeEnvInput, DataLinkInput, MemberInput, WorkspaceInput,
};
use studios_shared::service::{self, Caller};
use studios_shared::{App, Result};

/// (subject, display name, role in `demo`).
pub const USERS: [(&str, &str, &str); 4] = [
    ("alice", "Alice", "owner"),
    ("bob", "Bob", "maintain"),
    ("carol", "Carol", "connect"),
    ("dave", "Dave", "view"),
];
pub const WORKSPACE: &str = "demo";
pub const WORK_BUCKET: &str = "studios-local-work";
pub const DATA_BUCKET: &str = "studios-demo-data";

/// Creates the demo workspace (as alice, who must be a platform admin) unless alice
/// already has one. Returns its id.
pub async fn bootstrap(app: &App, job_queue: &str) -> Result<String> {
    let alice = Caller {
        id: USERS[0].0.into(),
        name: USERS[0].1.into(),
        api_url: None,
    };
    if let Some(m) = service::list_workspaces(app, &alice)
        .await?
        .into_iter()
        .find(|m| m.workspace_name == WORKSPACE)
    {
        return Ok(m.workspace_id);
    }
    let (ws, _) = service::create_workspace(
        app,
        &alice,
        WorkspaceInput {
            name: WORKSPACE.into(),
            description: Some("Demo workspace of the local run".into()),
        },
    )
    .await?;
    for (sub, name, role) in &USERS[1..] {
        let input = MemberInput {
            role: role.to_string(),
            name: Some(name.to_string()),
        };
        service::set_member(app, &alice, &ws.id, sub, input).await?;
    }
    let ce = ComputeEnvInput {
        name: "local-queue".into(),
        region: "us-east-1".into(),
        job_queue: job_queue.into(),
        gpu_enabled: false,
        max_cpus: 16,
        max_memory_mib: 65536,
        allowed_write_buckets: vec![WORK_BUCKET.into()],
        work_dir: format!("s3://{WORK_BUCKET}/{}/", ws.id),
        job_role_arn: None,
    };
    service::create_compute_env(app, &alice, &ws.id, ce).await?;
    for (name, prefix) in [("reads", "reads/"), ("reference", "reference/grch38/")] {
        let link = DataLinkInput {
            name: name.into(),
            uri: format!("s3://{DATA_BUCKET}/{prefix}"),
            region: "us-east-1".into(),
        };
        service::create_data_link(app, &alice, &ws.id, link).await?;
    }
    Ok(ws.id)
}
