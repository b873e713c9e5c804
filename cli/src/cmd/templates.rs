//! Templates this deployment offers.

use super::Context;
use crate::api::Result;
use crate::output;

/// `studios templates`.
pub async fn list(cx: &Context) -> Result<()> {
    output::templates(cx.style, &cx.api.get("/templates").await?);
    Ok(())
}
