//! The job environment (docs/api.md, "Sessions get, as job environment"): what the
//! control plane sets on a session's job and its agent reads.

use serde::{Deserialize, Serialize};

pub const STUDIO_ID: &str = "STUDIO_ID";
pub const WORKSPACE_ID: &str = "WORKSPACE_ID";
/// Empty: a first start, nothing to restore.
pub const CHECKPOINT_RESTORE_URI: &str = "CHECKPOINT_RESTORE_URI";
/// The SHA-256 (64 hex digits) of the restored checkpoint's `manifest.json` as its
/// session reported it; empty: none was recorded (a checkpoint saved before hashes were),
/// the manifest is restored without that comparison.
pub const CHECKPOINT_RESTORE_SHA256: &str = "CHECKPOINT_RESTORE_SHA256";
pub const CHECKPOINT_SAVE_URI: &str = "CHECKPOINT_SAVE_URI";
/// A JSON array of [`Mount`].
pub const STUDIO_MOUNTS: &str = "STUDIO_MOUNTS";
/// A JSON array of conda package specs.
pub const CONDA_PACKAGES: &str = "CONDA_PACKAGES";
/// `jupyter`, `rstudio`, `vscode`, `xpra` or `custom`.
pub const STUDIO_TEMPLATE: &str = "STUDIO_TEMPLATE";
/// The URL path the IDE is served under (the connect URL's path: `/` with each studio
/// its own origin).
pub const STUDIO_BASE_PATH: &str = "STUDIO_BASE_PATH";
pub const AWS_REGION: &str = "AWS_REGION";
pub const AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
/// This session: links of other sessions are refused.
pub const STUDIO_ATTEMPT_ID: &str = "STUDIO_ATTEMPT_ID";
/// The session's credential for the agent channel.
pub const STUDIO_AGENT_TOKEN: &str = "STUDIO_AGENT_TOKEN";
/// The control plane's API (the agent channel is `{STUDIO_API_URL}/agent/report`).
pub const STUDIO_API_URL: &str = "STUDIO_API_URL";
/// The connect-link key: base64 of the uncompressed P-256 point.
pub const STUDIO_CONNECT_PUBLIC_KEY: &str = "STUDIO_CONNECT_PUBLIC_KEY";
/// The studio's connect URL (https makes the agent's cookie `Secure`).
pub const STUDIO_CONNECT_URL: &str = "STUDIO_CONNECT_URL";
/// The connect relay (`tls://host:port` or `tcp://host:port`). Its token is not in the
/// environment: the agent asks for one over its channel (`relayTokenWanted`).
pub const STUDIO_RELAY_ADDR: &str = "STUDIO_RELAY_ADDR";

/// Whether `s` is a SHA-256 as hex (64 digits, either case).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One entry of `STUDIO_MOUNTS`: an S3 prefix mounted at a path in the container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    pub uri: String,
    pub mount_path: String,
    /// `read-only` or `read-write`.
    #[serde(default)]
    pub access: String,
}

impl Mount {
    /// `STUDIO_MOUNTS`'s value for `mounts`.
    pub fn encode_all(mounts: &[Mount]) -> String {
        serde_json::to_string(mounts).expect("mounts of strings serialize")
    }

    /// The mounts of a `STUDIO_MOUNTS` value.
    pub fn decode_all(value: &str) -> Result<Vec<Mount>, serde_json::Error> {
        serde_json::from_str(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_round_trip_in_the_documented_shape() {
        let mounts = vec![Mount {
            uri: "s3://d/x/".into(),
            mount_path: "/workspace/data/x".into(),
            access: "read-only".into(),
        }];
        let value = Mount::encode_all(&mounts);
        assert_eq!(
            value,
            r#"[{"uri":"s3://d/x/","mountPath":"/workspace/data/x","access":"read-only"}]"#
        );
        assert_eq!(Mount::decode_all(&value).unwrap(), mounts);
        assert_eq!(Mount::encode_all(&[]), "[]");
        let no_access = Mount::decode_all(r#"[{"uri":"s3://d/","mountPath":"/m"}]"#).unwrap();
        assert_eq!(no_access[0].access, "");
        assert!(Mount::decode_all("{").is_err());
        assert!(Mount::decode_all(r#"[{"uri":"s3://d/"}]"#).is_err());
    }

    #[test]
    fn sha256_hex_is_64_hex_digits() {
        assert!(is_sha256_hex(&"aB".repeat(32)));
        assert!(!is_sha256_hex(&"a".repeat(63)));
        assert!(!is_sha256_hex(&"g".repeat(64)));
    }
}
