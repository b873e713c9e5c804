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

/// What a restore accepts from a manifest (docs/security.md, "Checkpoints and restore"):
/// past any of these a checkpoint is refused before anything is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `manifest.json`'s size.
    pub manifest_bytes: u64,
    /// Files, directories and links together.
    pub entries: usize,
    /// The files' bytes together.
    pub total_bytes: u64,
    /// How many times one chunk may be referenced.
    pub chunk_uses: usize,
    /// One chunk's size (what snapshots write: `checkpoint::CHUNK_SIZE`).
    pub chunk_bytes: u64,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        manifest_bytes: 256 << 20,
        entries: 1_000_000,
        total_bytes: 1 << 40,
        chunk_uses: 65_536,
        chunk_bytes: 4 << 20,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Longest symbolic link target kept (Linux's `PATH_MAX`).
const MAX_LINK_TARGET: usize = 4096;

impl Manifest {
    /// Parses and checks a manifest read from S3 with the default limits.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        Manifest::parse_within(bytes, &Limits::DEFAULT)
    }

    /// Parses and checks a manifest read from S3 (untrusted: a workspace path must stay
    /// inside the workspace and name one entry, a file's chunks must add up to its size,
    /// every chunk but a file's last is full, and the whole stays within `limits`).
    pub fn parse_within(bytes: &[u8], limits: &Limits) -> Result<Manifest, String> {
        if bytes.len() as u64 > limits.manifest_bytes {
            return Err(format!(
                "manifest.json has {} bytes, more than the {} a restore reads",
                bytes.len(),
                limits.manifest_bytes
            ));
        }
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| format!("manifest.json is not valid: {e}"))?;
        if m.format != FORMAT {
            return Err(format!(
                "manifest.json has format '{}', this agent reads '{FORMAT}'",
                m.format
            ));
        }
        let entries = m.files.len() + m.directories.len() + m.symlinks.len();
        if entries > limits.entries {
            return Err(format!(
                "manifest.json lists {entries} files, directories and links, more than the {} a restore accepts",
                limits.entries
            ));
        }
        let paths = m
            .files
            .iter()
            .map(|f| &f.path)
            .chain(m.directories.iter().map(|d| &d.path))
            .chain(m.symlinks.iter().map(|s| &s.path));
        let mut seen = std::collections::HashSet::with_capacity(entries);
        for path in paths {
            let rel = relative_path(path)?;
            if !seen.insert(rel) {
                return Err(format!("manifest.json lists '{path}' twice"));
            }
        }
        for s in &m.symlinks {
            if s.target.is_empty() || s.target.len() > MAX_LINK_TARGET || s.target.contains('\0') {
                return Err(format!("manifest.json: bad link target for {}", s.path));
            }
        }
        let mut total = 0u64;
        let mut uses: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for f in &m.files {
            let sum: u64 = f.chunks.iter().map(|c| c.size).sum();
            if sum != f.size {
                return Err(format!(
                    "manifest.json lists {} with {} bytes but chunks of {sum}",
                    f.path, f.size
                ));
            }
            total = total.saturating_add(f.size);
            if total > limits.total_bytes {
                return Err(format!(
                    "manifest.json lists more than {} bytes of files, the most a restore accepts",
                    limits.total_bytes
                ));
            }
            let last = f.chunks.len().saturating_sub(1);
            for (n, c) in f.chunks.iter().enumerate() {
                if c.sha256.len() != 64 || !c.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!("manifest.json: bad checksum for {}", f.path));
                }
                let full = c.size == limits.chunk_bytes;
                if c.size == 0 || c.size > limits.chunk_bytes || (n < last && !full) {
                    return Err(format!(
                        "manifest.json: chunk {n} of {} has {} bytes (chunks hold 1 to {} bytes, all but a file's last exactly {})",
                        f.path, c.size, limits.chunk_bytes, limits.chunk_bytes
                    ));
                }
                let count = uses.entry(c.sha256.as_str()).or_default();
                *count += 1;
                if *count > limits.chunk_uses {
                    return Err(format!(
                        "manifest.json uses chunk {} more than {} times",
                        c.sha256, limits.chunk_uses
                    ));
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

    #[test]
    fn chunks_are_full_but_the_last_never_empty_and_paths_appear_once() {
        let sha = "a".repeat(64);
        let limits = Limits {
            chunk_bytes: 4,
            ..Limits::DEFAULT
        };
        let c = |size: u64| serde_json::json!({"sha256": sha, "size": size, "uri": "s3://b/k"});
        let ok = manifest(serde_json::json!([{"path": "x", "size": 6, "mode": 420,
            "chunks": [c(4), c(2)]}]));
        assert!(Manifest::parse_within(&ok, &limits).is_ok());
        for chunks in [vec![c(2), c(4)], vec![c(0)], vec![c(4), c(0)], vec![c(5)]] {
            let size: u64 = chunks.iter().map(|c| c["size"].as_u64().unwrap()).sum();
            let m = manifest(serde_json::json!([{"path": "x", "size": size, "mode": 420,
                "chunks": chunks}]));
            let err = Manifest::parse_within(&m, &limits).unwrap_err();
            assert!(err.contains("chunks hold 1 to 4 bytes"), "{err}");
        }
        let twice = manifest(serde_json::json!([
            {"path": "x", "size": 0, "mode": 420, "chunks": []},
            {"path": "x", "size": 0, "mode": 420, "chunks": []}]));
        assert!(Manifest::parse(&twice)
            .unwrap_err()
            .contains("lists 'x' twice"));
    }
}
