//! Checkpoints (docs/api.md, docs/storage.md): the history of a studio, renaming, "start as new" (a clone
//! seeded from a checkpoint) and the deletion of checkpoint data nothing depends on.
//!
//! A clone holds its own copies of the checkpoint records it inherits (so renames and
//! deletes of either studio never affect the other); the data stays where its session
//! saved it. Each studio's saved data is tracked with the set of studios whose history
//! points into it; when a delete empties that set, the table-stream consumer deletes
//! the data (`delete_released_data`).

use crate::access::{
    authorize, guard, held_mount_warnings, read_with_mounts, resource_id, workspace_id, App, Caller,
};
use crate::clock::new_id;
use crate::domain::ids::IdKind;
use crate::domain::validate::{self, CheckpointPatch, CloneInput};
use crate::domain::validate::{changed_config, ConfigChanges};
use crate::domain::*;
use crate::error::{Conflict, Error, Missing, Result};
use crate::store::*;

/// `GET …/checkpoints`: one page, newest first (the studio read beside the query).
pub async fn list_checkpoints(
    app: &App,
    caller: &Caller,
    ws: &str,
    id: &str,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<Page<Checkpoint>> {
    let ws = workspace_id(ws)?;
    let limit = crate::access::page_limit(limit)?;
    let keys = [Key::Member(caller.id.clone()), Key::Studio(id.to_string())];
    let (fetched, page) = tokio::join!(
        app.store.fetch(ws, &keys),
        app.store.list_checkpoints(ws, id, limit, cursor)
    );
    let fetched = fetched?;
    authorize(&fetched.members, caller, Permission::Read)?;
    resource_id(IdKind::Studio, id, Missing::Studio)?;
    if !fetched.studios.contains_key(id) {
        return Err(Error::NotFound(Missing::Studio));
    }
    page
}

/// `PATCH …/checkpoints/{cpId}`: rename, unique per studio.
pub async fn rename_checkpoint(
    app: &App,
    caller: &Caller,
    ws: &str,
    id: &str,
    cp_id: &str,
    patch: CheckpointPatch,
) -> Result<Checkpoint> {
    let ws = workspace_id(ws)?;
    let keys = [
        Key::Member(caller.id.clone()),
        Key::Studio(id.to_string()),
        Key::Checkpoint(id.to_string(), cp_id.to_string()),
    ];
    let mut fetched = app.store.fetch(ws, &keys).await?;
    authorize(&fetched.members, caller, Permission::OperateStudios)?;
    resource_id(IdKind::Studio, id, Missing::Studio)?;
    if !fetched.studios.contains_key(id) {
        return Err(Error::NotFound(Missing::Studio));
    }
    let mut cp = fetched
        .checkpoints
        .remove(cp_id)
        .ok_or(Error::NotFound(Missing::Checkpoint))?;
    let name = validate::checkpoint_name(&patch.name)?;
    if name == cp.name {
        return Ok(cp);
    }
    app.store
        .rename_checkpoint(&guard(ws, caller, Permission::OperateStudios), &cp, &name)
        .await?;
    cp.name = name;
    Ok(cp)
}

/// The checkpoint a clone starts from: the source's latest finalized one (the source at
/// rest), or the one asked for, unless a running session is using it.
fn fork_point<'a>(
    source: &Studio,
    history: &'a [Checkpoint],
    requested: Option<&str>,
) -> Result<&'a Checkpoint> {
    let name = &source.config.name;
    let Some(cp_id) = requested else {
        if !source.status.is_at_rest() {
            return Err(Conflict::CloneSourceActive {
                studio: name.to_string(),
                status: source.status.as_str(),
            }
            .into());
        }
        let latest = source.latest_checkpoint.as_ref().ok_or_else(|| {
            Error::from(Conflict::NoCheckpoint {
                studio: name.to_string(),
            })
        })?;
        return history
            .iter()
            .find(|cp| cp.id == latest.id)
            .ok_or_else(|| Error::internal("latest checkpoint missing from the history"));
    };
    let cp = history.iter().find(|cp| cp.id == cp_id).ok_or_else(|| {
        Error::invalid(
            "checkpointId",
            format!("studio '{name}' has no checkpoint '{cp_id}'"),
        )
    })?;
    if cp.status != CheckpointStatus::Finalized {
        return Err(Conflict::CheckpointInvalid {
            checkpoint: cp.name.clone(),
        }
        .into());
    }
    let in_use = source
        .session
        .as_ref()
        .and_then(|s| s.restore_uri.as_ref())
        .is_some_and(|uri| uri == &cp.uri);
    if in_use {
        return Err(Conflict::CheckpointInUse {
            checkpoint: cp.name.clone(),
            studio: name.to_string(),
        }
        .into());
    }
    Ok(cp)
}

/// `POST …/clone` ("start as new"): a new studio on the source's template, compute
/// environment and conda packages, restoring from the chosen checkpoint, with the
/// source's history up to it. One read round trip (studio, links and the history
/// together); one transaction (plus `BatchWriteItem`s for a history longer than ~45).
pub async fn clone_studio(
    app: &App,
    caller: &Caller,
    ws: &str,
    id: &str,
    input: CloneInput,
    auto_start: bool,
) -> Result<(Studio, Vec<String>)> {
    let ws = workspace_id(ws)?;
    input.check_fixed()?;
    let mut keys = vec![Key::Member(caller.id.clone()), Key::Studio(id.to_string())];
    keys.extend(input.data_link_ids().into_iter().map(Key::DataLink));
    let with_mounts = input.mounts.as_ref().is_some_and(|m| !m.is_empty());
    let (read, history) = tokio::join!(
        read_with_mounts(app, ws, &keys, with_mounts),
        app.store.history(ws, id)
    );
    let (fetched, held) = read?;
    authorize(&fetched.members, caller, Permission::OperateStudios)?;
    resource_id(IdKind::Studio, id, Missing::Studio)?;
    let source = fetched
        .studios
        .get(id)
        .ok_or(Error::NotFound(Missing::Studio))?;
    let history = history?;
    let fork = fork_point(source, &history, input.checkpoint_id.as_deref())?;
    let changes = ConfigChanges {
        name: Some(&input.name),
        description: input.description.as_deref(),
        resources: input.resources,
        mounts: input.mounts.as_deref(),
        ..Default::default()
    };
    let (config, mut warnings) = changed_config(source, changes, &fetched.data_links)?;
    let clone_id = new_id(IdKind::Studio);
    warnings.extend(held_mount_warnings(&config.mounts, &held, &clone_id));
    // Ids are time-ordered: the history up to the fork is every id not after it.
    let inherited: Vec<Checkpoint> = history
        .iter()
        .filter(|cp| cp.id <= fork.id)
        .map(|cp| Checkpoint {
            studio_id: clone_id.clone(),
            ..cp.clone()
        })
        .collect();
    let mut data_origins: Vec<String> = inherited
        .iter()
        .map(|cp| cp.saved_by_studio_id.clone())
        .collect();
    data_origins.sort();
    data_origins.dedup();
    let clone = Studio {
        parent: Some(Parent {
            studio_id: source.id.clone(),
            checkpoint_id: fork.id.clone(),
        }),
        latest_checkpoint: Some(fork.reference()),
        checkpoint_count: inherited.len() as u32,
        data_origins,
        ..Studio::new(
            clone_id,
            ws,
            config,
            source.compute_env.clone(),
            caller.user_ref(),
            &crate::clock::now(),
        )
    };
    let lineage = Lineage {
        source_id: &source.id,
        history: &inherited,
    };
    let guard = guard(ws, caller, Permission::OperateStudios);
    if !auto_start {
        app.store
            .create_studio(&guard, &clone, Some(&lineage))
            .await?;
        return Ok((clone, warnings));
    }
    let started = crate::sessions::begin(app, &clone, caller)?;
    app.store
        .create_studio(&guard, &started, Some(&lineage))
        .await?;
    let studio = crate::sessions::submit(app, started, StudioStatus::Stopped).await?;
    Ok((studio, warnings))
}

/// Deletes the checkpoint data saved by `studio_id` once no studio depends on it (the
/// tracking item is removed first, so no clone can come to depend on it meanwhile).
/// Returns whether data was deleted.
pub async fn delete_released_data(
    app: &App,
    workspace_id: &str,
    studio_id: &str,
    prefix: Option<&S3Prefix>,
) -> Result<bool> {
    if !app.store.release_data(workspace_id, studio_id).await? {
        return Ok(false);
    }
    let Some(prefix) = prefix else {
        return Ok(false);
    };
    // The deletion itself is the clean-up worker's (crate::cleanup): never inline here.
    let task = crate::cleanup::CleanupTask {
        workspace_id: workspace_id.to_string(),
        studio_id: studio_id.to_string(),
        prefix: prefix.clone(),
        after: None,
        deleted: 0,
    };
    app.tasks.enqueue(&task).await?;
    tracing::info!(studio = studio_id, %prefix, "checkpoint data released; deletion queued");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(id: &str, status: CheckpointStatus) -> Checkpoint {
        Checkpoint {
            id: id.into(),
            workspace_id: "ws".into(),
            studio_id: "st-a".into(),
            name: id.into(),
            status,
            uri: S3Prefix::parse(&format!("s3://work/.studios/st-a/checkpoints/{id}/")).unwrap(),
            saved_by_studio_id: "st-a".into(),
            job_id: None,
            author: None,
            created_at: String::new(),
            saved_at: String::new(),
            status_reason: None,
            manifest_sha256: None,
        }
    }

    fn source(status: StudioStatus, latest: Option<&Checkpoint>) -> Studio {
        let mut s: Studio = serde_json::from_value(serde_json::json!({
            "id": "st-a", "workspaceId": "ws", "name": "A", "description": "",
            "template": {"kind": "jupyter"}, "condaPackages": [],
            "resources": {"cpus": 2, "gpus": 0, "memoryMiB": 8192}, "mounts": [],
            "computeEnv": {"id": "ce", "name": "q", "region": "us-east-1",
                "jobQueue": "arn:aws:batch:us-east-1:1:job-queue/q", "gpuEnabled": false,
                "maxCpus": 4, "maxMemoryMiB": 8192, "allowedWriteBuckets": [], "workDir": "s3://work/"},
            "status": "stopped", "statusReason": null, "statusUpdatedAt": "",
            "author": {"id": "u", "name": "U"}, "createdAt": "", "updatedAt": "",
            "lastStartedAt": null, "parent": null, "version": 1
        }))
        .unwrap();
        s.status = status;
        s.latest_checkpoint = latest.map(Checkpoint::reference);
        s
    }

    #[test]
    fn the_fork_is_the_latest_finalized_checkpoint_of_a_studio_at_rest() {
        let h = [
            cp("cp-1", CheckpointStatus::Finalized),
            cp("cp-2", CheckpointStatus::Invalid),
        ];
        let s = source(StudioStatus::Stopped, Some(&h[0]));
        assert_eq!(fork_point(&s, &h, None).unwrap().id, "cp-1");
        let none = source(StudioStatus::Errored, None);
        assert!(matches!(
            fork_point(&none, &h, None),
            Err(Error::Conflict(Conflict::NoCheckpoint { .. }))
        ));
        let running = source(StudioStatus::Running, Some(&h[0]));
        assert!(matches!(
            fork_point(&running, &h, None),
            Err(Error::Conflict(Conflict::CloneSourceActive { .. }))
        ));
    }

    #[test]
    fn a_chosen_checkpoint_must_be_finalized_known_and_not_in_use() {
        let h = [
            cp("cp-1", CheckpointStatus::Finalized),
            cp("cp-2", CheckpointStatus::Invalid),
        ];
        let s = source(StudioStatus::Stopped, Some(&h[0]));
        assert_eq!(fork_point(&s, &h, Some("cp-1")).unwrap().id, "cp-1");
        assert!(matches!(
            fork_point(&s, &h, Some("cp-2")),
            Err(Error::Conflict(Conflict::CheckpointInvalid { .. }))
        ));
        assert!(matches!(
            fork_point(&s, &h, Some("cp-9")),
            Err(Error::Invalid { .. })
        ));
    }
}
