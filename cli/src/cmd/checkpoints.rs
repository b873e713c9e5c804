//! A studio's checkpoints: list, rename.

use super::studios::{studio_id, studio_path};
use super::workspaces::workspace;
use super::{all_pages, pick, Context};
use crate::api::{segment, Api, Failure, Result};
use crate::output;
use clap::Subcommand;
use serde_json::{json, Value};

#[derive(Subcommand)]
pub enum CheckpointCommand {
    /// List a studio's checkpoints, newest first.
    List { studio: String },
    /// Rename a checkpoint.
    Rename {
        studio: String,
        /// Checkpoint id or name.
        checkpoint: String,
        name: String,
    },
}

async fn list_checkpoints(api: &Api, ws: &str, id: &str) -> Result<Vec<Value>> {
    all_pages(
        api,
        &studio_path(ws, id, "/checkpoints"),
        vec![],
        "checkpoints",
        usize::MAX,
    )
    .await
}

pub async fn checkpoint_id(api: &Api, ws: &str, studio: &str, wanted: &str) -> Result<String> {
    let all = list_checkpoints(api, ws, studio).await?;
    pick(&all, wanted, "name").ok_or_else(|| {
        Failure::Usage(format!(
            "the studio has no checkpoint '{wanted}' (an id or a name)"
        ))
    })
}

/// `studios checkpoints …`.
pub async fn run(cx: &Context, command: &CheckpointCommand) -> Result<()> {
    let api = &cx.api;
    match command {
        CheckpointCommand::List { studio } => {
            let ws = workspace(cx).await?;
            let id = studio_id(api, &ws, studio).await?;
            output::checkpoints(cx.style, &list_checkpoints(api, &ws, &id).await?);
        }
        CheckpointCommand::Rename {
            studio,
            checkpoint,
            name,
        } => {
            let ws = workspace(cx).await?;
            let id = studio_id(api, &ws, studio).await?;
            let cp = checkpoint_id(api, &ws, &id, checkpoint).await?;
            let path = studio_path(&ws, &id, &format!("/checkpoints/{}", segment(&cp)));
            let renamed = api.patch(&path, json!({"name": name})).await?;
            output::checkpoints(cx.style, &[renamed]);
        }
    }
    Ok(())
}
