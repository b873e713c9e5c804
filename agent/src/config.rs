//! The agent's settings: the job contract the control plane passes (docs/api.md,
//! "Sessions get, as job environment") and the image's own settings (docs/agent.md).

use std::path::PathBuf;
use std::time::Duration;
use studios_protocol::env;

#[derive(Clone, Debug)]
pub struct Config {
    pub studio_id: String,
    pub workspace_id: String,
    /// Empty: a first start, nothing to restore.
    pub restore_uri: Option<String>,
    /// The SHA-256 (hex) the restored checkpoint's manifest had when the control plane
    /// recorded it; `None`: not recorded (a checkpoint older than hashes), not compared.
    pub restore_sha256: Option<String>,
    pub save_uri: String,
    /// Mount paths (absolute, in the container): not part of checkpoints.
    pub mount_paths: Vec<String>,
    pub mounts: Vec<crate::mounts::Mount>,
    pub conda_packages: Vec<String>,
    /// The conda installer (`STUDIO_CONDA_COMMAND`, default `micromamba`) and the
    /// channels it uses (`STUDIO_CONDA_CHANNELS`, comma-separated, default `conda-forge`).
    pub conda_command: String,
    pub conda_channels: Vec<String>,
    /// The S3 mount command (`STUDIO_MOUNT_COMMAND`, default `mount-s3`).
    pub mount_command: String,
    /// `jupyter`, `rstudio`, `vscode`, `xpra` or `custom`.
    pub template: String,
    /// The URL path the IDE is served under (the connect URL's path: `/` with each
    /// studio its own origin).
    pub base_path: String,
    pub api_url: Option<String>,
    pub agent_token: Option<String>,
    pub workspace: PathBuf,
    pub listen: String,
    pub ide_command: Option<String>,
    pub snapshot_every: Duration,
    /// The control plane's connect-link key (`STUDIO_CONNECT_PUBLIC_KEY`, base64 of the
    /// P-256 point); `None`: the agent's port checks nothing.
    pub connect_public_key: Option<Vec<u8>>,
    /// The studio's connect URL (`STUDIO_CONNECT_URL`): https makes the cookie `Secure`.
    pub connect_url: Option<String>,
    /// This session (`STUDIO_ATTEMPT_ID`): links of other sessions are refused.
    pub attempt_id: Option<String>,
    /// The connect relay (`STUDIO_RELAY_ADDR`); its tokens come over the channel.
    pub relay: Option<String>,
    pub ide_start_timeout: Duration,
    /// Who the IDE runs as (`STUDIO_IDE_USER`; default: the template image's non-root
    /// user when it has one, ide::default_user).
    pub ide_user: Option<String>,
    /// Where the session's runtime directory (IDE sockets, mount-s3 logs) is made
    /// (`STUDIO_RUNTIME_DIR`, default the system's temp directory).
    pub runtime_root: PathBuf,
}

/// The workspace as the job contract names it (mount paths are under it).
pub const CONTAINER_WORKSPACE: &str = "/workspace";

impl Config {
    pub fn from_env() -> Result<Config, String> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let required = |k: &str| {
            get(k).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                format!("{k} must be set (the control plane sets it for every session)")
            })
        };
        let optional = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let seconds = |k: &str, default: u64| -> Result<Duration, String> {
            match optional(k) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|s| *s > 0)
                    .map(Duration::from_secs)
                    .ok_or_else(|| format!("{k} must be a whole number of seconds, not '{v}'")),
            }
        };
        let mounts: Vec<crate::mounts::Mount> = match optional(env::STUDIO_MOUNTS) {
            None => vec![],
            Some(v) => crate::mounts::Mount::decode_all(&v).map_err(|e| {
                format!(
                    "{} is not a JSON array of {{uri, mountPath, access}}: {e}",
                    env::STUDIO_MOUNTS
                )
            })?,
        };
        let conda_packages: Vec<String> = match optional(env::CONDA_PACKAGES) {
            None => vec![],
            Some(v) => serde_json::from_str(&v).map_err(|e| {
                format!(
                    "{} is not a JSON array of strings: {e}",
                    env::CONDA_PACKAGES
                )
            })?,
        };
        let mut base_path = optional(env::STUDIO_BASE_PATH).unwrap_or_else(|| "/".into());
        if !base_path.starts_with('/') {
            base_path.insert(0, '/');
        }
        if !base_path.ends_with('/') {
            base_path.push('/');
        }
        Ok(Config {
            studio_id: required(env::STUDIO_ID)?,
            workspace_id: required(env::WORKSPACE_ID)?,
            restore_uri: optional(env::CHECKPOINT_RESTORE_URI),
            restore_sha256: match optional(env::CHECKPOINT_RESTORE_SHA256) {
                None => None,
                Some(v) if studios_protocol::env::is_sha256_hex(v.trim()) => {
                    Some(v.trim().to_ascii_lowercase())
                }
                Some(v) => {
                    return Err(format!(
                        "{} must be a SHA-256 in hex, not '{v}'",
                        env::CHECKPOINT_RESTORE_SHA256
                    ))
                }
            },
            save_uri: required(env::CHECKPOINT_SAVE_URI)?,
            mount_paths: mounts.iter().map(|m| m.mount_path.clone()).collect(),
            mounts,
            conda_packages,
            conda_command: optional("STUDIO_CONDA_COMMAND").unwrap_or_else(|| "micromamba".into()),
            conda_channels: optional("STUDIO_CONDA_CHANNELS")
                .unwrap_or_else(|| "conda-forge".into())
                .split(',')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect(),
            mount_command: optional("STUDIO_MOUNT_COMMAND").unwrap_or_else(|| "mount-s3".into()),
            template: optional(env::STUDIO_TEMPLATE).unwrap_or_else(|| "custom".into()),
            base_path,
            api_url: optional(env::STUDIO_API_URL).map(|u| u.trim_end_matches('/').to_string()),
            agent_token: optional(env::STUDIO_AGENT_TOKEN),
            workspace: PathBuf::from(
                optional("STUDIO_WORKSPACE_DIR").unwrap_or_else(|| CONTAINER_WORKSPACE.into()),
            ),
            listen: optional("STUDIO_AGENT_ADDR").unwrap_or_else(|| "127.0.0.1:0".into()),
            ide_command: optional("STUDIO_IDE_COMMAND"),
            snapshot_every: seconds("STUDIO_SNAPSHOT_SECONDS", 300)?,
            connect_public_key: match optional(env::STUDIO_CONNECT_PUBLIC_KEY) {
                None => None,
                Some(v) => {
                    use base64::Engine;
                    let point = base64::engine::general_purpose::STANDARD
                        .decode(v.trim())
                        .ok()
                        .filter(|p| studios_protocol::claims::is_point(p))
                        .ok_or_else(|| {
                            format!(
                                "{} is not a base64 P-256 point",
                                env::STUDIO_CONNECT_PUBLIC_KEY
                            )
                        })?;
                    Some(point)
                }
            },
            connect_url: optional(env::STUDIO_CONNECT_URL),
            attempt_id: optional(env::STUDIO_ATTEMPT_ID),
            relay: optional(env::STUDIO_RELAY_ADDR),
            ide_start_timeout: seconds("STUDIO_IDE_START_SECONDS", 600)?,
            ide_user: optional("STUDIO_IDE_USER"),
            runtime_root: optional("STUDIO_RUNTIME_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir),
        })
    }

    /// Mount points as paths relative to the workspace (what snapshots skip).
    pub fn excluded(&self) -> Vec<PathBuf> {
        self.mount_paths
            .iter()
            .filter_map(|p| {
                let rel = p.strip_prefix(CONTAINER_WORKSPACE)?.trim_start_matches('/');
                (!rel.is_empty()).then(|| PathBuf::from(rel))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    const BASE: [(&str, &str); 3] = [
        ("STUDIO_ID", "st-1"),
        ("WORKSPACE_ID", "ws-1"),
        (
            "CHECKPOINT_SAVE_URI",
            "s3://b/w/.studios/st-1/checkpoints/cp-1/",
        ),
    ];

    #[test]
    fn the_job_contract_is_read_and_checked() {
        let mut pairs = BASE.to_vec();
        pairs.push((
            "STUDIO_MOUNTS",
            r#"[{"uri":"s3://d/x/","mountPath":"/workspace/data/x","access":"read-only"}]"#,
        ));
        pairs.push(("CHECKPOINT_RESTORE_URI", ""));
        pairs.push(("STUDIO_BASE_PATH", "connect/st-1"));
        let c = config(&pairs).unwrap();
        assert_eq!(c.restore_uri, None);
        assert_eq!(c.excluded(), vec![PathBuf::from("data/x")]);
        assert_eq!(c.base_path, "/connect/st-1/");
        assert_eq!(c.snapshot_every, Duration::from_secs(300));
        assert_eq!(c.ide_user, None);
        assert_eq!(c.runtime_root, std::env::temp_dir());
        assert!(config(&BASE[..2])
            .unwrap_err()
            .contains("CHECKPOINT_SAVE_URI must be set"));
        let mut bad = BASE.to_vec();
        bad.push(("STUDIO_SNAPSHOT_SECONDS", "soon"));
        assert!(config(&bad)
            .unwrap_err()
            .contains("STUDIO_SNAPSHOT_SECONDS"));
        let mut bad = BASE.to_vec();
        bad.push(("STUDIO_MOUNTS", "{"));
        assert!(config(&bad).unwrap_err().contains("STUDIO_MOUNTS"));
    }
}
