//! A checkpoint's `manifest.json` (docs/agent.md): every file of the workspace with its
//! size, mode and content as a list of content-addressed chunks (SHA-256), each at the
//! S3 URI that holds it. Chunks are shared: unchanged data is referenced, never uploaded
//! again, across a studio's checkpoints and its clones' (a clone restores its source's
//! manifest and keeps referring to the source's chunks). Written last: a checkpoint
//! without its manifest is not finalized.

use serde::{Deserialize, Serialize};
use std::path::{Component, Path, PathBuf};

pub const FORMAT: &str = "studios-checkpoint/1";
pub use studios_protocol::MANIFEST;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: String,
    pub created_at: String,
    pub chunk_size: u64,
    pub files: Vec<FileEntry>,
    #[serde(default)]
    pub directories: Vec<DirEntry>,
    #[serde(default)]
    pub symlinks: Vec<SymlinkEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub mode: u32,
    pub chunks: Vec<ChunkRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChunkRef {
    pub sha256: String,
    pub size: u64,
    pub uri: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirEntry {
    pub path: String,
    pub mode: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SymlinkEntry {
    pub path: String,
    pub target: String,
}

impl Manifest {
    /// Parses and checks a manifest read from S3 (untrusted: a workspace path must stay
    /// inside the workspace, and a file's chunks must add up to its size).
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| format!("manifest.json is not valid: {e}"))?;
        if m.format != FORMAT {
            return Err(format!(
                "manifest.json has format '{}', this agent reads '{FORMAT}'",
                m.format
            ));
        }
        let paths = m
            .files
            .iter()
            .map(|f| &f.path)
            .chain(m.directories.iter().map(|d| &d.path))
            .chain(m.symlinks.iter().map(|s| &s.path));
        for path in paths {
            relative_path(path)?;
        }
        for f in &m.files {
            let sum: u64 = f.chunks.iter().map(|c| c.size).sum();
            if sum != f.size {
                return Err(format!(
                    "manifest.json lists {} with {} bytes but chunks of {sum}",
                    f.path, f.size
                ));
            }
            for c in &f.chunks {
                if c.sha256.len() != 64 || !c.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!("manifest.json: bad checksum for {}", f.path));
                }
            }
        }
        Ok(m)
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// A manifest path as a relative path with normal components only (no `..`, no root).
pub fn relative_path(path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    if path.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!(
            "manifest.json names a path outside the workspace: '{path}'"
        ));
    }
    Ok(p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(files: serde_json::Value) -> Vec<u8> {
        serde_json::json!({"format": FORMAT, "createdAt": "t", "chunkSize": 4, "files": files})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn paths_must_stay_inside_the_workspace() {
        for bad in ["../etc/passwd", "/etc/passwd", "a/../../b", "", "./a"] {
            assert!(relative_path(bad).is_err(), "{bad}");
        }
        assert!(relative_path("a/b.txt").is_ok());
        let m =
            manifest(serde_json::json!([{"path": "../x", "size": 0, "mode": 420, "chunks": []}]));
        assert!(Manifest::parse(&m)
            .unwrap_err()
            .contains("outside the workspace"));
    }

    #[test]
    fn chunks_must_add_up() {
        let sha = "a".repeat(64);
        let m = manifest(serde_json::json!([{"path": "x", "size": 5, "mode": 420,
            "chunks": [{"sha256": sha, "size": 4, "uri": "s3://b/k"}]}]));
        assert!(Manifest::parse(&m).unwrap_err().contains("chunks of 4"));
        let m = manifest(serde_json::json!([{"path": "x", "size": 4, "mode": 420,
            "chunks": [{"sha256": "zz", "size": 4, "uri": "s3://b/k"}]}]));
        assert!(Manifest::parse(&m).unwrap_err().contains("bad checksum"));
        assert!(Manifest::parse(b"{}").unwrap_err().contains("not valid"));
    }
}
