//! The commands (docs/cli.md), one file per noun as `gh` lays them out, and what they share:
//! the context (API, workspace, output style) and look-ups by id or name.

pub mod auth;
pub mod checkpoints;
pub mod mounts;
pub mod studios;
pub mod templates;
pub mod workspaces;

use crate::api::{segment, Api, Failure, Result};
use crate::output::Style;
use crate::{config, Cli};
use serde_json::Value;
use std::io::IsTerminal;

/// Settings from flags, the environment and the config file, in that order.
pub struct Context {
    pub api: Api,
    pub workspace: Option<String>,
    pub style: Style,
}

pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub fn context(cli: &Cli) -> Result<Context> {
    let saved = config::load()?;
    let api_url = cli.api_url().or(saved.api_url).ok_or_else(|| {
        Failure::Usage(
            "no API URL: pass --api-url, set STUDIOS_API_URL or run `studios login`".into(),
        )
    })?;
    let token = env("STUDIOS_TOKEN").or(saved.token).ok_or_else(|| {
        Failure::Usage("no token: set STUDIOS_TOKEN or run `studios login`".into())
    })?;
    Ok(Context {
        api: Api::new(&api_url, &token)?,
        workspace: cli.workspace().or(saved.workspace),
        style: Style::choose(cli.output, std::io::stdout().is_terminal()),
    })
}

/// The id of the entry whose id is `wanted`, or whose `name_field` equals it (case
/// ignored) if exactly one does.
pub fn pick(items: &[Value], wanted: &str, name_field: &str) -> Option<String> {
    let id = |v: &Value| v["id"].as_str().map(str::to_string);
    if let Some(hit) = items.iter().find(|v| v["id"] == wanted) {
        return id(hit);
    }
    let named: Vec<&Value> = items
        .iter()
        .filter(|v| {
            v[name_field]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(wanted))
        })
        .collect();
    match named.as_slice() {
        [one] => id(one),
        _ => None,
    }
}

/// Whether `s` has the shape of an id (`<prefix>` and 32 hex digits): it is used as one
/// without a look-up (the action itself answers 404 if there is no such item).
pub fn is_id(prefix: &str, s: &str) -> bool {
    studios_protocol::ids::is_id(prefix, s)
}

/// Every page of a list (its items under `key`), up to `limit` items.
pub async fn all_pages(
    api: &Api,
    path: &str,
    query: Vec<String>,
    key: &str,
    limit: usize,
) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = query.clone();
        q.push(format!("limit={}", (limit - out.len()).clamp(1, 100)));
        if let Some(c) = &cursor {
            q.push(format!("cursor={}", segment(c)));
        }
        let page = api.get(&format!("{path}?{}", q.join("&"))).await?;
        out.extend(page[key].as_array().cloned().unwrap_or_default());
        cursor = match page["nextCursor"].as_str() {
            Some(c) if out.len() < limit => Some(c.to_string()),
            _ => return Ok(out),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_and_ids_are_picked_unambiguously() {
        let items = vec![
            json!({"id": "st-1", "name": "QC"}),
            json!({"id": "st-2", "name": "qc copy"}),
            json!({"id": "st-3", "name": "Twin"}),
            json!({"id": "st-4", "name": "twin"}),
        ];
        assert_eq!(pick(&items, "st-2", "name").as_deref(), Some("st-2"));
        assert_eq!(pick(&items, "qc", "name").as_deref(), Some("st-1"));
        assert_eq!(
            pick(&items, "twin", "name"),
            None,
            "two studios are named so"
        );
        assert_eq!(pick(&items, "nothing", "name"), None);
    }

    #[test]
    fn ids_are_recognised_by_their_shape() {
        assert!(is_id("st-", "st-019ac4b0f1e37d21a6b3c0d9e8f7a655"));
        assert!(!is_id("st-", "st-019AC4B0F1E37D21A6B3C0D9E8F7A655"));
        assert!(!is_id("st-", "st-short"));
        assert!(!is_id("st-", "ws-019ac4b0f1e37d21a6b3c0d9e8f7a655"));
        assert!(!is_id("st-", "RNA-seq QC"));
    }
}
