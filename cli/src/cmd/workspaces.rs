//! Workspaces: the caller's list, and a workspace by id or name.

use super::{is_id, pick, Context};
use crate::api::{Failure, Result};
use crate::output;

/// `studios workspaces`.
pub async fn list(cx: &Context) -> Result<()> {
    output::workspaces(cx.style, &cx.api.get("/workspaces").await?);
    Ok(())
}

/// The workspace's id, from an id or a name of one of the caller's workspaces.
pub async fn workspace(cx: &Context) -> Result<String> {
    let wanted = cx.workspace.clone().ok_or_else(|| {
        Failure::Usage("no workspace: pass --workspace, set STUDIOS_WORKSPACE or `studios login --workspace …`".into())
    })?;
    if is_id("ws-", &wanted) {
        return Ok(wanted);
    }
    let list = cx.api.get("/workspaces").await?;
    let all = list["workspaces"].as_array().cloned().unwrap_or_default();
    pick(&all, &wanted, "name")
        .ok_or_else(|| Failure::Usage(format!("you are not a member of a workspace '{wanted}'")))
}
