//! S3 mounts with Mountpoint for Amazon S3 (`mount-s3`), before the IDE starts
//! (docs/agent.md): each `STUDIO_MOUNTS` entry at its `mountPath`, read-only unless its
//! `access` is `read-write` (then overwrites and deletes are allowed). A mount that fails
//! ends the session with mount-s3's message. mount-s3 logs to syslog by default, which a
//! container does not have: it logs into the session's log directory instead
//! (`--log-directory`, Mountpoint's doc/LOGGING.md). When the IDE runs as another user,
//! the files are that user's (`--uid`, `--gid`) and the mount is open to users other
//! than root, who mounted it (`--allow-other`; FUSE refuses them otherwise).

use std::path::{Path, PathBuf};

pub use studios_protocol::env::Mount;

/// One mount-s3 run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountCommand {
    pub directory: PathBuf,
    /// `directory` relative to the workspace.
    pub relative: PathBuf,
    pub args: Vec<String>,
    pub uri: String,
}

/// What every mount of a session shares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// mount-s3's log directory (`None`: its default, syslog).
    pub log_directory: Option<PathBuf>,
    /// The IDE's user and group, when it is not the agent's.
    pub owner: Option<(u32, u32)>,
}

/// The commands for `mounts`, parents before the directories inside them; mount paths
/// under the container's `/workspace` land in `workspace`. Two mounts at one directory,
/// a path outside `/workspace` or a URI that is not `s3://bucket/…` are refused.
pub fn plan(
    mounts: &[Mount],
    workspace: &Path,
    options: &Options,
) -> Result<Vec<MountCommand>, String> {
    let mut planned: Vec<MountCommand> = Vec::new();
    for m in mounts {
        if !m.uri.starts_with("s3://") {
            return Err(format!("mount {}: not an s3:// URI", m.uri));
        }
        let (bucket, prefix) = studios_protocol::s3::parse_uri(&m.uri)
            .ok_or_else(|| format!("mount {}: no bucket", m.uri))?;
        let rel = m
            .mount_path
            .strip_prefix(crate::config::CONTAINER_WORKSPACE)
            .map(|r| r.trim_matches('/'))
            .filter(|r| {
                !r.is_empty() && !r.split('/').any(|c| c == ".." || c == "." || c.is_empty())
            })
            .ok_or_else(|| {
                format!(
                    "mount {}: path {} is not inside /workspace",
                    m.uri, m.mount_path
                )
            })?;
        let directory = workspace.join(rel);
        if planned.iter().any(|p| p.directory == directory) {
            return Err(format!("two mounts at {}", m.mount_path));
        }
        let mut args = vec![bucket.to_string(), directory.display().to_string()];
        if !prefix.is_empty() {
            let prefix = if prefix.ends_with('/') {
                prefix.to_string()
            } else {
                format!("{prefix}/")
            };
            args.push(format!("--prefix={prefix}"));
        }
        if m.access == "read-write" {
            args.push("--allow-overwrite".into());
            args.push("--allow-delete".into());
        } else {
            args.push("--read-only".into());
        }
        // `--flag=value`: one argument each (the local run's stand-in skips `--` flags).
        if let Some(dir) = &options.log_directory {
            args.push(format!("--log-directory={}", dir.display()));
        }
        if let Some((uid, gid)) = options.owner {
            args.push(format!("--uid={uid}"));
            args.push(format!("--gid={gid}"));
            args.push("--allow-other".into());
        }
        planned.push(MountCommand {
            directory,
            relative: PathBuf::from(rel),
            args,
            uri: m.uri.clone(),
        });
    }
    // A directory inside another mount's directory is mounted after it.
    planned.sort_by_key(|p| p.directory.components().count());
    Ok(planned)
}

/// Runs `program` (mount-s3, or `STUDIO_MOUNT_COMMAND`) for each planned mount and checks
/// the directory is there; the first failure is the session's end reason. Each mount's
/// directory is made from `workspace`'s root without following a link (docs/security.md):
/// a restored link on the way (`data -> /etc`) is refused, never mounted over.
pub async fn mount_all(
    program: &str,
    workspace: &Path,
    planned: &[MountCommand],
) -> Result<(), String> {
    let root = crate::confine::Dir::open(workspace)?;
    for m in planned {
        root.dir(&m.relative, true)
            .map_err(|e| format!("cannot mount {} at {}: {e}", m.uri, m.directory.display()))?;
        let out = tokio::process::Command::new(program)
            .args(&m.args)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| format!("cannot mount {} ({program}): {e}", m.uri))?;
        if !out.status.success() {
            let said = last_lines(&out.stderr, &out.stdout);
            return Err(format!(
                "cannot mount {} at {}: {said}",
                m.uri,
                m.directory.display()
            ));
        }
        std::fs::read_dir(&m.directory).map_err(|e| {
            format!(
                "{} was mounted at {} but cannot be read: {e}",
                m.uri,
                m.directory.display()
            )
        })?;
    }
    Ok(())
}

/// The end of what a failed command said (stderr, else stdout), on one line.
pub fn last_lines(stderr: &[u8], stdout: &[u8]) -> String {
    let text = if stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        String::from_utf8_lossy(stderr)
    } else {
        String::from_utf8_lossy(stdout)
    };
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
    let tail: String = tail.chars().take(800).collect();
    if tail.is_empty() {
        "it exited without saying why".into()
    } else {
        tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(uri: &str, path: &str, access: &str) -> Mount {
        Mount {
            uri: uri.into(),
            mount_path: path.into(),
            access: access.into(),
        }
    }

    #[test]
    fn read_only_unless_read_write_and_parents_first() {
        let ws = Path::new("/w");
        let p = plan(
            &[
                m(
                    "s3://data/reads/sample-1/",
                    "/workspace/data/reads/sample-1",
                    "read-only",
                ),
                m("s3://scratch/out", "/workspace/data/out", "read-write"),
                m("s3://data/reads/", "/workspace/data/reads", "read-only"),
                m("s3://whole-bucket", "/workspace/data/all", ""),
            ],
            ws,
            &Options::default(),
        )
        .unwrap();
        let dirs: Vec<String> = p
            .iter()
            .map(|c| c.directory.display().to_string())
            .collect();
        assert_eq!(dirs.len(), 4);
        // The directory inside another mount comes after it.
        let parent = dirs.iter().position(|d| d == "/w/data/reads").unwrap();
        let child = dirs
            .iter()
            .position(|d| d == "/w/data/reads/sample-1")
            .unwrap();
        assert!(parent < child);
        let out = p.iter().find(|c| c.uri == "s3://scratch/out").unwrap();
        assert_eq!(
            out.args,
            [
                "scratch",
                "/w/data/out",
                "--prefix=out/",
                "--allow-overwrite",
                "--allow-delete"
            ]
        );
        let reads = p.iter().find(|c| c.uri == "s3://data/reads/").unwrap();
        assert_eq!(
            reads.args,
            ["data", "/w/data/reads", "--prefix=reads/", "--read-only"]
        );
        let all = p.iter().find(|c| c.uri == "s3://whole-bucket").unwrap();
        assert_eq!(all.args, ["whole-bucket", "/w/data/all", "--read-only"]);
    }

    #[test]
    fn bad_mounts_are_refused() {
        let ws = Path::new("/w");
        let none = Options::default();
        let same = plan(
            &[
                m("s3://a/x/", "/workspace/data/x", ""),
                m("s3://b/y/", "/workspace/data/x", ""),
            ],
            ws,
            &none,
        );
        assert!(same
            .unwrap_err()
            .contains("two mounts at /workspace/data/x"));
        assert!(plan(&[m("s3://a/x/", "/etc/x", "")], ws, &none)
            .unwrap_err()
            .contains("not inside /workspace"));
        assert!(plan(&[m("s3://a/x/", "/workspace/../etc", "")], ws, &none).is_err());
        assert!(plan(&[m("gs://a/x/", "/workspace/data/x", "")], ws, &none)
            .unwrap_err()
            .contains("not an s3://"));
    }

    #[test]
    fn mounts_log_to_the_session_and_belong_to_the_ides_user() {
        let options = Options {
            log_directory: Some("/tmp/studio-x/logs/mount-s3".into()),
            owner: Some((1000, 100)),
        };
        let p = plan(
            &[m("s3://d/x/", "/workspace/data/x", "read-write")],
            Path::new("/w"),
            &options,
        )
        .unwrap();
        assert_eq!(
            p[0].args,
            [
                "d",
                "/w/data/x",
                "--prefix=x/",
                "--allow-overwrite",
                "--allow-delete",
                "--log-directory=/tmp/studio-x/logs/mount-s3",
                "--uid=1000",
                "--gid=100",
                "--allow-other"
            ]
        );
    }

    #[test]
    fn failures_say_what_the_command_said() {
        assert_eq!(
            last_lines(b"warn\nError: bucket does not exist\n", b""),
            "warn | Error: bucket does not exist"
        );
        assert_eq!(last_lines(b"  ", b"only stdout"), "only stdout");
        assert_eq!(last_lines(b"", b""), "it exited without saying why");
    }

    #[tokio::test]
    async fn a_mount_is_never_made_through_a_restored_link() {
        let outside = tempfile::tempdir().unwrap();
        let ws = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), ws.path().join("data")).unwrap();
        let p = plan(
            &[m("s3://d/x/", "/workspace/data/x", "read-write")],
            ws.path(),
            &Options::default(),
        )
        .unwrap();
        let err = mount_all("true", ws.path(), &p).await.unwrap_err();
        assert!(err.contains("cannot mount s3://d/x/"), "{err}");
        assert!(
            err.contains("data is a symbolic link: not followed"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // Without the link, the directory is made and the command runs.
        std::fs::remove_file(ws.path().join("data")).unwrap();
        mount_all("true", ws.path(), &p).await.unwrap();
        assert!(ws.path().join("data/x").is_dir());
    }
}
