//! Where the API is and who is calling: `STUDIOS_API_URL` / `STUDIOS_TOKEN` /
//! `STUDIOS_WORKSPACE`, else the config file `studios login` writes
//! (`$STUDIOS_CONFIG`, else `$XDG_CONFIG_HOME/studios/config.json`, else
//! `~/.config/studios/config.json`), readable by its owner only (0600). The token is
//! never printed.

use crate::api::{Failure, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The workspace commands use without `--workspace` (an id or a name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
}

pub fn path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("STUDIOS_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .ok_or_else(|| Failure::Usage("neither STUDIOS_CONFIG nor HOME is set".into()))?;
    Ok(base.join("studios").join("config.json"))
}

/// The saved settings (none if there is no file). A file others can read is refused:
/// it holds a bearer token.
pub fn load() -> Result<Settings> {
    let path = path()?;
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
        Err(e) => return Err(Failure::Usage(format!("{}: {e}", path.display()))),
    };
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Failure::Usage(format!(
            "{} holds a token but others may read it: run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Failure::Usage(format!("{} is not a studios config: {e}", path.display())))
}

/// Writes the settings, creating the file with mode 0600 (and its directory 0700).
pub fn save(settings: &Settings) -> Result<PathBuf> {
    let path = path()?;
    let fail = |e: std::io::Error| Failure::Usage(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(fail)?;
    }
    use std::os::unix::fs::DirBuilderExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(fail)?;
    // An older file may have been created with other permissions.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(fail)?;
    let text = serde_json::to_string_pretty(settings).expect("serializable");
    file.write_all(text.as_bytes()).map_err(fail)?;
    file.write_all(b"\n").map_err(fail)?;
    Ok(path)
}

pub fn remove() -> Result<Option<PathBuf>> {
    let path = path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(Some(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Failure::Usage(format!("{}: {e}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the config path comes from the process environment.
    #[test]
    fn saved_settings_are_private_and_refused_when_shared() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nested/config.json");
        std::env::set_var("STUDIOS_CONFIG", &file);
        assert_eq!(load().unwrap(), Settings::default());
        let settings = Settings {
            api_url: Some("https://api.example".into()),
            token: Some("secret".into()),
            workspace: None,
        };
        save(&settings).unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load().unwrap(), settings);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load().unwrap_err().message();
        assert!(err.contains("chmod 600"), "{err}");
        // Saving again makes it private again.
        save(&settings).unwrap();
        assert!(load().is_ok());
        assert!(remove().unwrap().is_some());
        assert!(remove().unwrap().is_none());
        std::env::remove_var("STUDIOS_CONFIG");
    }
}
