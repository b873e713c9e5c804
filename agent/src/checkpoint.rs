//! Incremental checkpoints (docs/agent.md). A snapshot walks the workspace, reads only
//! files whose size, times or inode changed since the last snapshot, splits them into
//! 4 MiB chunks named by their SHA-256 and uploads the chunks S3 does not hold yet
//! (under the studio's `chunks/` prefix) while it reads. A save is a snapshot followed
//! by the manifest, written last. Periodic snapshots keep the final delta small, so a
//! stop fits in AWS Batch's 30 s between SIGTERM and SIGKILL.

use crate::confine;
use crate::manifest::{
    relative_path, ChunkRef, DirEntry, FileEntry, Limits, Manifest, SymlinkEntry, FORMAT, MANIFEST,
};
use crate::objects::{Objects, S3Uri};
use hyper::body::Bytes;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

pub const CHUNK_SIZE: usize = 4 << 20;
/// Uploads (and downloads) in flight at once.
const PARALLEL: usize = 8;

/// Where a session's checkpoint goes: `CHECKPOINT_SAVE_URI`
/// (`<workDir>.studios/<studio>/checkpoints/<checkpoint>/`) and the studio's chunk store
/// beside its checkpoints (`<workDir>.studios/<studio>/chunks/`), which the control
/// plane's retention treats as the studio's data (docs/storage.md).
#[derive(Clone, Debug)]
pub struct Layout {
    pub save: S3Uri,
    pub chunks: S3Uri,
}

impl Layout {
    pub fn from_save_uri(save: &str) -> Result<Layout, String> {
        let save = S3Uri::parse(save)?;
        let key = save.key.trim_end_matches('/');
        let studio = key
            .rsplit_once('/')
            .and_then(|(rest, _checkpoint)| rest.strip_suffix("checkpoints"))
            .ok_or_else(|| {
                format!("CHECKPOINT_SAVE_URI '{save}' is not <prefix>/checkpoints/<id>/")
            })?;
        Ok(Layout {
            chunks: S3Uri {
                bucket: save.bucket.clone(),
                key: format!("{studio}chunks/"),
            },
            save: S3Uri {
                bucket: save.bucket,
                key: format!("{key}/"),
            },
        })
    }
}

/// What the agent knows about the workspace as last saved: per file, the metadata it
/// had and its chunks; and every chunk S3 holds, by checksum.
#[derive(Clone, Debug, Default)]
pub struct Index {
    files: HashMap<PathBuf, Indexed>,
    known: HashMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            ino: meta.ino(),
        }
    }
}

#[derive(Clone, Debug)]
struct Indexed {
    stamp: Stamp,
    chunks: Vec<ChunkRef>,
}

impl Index {
    pub fn known_chunks(&self) -> usize {
        self.known.len()
    }
}

/// What a snapshot, save or restore did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub files: usize,
    pub bytes: u64,
    /// Bytes read and hashed (changed files only).
    pub read_bytes: u64,
    pub transferred_bytes: u64,
    pub transferred_chunks: usize,
    pub elapsed: Duration,
    /// A save's: the SHA-256 (hex) of the manifest it wrote, which the agent reports so
    /// the control plane records it with the checkpoint.
    pub manifest_sha256: Option<String>,
}

/// Reads the workspace and uploads the chunks S3 does not hold; `index` is updated
/// only if every upload succeeded. `exclude`: paths relative to the workspace that are
/// not saved (mount points).
pub async fn snapshot(
    objects: Arc<dyn Objects>,
    workspace: &Path,
    layout: &Layout,
    index: &mut Index,
    exclude: &[PathBuf],
) -> Result<(Manifest, Stats), String> {
    let started = Instant::now();
    let (tx, mut rx) = mpsc::channel::<(S3Uri, Bytes)>(PARALLEL);
    let reader = {
        let (workspace, exclude, chunks, index) = (
            workspace.to_path_buf(),
            exclude.to_vec(),
            layout.chunks.clone(),
            index.clone(),
        );
        tokio::task::spawn_blocking(move || {
            read_workspace(&workspace, &exclude, &chunks, index, tx)
        })
    };
    let permits = Arc::new(Semaphore::new(PARALLEL));
    let mut uploads = JoinSet::new();
    let (mut sent_bytes, mut sent_chunks) = (0u64, 0usize);
    let mut failure = None;
    while let Some((uri, body)) = rx.recv().await {
        sent_bytes += body.len() as u64;
        sent_chunks += 1;
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let objects = objects.clone();
        uploads.spawn(async move {
            let _permit = permit;
            objects.put(&uri, body).await
        });
        // Surface a failed upload early: the reader stops when the channel closes.
        while let Some(done) = uploads.try_join_next() {
            if let Err(e) = done.map_err(|e| e.to_string()).and_then(|r| r) {
                failure.get_or_insert(e);
            }
        }
        if failure.is_some() {
            break;
        }
    }
    drop(rx);
    while let Some(done) = uploads.join_next().await {
        if let Err(e) = done.map_err(|e| e.to_string()).and_then(|r| r) {
            failure.get_or_insert(e);
        }
    }
    let read = reader.await.map_err(|e| e.to_string())?;
    if let Some(e) = failure {
        return Err(e);
    }
    let (manifest, next, read_bytes) = read?;
    *index = next;
    let stats = Stats {
        files: manifest.files.len(),
        bytes: manifest.total_bytes(),
        read_bytes,
        transferred_bytes: sent_bytes,
        transferred_chunks: sent_chunks,
        elapsed: started.elapsed(),
        manifest_sha256: None,
    };
    Ok((manifest, stats))
}

/// A snapshot, then its manifest: the checkpoint is finalized once this returns.
pub async fn save(
    objects: Arc<dyn Objects>,
    workspace: &Path,
    layout: &Layout,
    index: &mut Index,
    exclude: &[PathBuf],
) -> Result<Stats, String> {
    let (manifest, mut stats) =
        snapshot(objects.clone(), workspace, layout, index, exclude).await?;
    let body = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    stats.transferred_bytes += body.len() as u64;
    stats.manifest_sha256 = Some(hex(&Sha256::digest(&body)));
    objects
        .put(&layout.save.join(MANIFEST), Bytes::from(body))
        .await?;
    Ok(stats)
}

type Read_ = Result<(Manifest, Index, u64), String>;

fn read_workspace(
    workspace: &Path,
    exclude: &[PathBuf],
    chunks: &S3Uri,
    previous: Index,
    tx: mpsc::Sender<(S3Uri, Bytes)>,
) -> Read_ {
    let mut manifest = Manifest {
        format: FORMAT.into(),
        created_at: now_rfc3339(),
        chunk_size: CHUNK_SIZE as u64,
        files: vec![],
        directories: vec![],
        symlinks: vec![],
    };
    let mut next = Index {
        files: HashMap::new(),
        known: previous.known.clone(),
    };
    let mut read_bytes = 0u64;
    let mut pending = vec![PathBuf::new()];
    while let Some(dir) = pending.pop() {
        let full = workspace.join(&dir);
        let mut entries: Vec<_> = match std::fs::read_dir(&full) {
            Ok(rd) => rd.filter_map(|e| e.ok()).collect(),
            // Removed while walking: nothing to save there.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot read {}: {e}", full.display())),
        };
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let rel = dir.join(entry.file_name());
            if exclude.iter().any(|x| rel.starts_with(x)) {
                continue;
            }
            let Some(path) = rel.to_str().map(String::from) else {
                tracing::warn!(path = ?rel, "not saved: the name is not UTF-8");
                continue;
            };
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            let kind = meta.file_type();
            if kind.is_dir() {
                manifest.directories.push(DirEntry {
                    path,
                    mode: meta.permissions().mode() & 0o7777,
                });
                pending.push(rel);
            } else if kind.is_symlink() {
                if let Ok(target) = std::fs::read_link(entry.path()) {
                    manifest.symlinks.push(SymlinkEntry {
                        path,
                        target: target.to_string_lossy().into_owned(),
                    });
                }
            } else if kind.is_file() {
                let stamp = Stamp::of(&meta);
                let chunks = match previous.files.get(&rel) {
                    Some(old) if old.stamp == stamp => old.chunks.clone(),
                    _ => {
                        let (chunks, read) =
                            read_file(&entry.path(), chunks, &mut next.known, &tx)?;
                        read_bytes += read;
                        chunks
                    }
                };
                manifest.files.push(FileEntry {
                    path,
                    size: chunks.iter().map(|c| c.size).sum(),
                    mode: meta.permissions().mode() & 0o7777,
                    chunks: chunks.clone(),
                });
                next.files.insert(rel, Indexed { stamp, chunks });
            }
            // Sockets, FIFOs and devices are not saved.
        }
    }
    Ok((manifest, next, read_bytes))
}

fn read_file(
    path: &Path,
    chunks: &S3Uri,
    known: &mut HashMap<String, String>,
    tx: &mpsc::Sender<(S3Uri, Bytes)>,
) -> Result<(Vec<ChunkRef>, u64), String> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((vec![], 0)),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut refs = vec![];
    let mut total = 0u64;
    loop {
        let mut buf = Vec::with_capacity(CHUNK_SIZE);
        (&mut file)
            .take(CHUNK_SIZE as u64)
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if buf.is_empty() {
            break;
        }
        let full = buf.len() == CHUNK_SIZE;
        total += buf.len() as u64;
        let sha = hex(&Sha256::digest(&buf));
        let uri = match known.get(&sha) {
            Some(uri) => uri.clone(),
            None => {
                let uri = chunks.join(&sha);
                known.insert(sha.clone(), uri.to_string());
                tx.blocking_send((uri.clone(), Bytes::from(buf.clone())))
                    .map_err(|_| "the snapshot was abandoned (an upload failed)".to_string())?;
                uri.to_string()
            }
        };
        refs.push(ChunkRef {
            sha256: sha,
            size: buf.len() as u64,
            uri,
        });
        if !full {
            break;
        }
    }
    Ok((refs, total))
}

/// What a session restores: the checkpoint's prefix (`CHECKPOINT_RESTORE_URI`) and the
/// SHA-256 its manifest had when the control plane recorded the checkpoint
/// (`CHECKPOINT_RESTORE_SHA256`; `None` for a checkpoint recorded before hashes were).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source<'a> {
    pub uri: &'a str,
    pub manifest_sha256: Option<&'a str>,
}

/// Restores the checkpoint `source` into `workspace` with the default limits.
pub async fn restore(
    objects: Arc<dyn Objects>,
    source: &Source<'_>,
    workspace: &Path,
) -> Result<(Index, Stats), String> {
    restore_within(objects, source, workspace, &Limits::DEFAULT).await
}

/// Restores the checkpoint `source` into `workspace` (docs/security.md, "Checkpoints and
/// restore"): the manifest is read (at most `limits.manifest_bytes`), compared with the
/// recorded SHA-256 and checked whole (paths, counts, sizes, free space) before anything
/// is written; every chunk is read at most to its stated size and checked against its
/// checksum; nothing is written, created or removed through a symbolic link; modes keep
/// their permission bits only. Returns the index the next snapshot starts from (restored
/// files are not read again; their chunks are not uploaded again).
pub async fn restore_within(
    objects: Arc<dyn Objects>,
    source: &Source<'_>,
    workspace: &Path,
    limits: &Limits,
) -> Result<(Index, Stats), String> {
    let started = Instant::now();
    let prefix = S3Uri::parse(source.uri)?;
    let refused = |e: String| format!("checkpoint {prefix} cannot be restored: {e}");
    let manifest_uri = prefix.join(MANIFEST);
    let bytes = objects
        .get(&manifest_uri, limits.manifest_bytes)
        .await
        .map_err(refused)?
        .ok_or_else(|| {
            format!(
                "checkpoint {prefix} has no manifest.json (it was never finalized, or was deleted)"
            )
        })?;
    if let Some(expected) = source.manifest_sha256 {
        let sha = hex(&Sha256::digest(&bytes));
        if !sha.eq_ignore_ascii_case(expected) {
            return Err(refused(format!(
                "manifest.json was changed after the checkpoint was recorded (its SHA-256 is {sha}, the control plane recorded {expected})"
            )));
        }
    }
    let manifest = Manifest::parse_within(&bytes, limits).map_err(refused)?;
    drop(bytes);
    let free = free_bytes(workspace)?;
    if manifest.total_bytes() > free {
        return Err(refused(format!(
            "its files hold {} bytes, the workspace's file system has {free} free",
            manifest.total_bytes()
        )));
    }
    let root = Arc::new(confine::Dir::open(workspace)?);
    for d in &manifest.directories {
        root.dir(&relative_path(&d.path)?, true).map_err(refused)?;
    }
    let permits = Arc::new(Semaphore::new(PARALLEL));
    let mut tasks = JoinSet::new();
    for file in manifest.files.clone() {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let (objects, root, prefix) = (objects.clone(), root.clone(), prefix.clone());
        tasks.spawn(async move {
            let _permit = permit;
            restore_file(objects.as_ref(), &root, &file)
                .await
                .map_err(|e| format!("checkpoint {prefix} is corrupt: {e}"))
        });
    }
    let mut index = Index::default();
    let mut stats = Stats::default();
    let mut failure = None;
    while let Some(done) = tasks.join_next().await {
        match done.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok((rel, indexed)) => {
                stats.files += 1;
                stats.bytes += indexed.stamp.size;
                stats.transferred_bytes += indexed.stamp.size;
                stats.transferred_chunks += indexed.chunks.len();
                index.files.insert(rel, indexed);
            }
            Err(e) => {
                tasks.abort_all();
                failure.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    // Links last, so no file is written through one; none is followed on the way to
    // another (an earlier link of the same manifest included).
    for link in &manifest.symlinks {
        root.symlink(&relative_path(&link.path)?, &link.target)
            .map_err(refused)?;
    }
    // Directory modes last (deepest first): a read-only directory would have refused
    // its files.
    let mut directories: Vec<&DirEntry> = manifest.directories.iter().collect();
    directories.sort_by_key(|d| std::cmp::Reverse(Path::new(&d.path).components().count()));
    for d in directories {
        if let Ok(dir) = root.dir(&relative_path(&d.path)?, false) {
            let _ = dir.set_mode(confine::permission_bits(d.mode));
        }
    }
    for f in &manifest.files {
        for c in &f.chunks {
            index.known.insert(c.sha256.clone(), c.uri.clone());
        }
    }
    stats.elapsed = started.elapsed();
    Ok((index, stats))
}

/// Bytes an unprivileged writer may still use on the file system holding `path`.
fn free_bytes(path: &Path) -> Result<u64, String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("'{}' holds a NUL byte", path.display()))?;
    // SAFETY: a zeroed statvfs is a valid out-parameter; `c` is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } < 0 {
        return Err(format!(
            "cannot read the free space of {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

async fn restore_file(
    objects: &dyn Objects,
    root: &confine::Dir,
    file: &FileEntry,
) -> Result<(PathBuf, Indexed), String> {
    use tokio::io::AsyncWriteExt;
    let rel = relative_path(&file.path)?;
    let path = root.path().join(&rel);
    let std_file = root.create_file(&rel)?;
    let mut out = tokio::fs::File::from_std(std_file);
    for (n, chunk) in file.chunks.iter().enumerate() {
        let uri = S3Uri::parse(&chunk.uri)?;
        // Read no further than the manifest's size: a larger object is refused while
        // it streams.
        let body = objects
            .get(&uri, chunk.size)
            .await
            .map_err(|e| format!("{}: chunk {n}: {e}", file.path))?
            .ok_or_else(|| format!("{}: chunk {n} ({uri}) is missing", file.path))?;
        if body.len() as u64 != chunk.size {
            return Err(format!(
                "{}: chunk {n} has {} bytes, the manifest says {}",
                file.path,
                body.len(),
                chunk.size
            ));
        }
        let sha = hex(&Sha256::digest(&body));
        if sha != chunk.sha256 {
            return Err(format!(
                "{}: chunk {n} has checksum {sha}, the manifest says {}",
                file.path, chunk.sha256
            ));
        }
        out.write_all(&body)
            .await
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    out.flush().await.map_err(|e| e.to_string())?;
    let out = out.into_std().await;
    let _ = out.set_permissions(std::fs::Permissions::from_mode(confine::permission_bits(
        file.mode,
    )));
    let meta = out.metadata().map_err(|e| e.to_string())?;
    Ok((
        rel,
        Indexed {
            stamp: Stamp::of(&meta),
            chunks: file.chunks.clone(),
        },
    ))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3339 UTC, seconds (no date crate in the agent).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    rfc3339(secs)
}

pub fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::MemoryObjects;
    use std::sync::atomic::Ordering;

    fn layout(cp: &str) -> Layout {
        Layout::from_save_uri(&format!("s3://b/work/.studios/st-1/checkpoints/{cp}/")).unwrap()
    }

    fn unchecked(uri: &str) -> Source<'_> {
        Source {
            uri,
            manifest_sha256: None,
        }
    }

    fn write(dir: &Path, rel: &str, data: &[u8]) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    #[test]
    fn the_layout_puts_chunks_beside_the_checkpoints() {
        let l = layout("cp-1");
        assert_eq!(
            l.save.to_string(),
            "s3://b/work/.studios/st-1/checkpoints/cp-1/"
        );
        assert_eq!(l.chunks.to_string(), "s3://b/work/.studios/st-1/chunks/");
        assert!(Layout::from_save_uri("s3://b/work/cp-1/").is_err());
    }

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_689_000), "2026-11-26T10:30:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[tokio::test]
    async fn a_save_restores_byte_for_byte_and_unchanged_data_is_not_uploaded_again() {
        let objects = Arc::new(MemoryObjects::default());
        let one = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..(CHUNK_SIZE * 2 + 100))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        write(one.path(), "notebooks/a.ipynb", b"{\"cells\": []}");
        write(one.path(), "big.bin", &big);
        write(one.path(), "copy.bin", &big);
        write(one.path(), "empty", b"");
        write(one.path(), "data/mounted/x", b"not saved");
        std::fs::create_dir_all(one.path().join("empty-dir")).unwrap();
        std::os::unix::fs::symlink("big.bin", one.path().join("link")).unwrap();
        let mut index = Index::default();
        let exclude = [PathBuf::from("data/mounted")];
        let stats = save(
            objects.clone(),
            one.path(),
            &layout("cp-1"),
            &mut index,
            &exclude,
        )
        .await
        .unwrap();
        // The copy and the repeated chunk content cost nothing: 3 chunks of big + 1 small.
        assert_eq!(stats.transferred_chunks, 4);
        assert_eq!(stats.files, 4);

        let two = tempfile::tempdir().unwrap();
        let (mut restored, rstats) = restore(
            objects.clone(),
            &unchecked("s3://b/work/.studios/st-1/checkpoints/cp-1/"),
            two.path(),
        )
        .await
        .unwrap();
        assert_eq!(rstats.files, 4);
        assert_eq!(std::fs::read(two.path().join("big.bin")).unwrap(), big);
        assert_eq!(
            std::fs::read(two.path().join("notebooks/a.ipynb")).unwrap(),
            b"{\"cells\": []}"
        );
        assert!(two.path().join("empty-dir").is_dir());
        assert!(!two.path().join("data/mounted/x").exists());
        assert_eq!(
            std::fs::read_link(two.path().join("link")).unwrap(),
            PathBuf::from("big.bin")
        );

        // The next session (a clone's, here under another studio) changes one small
        // file: only that file is read, and only its chunk and the manifest are sent.
        write(two.path(), "notebooks/a.ipynb", b"{\"cells\": [1]}");
        let before = objects.put_bytes.load(Ordering::Relaxed);
        let clone = Layout::from_save_uri("s3://b/work/.studios/st-2/checkpoints/cp-9/").unwrap();
        let stats = save(objects.clone(), two.path(), &clone, &mut restored, &[])
            .await
            .unwrap();
        assert_eq!(stats.transferred_chunks, 1);
        assert_eq!(stats.read_bytes, 14);
        let sent = objects.put_bytes.load(Ordering::Relaxed) - before;
        assert!(sent < 4096, "sent {sent} bytes");
        // Its manifest refers to the source's chunks for what did not change.
        let m = objects
            .get(
                &S3Uri::parse("s3://b/work/.studios/st-2/checkpoints/cp-9/manifest.json").unwrap(),
                u64::MAX,
            )
            .await
            .unwrap()
            .unwrap();
        let m = Manifest::parse(&m).unwrap();
        let big_entry = m.files.iter().find(|f| f.path == "big.bin").unwrap();
        assert!(big_entry.chunks[0].uri.contains("/st-1/chunks/"));
    }

    #[tokio::test]
    async fn a_corrupt_or_missing_checkpoint_is_refused_with_its_reason() {
        let objects = Arc::new(MemoryObjects::default());
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.txt", b"hello");
        let mut index = Index::default();
        save(
            objects.clone(),
            dir.path(),
            &layout("cp-1"),
            &mut index,
            &[],
        )
        .await
        .unwrap();
        let chunk = objects
            .keys()
            .into_iter()
            .find(|k| k.contains("/chunks/"))
            .unwrap();
        objects
            .objects
            .lock()
            .unwrap()
            .insert(chunk, Bytes::from_static(b"jello"));
        let out = tempfile::tempdir().unwrap();
        let err = restore(
            objects.clone(),
            &unchecked("s3://b/work/.studios/st-1/checkpoints/cp-1/"),
            out.path(),
        )
        .await
        .unwrap_err();
        assert!(
            err.contains("is corrupt: a.txt: chunk 0 has checksum"),
            "{err}"
        );
        let err = restore(
            objects.clone(),
            &unchecked("s3://b/work/.studios/st-1/checkpoints/cp-2/"),
            out.path(),
        )
        .await
        .unwrap_err();
        assert!(err.contains("has no manifest.json"), "{err}");
    }

    struct Failing;
    #[async_trait::async_trait]
    impl Objects for Failing {
        async fn get(&self, _: &S3Uri, _: u64) -> Result<Option<Bytes>, String> {
            Ok(None)
        }
        async fn put(&self, uri: &S3Uri, _: Bytes) -> Result<(), String> {
            Err(format!("cannot write {uri}: AccessDenied"))
        }
    }

    #[tokio::test]
    async fn a_failed_upload_fails_the_save_and_leaves_the_index_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..40 {
            write(dir.path(), &format!("f{i}"), format!("file {i}").as_bytes());
        }
        let mut index = Index::default();
        let err = save(
            Arc::new(Failing),
            dir.path(),
            &layout("cp-1"),
            &mut index,
            &[],
        )
        .await
        .unwrap_err();
        assert!(err.contains("AccessDenied"), "{err}");
        assert_eq!(index.known_chunks(), 0);
    }

    // Hostile manifests (docs/security.md, "Checkpoints and restore"): each is refused
    // with its reason, and nothing outside the workspace changes.

    const HOSTILE: &str = "s3://b/work/.studios/st-1/checkpoints/cp-x/";

    /// Puts `manifest` (and `chunks`, by checksum) where checkpoint cp-x is.
    fn hostile(objects: &MemoryObjects, manifest: serde_json::Value, chunks: &[&[u8]]) {
        let mut map = objects.objects.lock().unwrap();
        map.insert(
            format!("{HOSTILE}manifest.json"),
            Bytes::from(manifest.to_string()),
        );
        for c in chunks {
            let sha = hex(&Sha256::digest(c));
            map.insert(
                format!("s3://b/work/.studios/st-1/chunks/{sha}"),
                Bytes::copy_from_slice(c),
            );
        }
    }

    fn chunk_ref(data: &[u8]) -> serde_json::Value {
        let sha = hex(&Sha256::digest(data));
        serde_json::json!({"sha256": sha, "size": data.len(),
            "uri": format!("s3://b/work/.studios/st-1/chunks/{sha}")})
    }

    fn manifest_of(
        files: serde_json::Value,
        directories: serde_json::Value,
        symlinks: serde_json::Value,
    ) -> serde_json::Value {
        serde_json::json!({"format": FORMAT, "createdAt": "t", "chunkSize": CHUNK_SIZE,
            "files": files, "directories": directories, "symlinks": symlinks})
    }

    /// A directory standing for what is outside the workspace, and what it holds.
    struct Outside {
        dir: tempfile::TempDir,
    }

    impl Outside {
        fn new() -> Outside {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), "etc/passwd", b"root:x:0:0");
            write(dir.path(), "victim", b"keep me");
            Outside { dir }
        }
        fn path(&self) -> &Path {
            self.dir.path()
        }
        fn listing(&self) -> Vec<(PathBuf, Vec<u8>)> {
            let mut out = vec![];
            let mut stack = vec![self.path().to_path_buf()];
            while let Some(p) = stack.pop() {
                let meta = std::fs::symlink_metadata(&p).unwrap();
                if meta.is_dir() {
                    for e in std::fs::read_dir(&p).unwrap() {
                        stack.push(e.unwrap().path());
                    }
                    out.push((p, vec![]));
                } else {
                    out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
                }
            }
            out.sort();
            out
        }
    }

    async fn restore_hostile(objects: Arc<MemoryObjects>, ws: &Path) -> Result<Stats, String> {
        restore(objects, &unchecked(HOSTILE), ws)
            .await
            .map(|(_, s)| s)
    }

    #[tokio::test]
    async fn chained_links_cannot_write_or_delete_outside_the_workspace() {
        let outside = Outside::new();
        let before = outside.listing();
        let target = outside.path().display().to_string();
        // A link to the outside, then a link "inside" it: the second would replace
        // outside/victim.
        let objects = Arc::new(MemoryObjects::default());
        hostile(
            &objects,
            manifest_of(
                serde_json::json!([]),
                serde_json::json!([]),
                serde_json::json!([{"path": "out", "target": target},
                    {"path": "out/victim", "target": "gone"}]),
            ),
            &[],
        );
        let ws = tempfile::tempdir().unwrap();
        let err = restore_hostile(objects, ws.path()).await.unwrap_err();
        assert!(err.contains("cannot be restored"), "{err}");
        assert!(
            err.contains("out is a symbolic link: not followed"),
            "{err}"
        );
        assert_eq!(outside.listing(), before);

        // A file through a link already in the workspace (whoever made it).
        let objects = Arc::new(MemoryObjects::default());
        hostile(
            &objects,
            manifest_of(
                serde_json::json!([{"path": "pre/etc/passwd", "size": 5, "mode": 420,
                    "chunks": [chunk_ref(b"owned")]}]),
                serde_json::json!([]),
                serde_json::json!([]),
            ),
            &[b"owned"],
        );
        let ws = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), ws.path().join("pre")).unwrap();
        let err = restore_hostile(objects, ws.path()).await.unwrap_err();
        assert!(
            err.contains("pre is a symbolic link: not followed"),
            "{err}"
        );
        assert_eq!(outside.listing(), before);

        // A directory entry through a link, and a file that is itself a link.
        let objects = Arc::new(MemoryObjects::default());
        hostile(
            &objects,
            manifest_of(
                serde_json::json!([{"path": "victim", "size": 5, "mode": 420,
                    "chunks": [chunk_ref(b"owned")]}]),
                serde_json::json!([{"path": "pre/new-dir", "mode": 511}]),
                serde_json::json!([]),
            ),
            &[b"owned"],
        );
        let ws = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), ws.path().join("pre")).unwrap();
        let err = restore_hostile(objects.clone(), ws.path())
            .await
            .unwrap_err();
        assert!(err.contains("pre is a symbolic link"), "{err}");
        let ws = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("victim"), ws.path().join("victim"))
            .unwrap();
        let err = restore_hostile(objects, ws.path()).await.unwrap_err();
        assert!(err.contains("victim is a symbolic link"), "{err}");
        assert_eq!(outside.listing(), before);

        // Paths that leave the workspace by name are refused before anything is made.
        for bad in ["../escape", "/abs/olute", "a/../../escape"] {
            let objects = Arc::new(MemoryObjects::default());
            hostile(
                &objects,
                manifest_of(
                    serde_json::json!([]),
                    serde_json::json!([{"path": "made", "mode": 493}]),
                    serde_json::json!([{"path": bad, "target": "x"}]),
                ),
                &[],
            );
            let ws = tempfile::tempdir().unwrap();
            let err = restore_hostile(objects, ws.path()).await.unwrap_err();
            assert!(err.contains("outside the workspace"), "{bad}: {err}");
            assert!(!ws.path().join("made").exists());
        }
        assert_eq!(outside.listing(), before);
    }

    #[tokio::test]
    async fn links_are_restored_as_links_and_left_unfollowed() {
        let outside = Outside::new();
        let before = outside.listing();
        let objects = Arc::new(MemoryObjects::default());
        hostile(
            &objects,
            manifest_of(
                serde_json::json!([{"path": "data/a.txt", "size": 2, "mode": 420,
                    "chunks": [chunk_ref(b"hi")]}]),
                serde_json::json!([{"path": "data", "mode": 493}]),
                serde_json::json!([{"path": "etc", "target": outside.path().join("etc")}]),
            ),
            &[b"hi"],
        );
        let ws = tempfile::tempdir().unwrap();
        restore_hostile(objects, ws.path()).await.unwrap();
        assert_eq!(std::fs::read(ws.path().join("data/a.txt")).unwrap(), b"hi");
        assert_eq!(
            std::fs::read_link(ws.path().join("etc")).unwrap(),
            outside.path().join("etc")
        );
        assert_eq!(outside.listing(), before);
    }

    #[tokio::test]
    async fn huge_counts_and_sizes_are_refused_before_anything_is_written() {
        // Over a million entries (the default limit).
        let mut body = format!(
            r#"{{"format":"{FORMAT}","createdAt":"t","chunkSize":4,"files":[],"directories":["#
        );
        for i in 0..=Limits::DEFAULT.entries {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&format!(r#"{{"path":"d{i}","mode":493}}"#));
        }
        body.push_str("]}");
        let objects = Arc::new(MemoryObjects::default());
        objects
            .objects
            .lock()
            .unwrap()
            .insert(format!("{HOSTILE}manifest.json"), Bytes::from(body));
        let ws = tempfile::tempdir().unwrap();
        let err = restore_hostile(objects, ws.path()).await.unwrap_err();
        assert!(
            err.contains("lists 1000001 files, directories and links, more than the 1000000"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(ws.path()).unwrap().count(), 0);

        // A manifest larger than the limit is not read whole.
        let objects = Arc::new(MemoryObjects::default());
        hostile(&objects, serde_json::json!("x".repeat(1 << 20)), &[]);
        let small = Limits {
            manifest_bytes: 1 << 20,
            ..Limits::DEFAULT
        };
        let err = restore_within(objects, &unchecked(HOSTILE), ws.path(), &small)
            .await
            .unwrap_err();
        assert!(err.contains("holds more than 1048576 bytes"), "{err}");

        // More bytes than the limit, and more than the disk has free.
        let full = vec![0u8; 16];
        let files: Vec<serde_json::Value> = (0..3)
            .map(|i| {
                serde_json::json!({"path": format!("f{i}"), "size": 32, "mode": 420,
                "chunks": [chunk_ref(&full), chunk_ref(&full)]})
            })
            .collect();
        let objects = Arc::new(MemoryObjects::default());
        hostile(
            &objects,
            manifest_of(
                serde_json::json!(files),
                serde_json::json!([]),
                serde_json::json!([]),
            ),
            &[&full],
        );
        let tiny = Limits {
            total_bytes: 64,
            chunk_bytes: 16,
            ..Limits::DEFAULT
        };
        let err = restore_within(objects.clone(), &unchecked(HOSTILE), ws.path(), &tiny)
            .await
            .unwrap_err();
        assert!(err.contains("more than 64 bytes of files"), "{err}");
        assert_eq!(std::fs::read_dir(ws.path()).unwrap().count(), 0);
        let free = free_bytes(ws.path()).unwrap();
        assert!(free > 0);
        let big = CHUNK_SIZE as u64 * 65_000;
        let chunks: Vec<serde_json::Value> = (0..65_000u64)
            .map(|i| {
                let sha = format!("{:064x}", i % 3);
                serde_json::json!({"sha256": sha, "size": CHUNK_SIZE,
                    "uri": format!("s3://b/work/.studios/st-1/chunks/{sha}")})
            })
            .collect();
        // 10 files of 65,000 full chunks: 2.6 TB, over the default limit too.
        let one = serde_json::json!({"path": "huge", "size": big, "mode": 420, "chunks": chunks});
        let objects = Arc::new(MemoryObjects::default());
        hostile(
            &objects,
            manifest_of(
                serde_json::json!([one]),
                serde_json::json!([]),
                serde_json::json!([]),
            ),
            &[],
        );
        if free < big {
            let err = restore_hostile(objects, ws.path()).await.unwrap_err();
            assert!(
                err.contains(&format!("its files hold {big} bytes")) && err.contains("free"),
                "{err}"
            );
            assert_eq!(std::fs::read_dir(ws.path()).unwrap().count(), 0);
        }
    }

    #[tokio::test]
    async fn oversized_and_overused_chunks_are_refused() {
        let ws = tempfile::tempdir().unwrap();
        // The manifest says 5 bytes; the object holds 10 MiB: refused, not buffered
        // past the 5 (objects.rs checks it while the body streams from S3).
        let objects = Arc::new(MemoryObjects::default());
        let sha = hex(&Sha256::digest(b"small"));
        hostile(
            &objects,
            manifest_of(
                serde_json::json!([{"path": "f", "size": 5, "mode": 420, "chunks": [
                    {"sha256": sha, "size": 5, "uri": "s3://b/work/.studios/st-1/chunks/big"}]}]),
                serde_json::json!([]),
                serde_json::json!([]),
            ),
            &[],
        );
        objects.objects.lock().unwrap().insert(
            "s3://b/work/.studios/st-1/chunks/big".into(),
            Bytes::from(vec![0u8; 10 << 20]),
        );
        let err = restore_hostile(objects, ws.path()).await.unwrap_err();
        assert!(
            err.contains(
                "f: chunk 0: s3://b/work/.studios/st-1/chunks/big holds more than 5 bytes"
            ),
            "{err}"
        );
        // (The session ends there, without a save: main.rs.)
        let ws = tempfile::tempdir().unwrap();

        // A chunk the manifest itself says is larger than chunks are.
        let objects = Arc::new(MemoryObjects::default());
        let huge = 5u64 << 30;
        hostile(
            &objects,
            manifest_of(
                serde_json::json!([{"path": "f", "size": huge, "mode": 420, "chunks": [
                    {"sha256": sha, "size": huge, "uri": "s3://b/work/.studios/st-1/chunks/big"}]}]),
                serde_json::json!([]),
                serde_json::json!([]),
            ),
            &[],
        );
        let err = restore_hostile(objects, ws.path()).await.unwrap_err();
        assert!(
            err.contains(&format!("chunk 0 of f has {huge} bytes")),
            "{err}"
        );

        // One chunk used more than 65,536 times (each use a download).
        let uses = Limits::DEFAULT.chunk_uses + 1;
        let full = chunk_ref(&vec![7u8; CHUNK_SIZE]);
        let objects = Arc::new(MemoryObjects::default());
        hostile(
            &objects,
            manifest_of(
                serde_json::json!([{"path": "f", "size": (uses * CHUNK_SIZE) as u64, "mode": 420,
                    "chunks": vec![full; uses]}]),
                serde_json::json!([]),
                serde_json::json!([]),
            ),
            &[],
        );
        let err = restore_hostile(objects, ws.path()).await.unwrap_err();
        assert!(err.contains("more than 65536 times"), "{err}");
        assert_eq!(std::fs::read_dir(ws.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn setuid_setgid_and_sticky_bits_are_never_restored() {
        let objects = Arc::new(MemoryObjects::default());
        hostile(
            &objects,
            manifest_of(
                serde_json::json!([{"path": "bin/tool", "size": 2, "mode": 0o6755,
                    "chunks": [chunk_ref(b"#!")]}]),
                serde_json::json!([{"path": "bin", "mode": 0o3777}]),
                serde_json::json!([]),
            ),
            &[b"#!"],
        );
        let ws = tempfile::tempdir().unwrap();
        restore_hostile(objects, ws.path()).await.unwrap();
        let file = std::fs::metadata(ws.path().join("bin/tool")).unwrap();
        assert_eq!(file.permissions().mode() & 0o7777, 0o755);
        let dir = std::fs::metadata(ws.path().join("bin")).unwrap();
        assert_eq!(dir.permissions().mode() & 0o7777, 0o777);
    }

    #[tokio::test]
    async fn a_manifest_rewritten_after_it_was_recorded_is_refused() {
        let objects = Arc::new(MemoryObjects::default());
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.txt", b"hello");
        let mut index = Index::default();
        let stats = save(
            objects.clone(),
            dir.path(),
            &layout("cp-1"),
            &mut index,
            &[],
        )
        .await
        .unwrap();
        let recorded = stats.manifest_sha256.unwrap();
        let key = "s3://b/work/.studios/st-1/checkpoints/cp-1/manifest.json";
        let original = objects.objects.lock().unwrap()[key].clone();
        assert_eq!(hex(&Sha256::digest(&original)), recorded);
        // Rewritten later (valid, and hostile): a link to the outside.
        let outside = Outside::new();
        let mut m = Manifest::parse(&original).unwrap();
        m.symlinks.push(SymlinkEntry {
            path: "etc".into(),
            target: outside.path().display().to_string(),
        });
        objects
            .objects
            .lock()
            .unwrap()
            .insert(key.into(), Bytes::from(serde_json::to_vec(&m).unwrap()));
        let source = Source {
            uri: "s3://b/work/.studios/st-1/checkpoints/cp-1/",
            manifest_sha256: Some(&recorded),
        };
        let ws = tempfile::tempdir().unwrap();
        let err = restore(objects.clone(), &source, ws.path())
            .await
            .unwrap_err();
        assert!(
            err.contains("manifest.json was changed after the checkpoint was recorded"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(ws.path()).unwrap().count(), 0);
        // As recorded, it restores.
        objects.objects.lock().unwrap().insert(key.into(), original);
        restore(objects, &source, ws.path()).await.unwrap();
        assert_eq!(std::fs::read(ws.path().join("a.txt")).unwrap(), b"hello");
    }
}
