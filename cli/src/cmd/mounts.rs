//! Data paths held by running sessions.

use super::workspaces::workspace;
use super::Context;
use crate::api::{segment, Result};
use crate::output;

/// `studios mounts`.
pub async fn list(cx: &Context) -> Result<()> {
    let ws = workspace(cx).await?;
    let path = format!("/workspaces/{}/mounts", segment(&ws));
    output::mounts(cx.style, &cx.api.get(&path).await?);
    Ok(())
}
