//! Logging in and out: the saved URL, token and workspace (docs/cli.md).

use super::env;
use crate::api::{Api, Failure, Result};
use crate::{config, Cli};
use std::io::{IsTerminal, Read};

pub async fn login(cli: &Cli) -> Result<()> {
    let saved = config::load()?;
    let api_url = cli
        .api_url()
        .or(saved.api_url)
        .ok_or_else(|| Failure::Usage("pass --api-url (the stack's ApiUrl output)".into()))?;
    let token = match env("STUDIOS_TOKEN") {
        Some(t) => t,
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!("paste your token, then Enter:");
            }
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Failure::Usage(format!("reading the token from stdin: {e}")))?;
            text.lines().next().unwrap_or_default().trim().to_string()
        }
    };
    if token.is_empty() {
        return Err(Failure::Usage(
            "no token on stdin or in STUDIOS_TOKEN".into(),
        ));
    }
    let api = Api::new(&api_url, &token)?;
    let list = api.get("/workspaces").await?;
    let count = list["workspaces"].as_array().map_or(0, Vec::len);
    let settings = config::Settings {
        api_url: Some(api_url.clone()),
        token: Some(token),
        workspace: cli.workspace().or(saved.workspace),
    };
    let path = config::save(&settings)?;
    eprintln!(
        "logged in to {api_url} ({count} workspace{}); saved to {} (mode 600)",
        if count == 1 { "" } else { "s" },
        path.display()
    );
    Ok(())
}

/// `studios logout`.
pub fn logout() -> Result<()> {
    match config::remove()? {
        Some(path) => eprintln!("removed {}", path.display()),
        None => eprintln!("not logged in"),
    }
    Ok(())
}
