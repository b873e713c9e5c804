//! Who is calling and what they may do: the caller, the application's ports (`App`),
//! id checks, authorization (the membership read and the role guard every write
//! re-checks), and the reads shared by the use cases. Every use-case module depends on
//! this one; it depends on none of them (docs/architecture.md).

use crate::cleanup::{InlineTasks, SqsTasks, Tasks};
use crate::compute::{BatchCompute, Compute};
use crate::config::Config;
use crate::domain::ids::{is_well_formed, IdKind};
use crate::domain::*;
use crate::error::{Error, Missing, Result};
use crate::events::{EventBridgeSink, EventSink};
use crate::objects::{Objects, S3Objects};
use crate::store::dynamo::DynamoStore;
use crate::store::*;
use std::collections::HashMap;
use std::sync::Arc;

pub const DEFAULT_PAGE: usize = 20;

pub const MAX_PAGE: usize = 100;

/// The authenticated caller (the JWT subject and a display name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub id: String,
    pub name: String,
    /// The API's URL as this request reached it (API Gateway's domain and stage):
    /// where a session started by this request reports (unless `AGENT_API_URL` is set).
    pub api_url: Option<String>,
}

impl Caller {
    pub fn user_ref(&self) -> UserRef {
        UserRef {
            id: self.id.clone(),
            name: self.name.clone(),
        }
    }
}

/// Everything a handler needs, built once at cold start.
#[derive(Clone)]
pub struct App {
    pub store: Arc<dyn Store>,
    pub compute: Arc<dyn Compute>,
    pub objects: Arc<dyn Objects>,
    /// Clean-up tasks (deleting released checkpoint data), off the table stream.
    pub tasks: Arc<dyn Tasks>,
    pub events: Arc<dyn EventSink>,
    /// Signs connect links; `None`: links carry no token (`ConnectKey::None`).
    pub connect: Option<Arc<crate::connect::DynSigner>>,
    /// Signs sessions' relay tokens (its own key: `Config::relay_key`); `None`: no relay.
    pub relay: Option<Arc<crate::connect::DynSigner>>,
    pub config: Arc<Config>,
}

impl App {
    /// Production wiring: the SDK configuration from the environment (`AWS_ENDPOINT_URL`
    /// switches to an emulator); every client built once.
    pub async fn from_env(config: Config) -> App {
        let sdk = aws_config::load_from_env().await;
        App::from_sdk(&sdk, config)
    }

    pub fn from_sdk(sdk: &aws_config::SdkConfig, config: Config) -> App {
        let store = DynamoStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            config.table_name.clone(),
        );
        // S3 through an emulator needs path-style addressing; AWS accepts it too.
        let s3 = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .build();
        let objects: Arc<dyn Objects> = Arc::new(S3Objects::new(aws_sdk_s3::Client::from_conf(s3)));
        let tasks: Arc<dyn Tasks> = match &config.cleanup_queue_url {
            Some(url) => Arc::new(SqsTasks::new(aws_sdk_sqs::Client::new(sdk), url.clone())),
            None => Arc::new(InlineTasks::new(objects.clone())),
        };
        App {
            store: Arc::new(store),
            compute: Arc::new(BatchCompute::new(
                aws_sdk_batch::Client::new(sdk),
                config.job_definitions.clone(),
            )),
            objects,
            tasks,
            events: Arc::new(EventBridgeSink::new(
                aws_sdk_eventbridge::Client::new(sdk),
                config.event_bus.clone(),
            )),
            connect: crate::connect::signer(sdk, &config.connect_key),
            relay: crate::connect::signer(sdk, &config.relay_key),
            config: Arc::new(config),
        }
    }
}

/// A workspace id from a path; one that cannot exist is simply not found.
pub(crate) fn workspace_id(ws: &str) -> Result<&str> {
    if is_well_formed(IdKind::Workspace, ws) {
        Ok(ws)
    } else {
        Err(Error::NotFound(Missing::Workspace))
    }
}

pub(crate) fn resource_id(kind: IdKind, id: &str, missing: Missing) -> Result<&str> {
    if is_well_formed(kind, id) {
        Ok(id)
    } else {
        Err(Error::NotFound(missing))
    }
}

/// The caller's membership, or 404 (non-members must not learn the workspace exists);
/// then 403 if the role lacks the permission.
pub(crate) fn authorize<'a>(
    members: &'a HashMap<String, Member>,
    caller: &Caller,
    permission: Permission,
) -> Result<&'a Member> {
    let member = members
        .get(&caller.id)
        .ok_or(Error::NotFound(Missing::Workspace))?;
    if !member.role.allows(permission) {
        return Err(Error::Forbidden(format!(
            "your role '{}' does not allow this; ask a workspace admin",
            member.role.as_str()
        )));
    }
    Ok(member)
}

pub(crate) fn guard(ws: &str, caller: &Caller, permission: Permission) -> RoleGuard {
    RoleGuard::new(ws, &caller.id, permission)
}

/// `read` answered only to members: run beside the membership read (one round trip).
pub(crate) async fn readable<T>(
    app: &App,
    caller: &Caller,
    ws: &str,
    read: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let (fetched, result) = tokio::join!(fetch_member(app, ws, caller), read);
    authorize(&fetched?.members, caller, Permission::Read)?;
    result
}

/// Just the caller's membership (run beside a list query: one round trip in all).
pub(crate) async fn fetch_member(app: &App, ws: &str, caller: &Caller) -> Result<Fetched> {
    app.store.fetch(ws, &[Key::Member(caller.id.clone())]).await
}

/// For a request whose target cannot exist: answer as the role check would, else `err`.
pub(crate) async fn check_only(
    app: &App,
    ws: &str,
    caller: &Caller,
    permission: Permission,
    err: Error,
) -> Result<()> {
    let fetched = fetch_member(app, ws, caller).await?;
    authorize(&fetched.members, caller, permission)?;
    Err(err)
}

/// A list's `limit` query parameter.
pub(crate) fn page_limit(limit: Option<&str>) -> Result<usize> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| {
                Error::invalid("limit", format!("must be an integer from 1 to {MAX_PAGE}"))
            }),
    }
}

/// The read of an add/update/start, and beside it (same round trip) the paths mounted
/// by running studios, when mounts are involved.
pub(crate) async fn read_with_mounts(
    app: &App,
    ws: &str,
    keys: &[Key],
    with_mounts: bool,
) -> Result<(Fetched, Vec<HeldMount>)> {
    if !with_mounts {
        return Ok((app.store.fetch(ws, keys).await?, Vec::new()));
    }
    let (fetched, held) = tokio::join!(app.store.fetch(ws, keys), app.store.list_mounts(ws));
    Ok((fetched?, held?))
}

/// "Unavailable" flags for mounts that running studios hold (flagged at add: docs/api.md).
pub fn held_mount_warnings(mounts: &[Mount], held: &[HeldMount], studio_id: &str) -> Vec<String> {
    crate::domain::mounts::held_warnings(mounts, held.iter().map(|h| &h.holder), studio_id)
}

/// One studio and the caller's role on it, in one read: 404 for non-members and for
/// studios not in the workspace, 403 if the role lacks `permission`.
pub(crate) async fn authorized_studio(
    app: &App,
    caller: &Caller,
    ws: &str,
    id: &str,
    permission: Permission,
) -> Result<Studio> {
    let ws = workspace_id(ws)?;
    let keys = [Key::Member(caller.id.clone()), Key::Studio(id.to_string())];
    let mut fetched = app.store.fetch(ws, &keys).await?;
    authorize(&fetched.members, caller, permission)?;
    resource_id(IdKind::Studio, id, Missing::Studio)?;
    fetched
        .studios
        .remove(id)
        .ok_or(Error::NotFound(Missing::Studio))
}
