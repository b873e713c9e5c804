//! The studio's conda environment (docs/agent.md): created from `CONDA_PACKAGES` by the
//! image's installer (`micromamba create`, or `STUDIO_CONDA_COMMAND`) inside the
//! workspace, at `.studio/conda/<key>` where the key is a hash of the channels and the
//! sorted specs. It is saved with the checkpoint like any other file, so a restart, or a
//! clone with the same specs, restores it and neither solves nor downloads again.

use crate::confine;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where environments live, relative to the workspace.
pub const ENVS_DIR: &str = ".studio/conda";
/// Written into a finished environment: its key and specs.
const MARKER: &str = ".studio-env.json";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub key: String,
    pub workspace: PathBuf,
    pub prefix: PathBuf,
    pub specs: Vec<String>,
    pub args: Vec<String>,
}

/// The environment for `specs` (none: no environment), installed from `channels` (a
/// spec may name its own, `conda-forge::numpy`).
pub fn plan(specs: &[String], channels: &[String], workspace: &Path) -> Option<Plan> {
    if specs.is_empty() {
        return None;
    }
    let mut sorted: Vec<String> = specs.iter().map(|s| s.trim().to_string()).collect();
    sorted.sort();
    sorted.dedup();
    let mut hasher = Sha256::new();
    for c in channels {
        hasher.update(c.as_bytes());
        hasher.update(b"\n");
    }
    hasher.update(b"--\n");
    for s in &sorted {
        hasher.update(s.as_bytes());
        hasher.update(b"\n");
    }
    let key = crate::checkpoint::hex(&hasher.finalize())[..16].to_string();
    let prefix = workspace.join(ENVS_DIR).join(&key);
    let mut args = vec![
        "create".to_string(),
        "--yes".into(),
        "--prefix".into(),
        prefix.display().to_string(),
        "--override-channels".into(),
    ];
    for c in channels {
        args.push("--channel".into());
        args.push(c.clone());
    }
    args.extend(sorted.iter().cloned());
    Some(Plan {
        key,
        workspace: workspace.to_path_buf(),
        prefix,
        specs: sorted,
        args,
    })
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Restored with the checkpoint: nothing solved or downloaded.
    Reused,
    Created(Duration),
}

/// Why [`ensure`] failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The restored workspace has a symbolic link (or a file) where the environments'
    /// directory goes (`.studio`, `.studio/conda`): nothing was followed or removed, and
    /// the checkpoint is not one this session can use.
    Unsafe(String),
    /// The installer failed, or its environment could not be marked finished.
    Failed(String),
}

/// Makes sure the environment exists: reused if the workspace holds it (finished, same
/// key), else created with `program`; other environments of the workspace (older specs)
/// are removed so checkpoints do not carry them. The environments' directory is opened
/// from the workspace's root without following a link (docs/security.md): clean-up
/// removes what is inside it, never what a restored link points to.
pub async fn ensure(program: &str, plan: &Plan) -> Result<Outcome, Failure> {
    let root = confine::Dir::open(&plan.workspace).map_err(Failure::Failed)?;
    let envs = root.dir(Path::new(ENVS_DIR), true).map_err(|e| {
        Failure::Unsafe(format!(
            "the conda environments' directory {ENVS_DIR} cannot be used: {e}"
        ))
    })?;
    // Through the descriptor: exactly the directory just opened.
    let here = envs.fd_path();
    if let Ok(entries) = std::fs::read_dir(&here) {
        for e in entries.flatten() {
            if e.file_name() != plan.key.as_str() {
                // Removes a link itself, never what it points to.
                let target = here.join(e.file_name());
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = std::fs::remove_dir_all(&target);
                } else {
                    let _ = std::fs::remove_file(&target);
                }
            }
        }
    }
    let key = Path::new(&plan.key);
    let done = envs
        .dir(key, false)
        .ok()
        .and_then(|env| std::fs::read(env.fd_path().join(MARKER)).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v["key"] == plan.key.as_str());
    if done {
        return Ok(Outcome::Reused);
    }
    // A half-made environment (a session that ended while installing), or a link where
    // it goes, is started over.
    let _ = std::fs::remove_dir_all(here.join(key));
    let _ = std::fs::remove_file(here.join(key));
    let started = Instant::now();
    let out = tokio::process::Command::new(program)
        .args(&plan.args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| {
            Failure::Failed(format!(
                "cannot create the conda environment ({program}): {e}"
            ))
        })?;
    if !out.status.success() {
        return Err(Failure::Failed(format!(
            "the conda environment could not be created: {}",
            crate::mounts::last_lines(&out.stderr, &out.stdout)
        )));
    }
    let body = serde_json::json!({"key": plan.key, "specs": plan.specs});
    let marker = Path::new(ENVS_DIR).join(key).join(MARKER);
    let mut file = root.create_file(&marker).map_err(Failure::Failed)?;
    std::io::Write::write_all(&mut file, body.to_string().as_bytes())
        .map_err(|e| Failure::Failed(format!("cannot write {}: {e}", marker.display())))?;
    Ok(Outcome::Created(started.elapsed()))
}

/// The environment variables that activate `prefix` for the IDE, its terminals and
/// kernels.
pub fn activation(prefix: &Path) -> Vec<(String, String)> {
    let join = |first: PathBuf, var: &str| match std::env::var(var) {
        Ok(rest) if !rest.is_empty() => format!("{}:{rest}", first.display()),
        _ => first.display().to_string(),
    };
    vec![
        ("PATH".into(), join(prefix.join("bin"), "PATH")),
        ("CONDA_PREFIX".into(), prefix.display().to_string()),
        (
            "JUPYTER_PATH".into(),
            join(prefix.join("share/jupyter"), "JUPYTER_PATH"),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn the_key_depends_on_the_specs_and_channels_not_their_order() {
        let ws = Path::new("/w");
        let ch = specs(&["conda-forge"]);
        let a = plan(&specs(&["numpy>=1.26", "scanpy=1.10"]), &ch, ws).unwrap();
        let b = plan(
            &specs(&["scanpy=1.10", "numpy>=1.26", "numpy>=1.26"]),
            &ch,
            ws,
        )
        .unwrap();
        assert_eq!(a.key, b.key);
        assert_eq!(
            a.prefix,
            PathBuf::from(format!("/w/.studio/conda/{}", a.key))
        );
        let c = plan(&specs(&["numpy>=1.26"]), &ch, ws).unwrap();
        assert_ne!(a.key, c.key);
        let d = plan(
            &specs(&["numpy>=1.26", "scanpy=1.10"]),
            &specs(&["bioconda"]),
            ws,
        )
        .unwrap();
        assert_ne!(a.key, d.key);
        assert_eq!(
            a.args,
            [
                "create",
                "--yes",
                "--prefix",
                &format!("/w/.studio/conda/{}", a.key),
                "--override-channels",
                "--channel",
                "conda-forge",
                "numpy>=1.26",
                "scanpy=1.10"
            ]
        );
        assert!(plan(&[], &ch, ws).is_none());
    }

    /// A directory standing for `/`, with what it holds.
    fn fake_root() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for f in ["etc/passwd", "bin/sh", "usr/lib/libc.so"] {
            let p = root.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"keep").unwrap();
        }
        root
    }

    fn count(dir: &Path) -> usize {
        let mut n = 0;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(p) = stack.pop() {
            n += 1;
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            }
        }
        n
    }

    #[tokio::test]
    async fn a_restored_link_to_the_root_is_neither_followed_nor_emptied() {
        for link in [".studio/conda", ".studio"] {
            let root = fake_root();
            let before = count(root.path());
            let ws = tempfile::tempdir().unwrap();
            let at = ws.path().join(link);
            std::fs::create_dir_all(at.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(root.path(), &at).unwrap();
            let p = plan(&specs(&["numpy"]), &specs(&["conda-forge"]), ws.path()).unwrap();
            let err = ensure("true", &p).await.unwrap_err();
            match err {
                Failure::Unsafe(reason) => assert!(
                    reason.contains("is a symbolic link: not followed"),
                    "{link}: {reason}"
                ),
                other => panic!("{link}: {other:?}"),
            }
            assert_eq!(count(root.path()), before, "{link}");
            assert!(std::fs::read_link(&at).is_ok());
        }
    }

    #[tokio::test]
    async fn links_inside_the_environments_directory_are_removed_not_followed() {
        let outside = fake_root();
        let before = count(outside.path());
        let ws = tempfile::tempdir().unwrap();
        let p = plan(&specs(&["numpy"]), &specs(&["conda-forge"]), ws.path()).unwrap();
        let envs = ws.path().join(ENVS_DIR);
        std::fs::create_dir_all(&envs).unwrap();
        std::fs::write(
            outside.path().join(MARKER),
            serde_json::json!({"key": p.key}).to_string(),
        )
        .unwrap();
        // An old environment that is a link, and a link where this one goes (with a
        // marker that would say it is finished).
        std::os::unix::fs::symlink(outside.path(), envs.join("0123456789abcdef")).unwrap();
        std::os::unix::fs::symlink(outside.path(), &p.prefix).unwrap();
        let out = ensure("true", &p).await.unwrap();
        assert!(matches!(out, Outcome::Created(_)), "{out:?}");
        assert_eq!(count(outside.path()), before + 1);
        assert!(std::fs::symlink_metadata(&p.prefix).unwrap().is_dir());
        assert!(p.prefix.join(MARKER).is_file());
        assert!(!envs.join("0123456789abcdef").exists());
        assert_eq!(ensure("true", &p).await.unwrap(), Outcome::Reused);
    }
}
