//! Compute environments and data links: what a workspace's studios run on and mount.
//! Reads are open to every member, changes to administrators; both kinds share one
//! get and one delete path.

use crate::access::*;
use crate::clock::new_id;
use crate::compute::QueuePlatform;
use crate::domain::ids::IdKind;
use crate::domain::validate::{self, ComputeEnvInput, DataLinkInput};
use crate::domain::*;
use crate::error::{Error, Missing, Result};
use crate::store::*;

pub async fn list_compute_envs(app: &App, caller: &Caller, ws: &str) -> Result<Vec<ComputeEnv>> {
    let ws = workspace_id(ws)?;
    readable(app, caller, ws, app.store.list_compute_envs(ws)).await
}

pub async fn create_compute_env(
    app: &App,
    caller: &Caller,
    ws: &str,
    input: ComputeEnvInput,
) -> Result<ComputeEnv> {
    let ws = workspace_id(ws)?;
    let ce = validate::compute_env(
        input,
        new_id(IdKind::ComputeEnv),
        ws.to_string(),
        caller.user_ref(),
        &crate::clock::now(),
    )?;
    validate::within_stack(&ce, &app.config.stack_limits)?;
    // Authorized before asking AWS Batch anything (a stranger's request costs no call).
    let fetched = app
        .store
        .fetch(ws, &[Key::Member(caller.id.clone())])
        .await?;
    authorize(&fetched.members, caller, Permission::Administer)?;
    let unsupported = |what: &str| {
        Error::invalid(
            "jobQueue",
            format!("the queue runs on {what}, which Studios does not support: sessions need GPUs and FUSE for S3 mounts (EC2 only); use a queue of EC2 compute environments"),
        )
    };
    match app.compute.queue_platform(&ce.job_queue).await? {
        QueuePlatform::Ec2 => {}
        QueuePlatform::Fargate => return Err(unsupported("AWS Fargate")),
        QueuePlatform::Eks => return Err(unsupported("Amazon EKS")),
        QueuePlatform::Missing => {
            return Err(Error::invalid(
                "jobQueue",
                format!("AWS Batch has no job queue {}", ce.job_queue),
            ))
        }
    }
    // The role is checked again in the write.
    app.store
        .create_compute_env(&guard(ws, caller, Permission::Administer), &ce)
        .await?;
    Ok(ce)
}

pub async fn get_compute_env(app: &App, caller: &Caller, ws: &str, id: &str) -> Result<ComputeEnv> {
    get_item(app, caller, ws, id).await
}

/// One read (the caller's membership and the compute environment: its queue's claim is
/// released in the same write) and one conditional write.
pub async fn delete_compute_env(app: &App, caller: &Caller, ws: &str, id: &str) -> Result<()> {
    let ws = workspace_id(ws)?;
    if let Err(e) = resource_id(IdKind::ComputeEnv, id, Missing::ComputeEnv) {
        // Still answer 404-for-non-members before 404-for-the-id: check the role first.
        return check_only(app, ws, caller, Permission::Administer, e).await;
    }
    let keys = [
        Key::Member(caller.id.clone()),
        Key::ComputeEnv(id.to_string()),
    ];
    let mut fetched = app.store.fetch(ws, &keys).await?;
    authorize(&fetched.members, caller, Permission::Administer)?;
    let ce = fetched
        .compute_envs
        .remove(id)
        .ok_or(Error::NotFound(Missing::ComputeEnv))?;
    app.store
        .delete_compute_env(&guard(ws, caller, Permission::Administer), &ce)
        .await
}

pub async fn list_data_links(app: &App, caller: &Caller, ws: &str) -> Result<Vec<DataLink>> {
    let ws = workspace_id(ws)?;
    readable(app, caller, ws, app.store.list_data_links(ws)).await
}

pub async fn create_data_link(
    app: &App,
    caller: &Caller,
    ws: &str,
    input: DataLinkInput,
) -> Result<DataLink> {
    let ws = workspace_id(ws)?;
    let link = validate::data_link(
        input,
        new_id(IdKind::DataLink),
        ws.to_string(),
        caller.user_ref(),
        &crate::clock::now(),
    )?;
    app.store
        .create_data_link(&guard(ws, caller, Permission::Administer), &link)
        .await?;
    Ok(link)
}

pub async fn get_data_link(app: &App, caller: &Caller, ws: &str, id: &str) -> Result<DataLink> {
    get_item(app, caller, ws, id).await
}

/// One conditional write (its first item re-checks the role).
pub async fn delete_data_link(app: &App, caller: &Caller, ws: &str, id: &str) -> Result<()> {
    let ws = workspace_id(ws)?;
    let guard = guard(ws, caller, Permission::Administer);
    match resource_id(IdKind::DataLink, id, Missing::DataLink) {
        Ok(id) => app.store.delete_data_link(&guard, id).await,
        // Still answer 404-for-non-members before 404-for-the-id: check the role first.
        Err(e) => check_only(app, ws, caller, Permission::Administer, e).await,
    }
}

/// What compute environments and data links share: workspace items every member reads.
trait CatalogItem: Sized + Send {
    const KIND: IdKind;
    const MISSING: Missing;
    fn key(id: &str) -> Key;
    fn take(fetched: Fetched, id: &str) -> Option<Self>;
}

impl CatalogItem for ComputeEnv {
    const KIND: IdKind = IdKind::ComputeEnv;
    const MISSING: Missing = Missing::ComputeEnv;
    fn key(id: &str) -> Key {
        Key::ComputeEnv(id.to_string())
    }
    fn take(mut fetched: Fetched, id: &str) -> Option<Self> {
        fetched.compute_envs.remove(id)
    }
}

impl CatalogItem for DataLink {
    const KIND: IdKind = IdKind::DataLink;
    const MISSING: Missing = Missing::DataLink;
    fn key(id: &str) -> Key {
        Key::DataLink(id.to_string())
    }
    fn take(mut fetched: Fetched, id: &str) -> Option<Self> {
        fetched.data_links.remove(id)
    }
}

/// One read: the caller's membership and the item.
async fn get_item<T: CatalogItem>(app: &App, caller: &Caller, ws: &str, id: &str) -> Result<T> {
    let ws = workspace_id(ws)?;
    let keys = [Key::Member(caller.id.clone()), T::key(id)];
    let fetched = app.store.fetch(ws, &keys).await?;
    authorize(&fetched.members, caller, Permission::Read)?;
    resource_id(T::KIND, id, T::MISSING)?;
    T::take(fetched, id).ok_or(Error::NotFound(T::MISSING))
}
