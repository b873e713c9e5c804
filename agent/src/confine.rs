//! File operations confined to the workspace (docs/security.md, "Checkpoints and
//! restore"). A checkpoint's manifest and the workspace it restores are the session's
//! users' to shape: a path may name a symbolic link anywhere. Everything the agent (root)
//! writes, creates or removes in the workspace goes through a directory descriptor walk
//! from the workspace's root, one component at a time, with `O_NOFOLLOW`: a component
//! that is a symbolic link (or not a directory) is refused, never followed, whoever made
//! it (an earlier entry of the same manifest included).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// An open directory of the workspace.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    /// Where it is, for messages.
    path: PathBuf,
}

fn c_name(name: &std::ffi::OsStr) -> Result<CString, String> {
    CString::new(name.as_bytes()).map_err(|_| format!("'{}' holds a NUL byte", name.display()))
}

fn last_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// The normal components of `rel` (a relative path without `..`), else a refusal.
fn components(rel: &Path) -> Result<Vec<&std::ffi::OsStr>, String> {
    let mut out = vec![];
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "'{}' is not a path inside the workspace",
                    rel.display()
                ))
            }
        }
    }
    Ok(out)
}

impl Dir {
    /// The workspace's root (the agent's own setting: followed as given).
    pub fn open(path: &Path) -> Result<Dir, String> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| format!("'{}' holds a NUL byte", path.display()))?;
        // SAFETY: a valid NUL-terminated path; the descriptor returned is owned below.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(format!("cannot open {}: {}", path.display(), last_error()));
        }
        Ok(Dir {
            // SAFETY: `fd` was just opened and is owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path naming exactly this directory (its descriptor's `/proc/self/fd` entry),
    /// for tools that take paths: whatever its names became, it is this directory.
    pub fn fd_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// The directory `name` right inside this one, made first if `create` and missing;
    /// a symbolic link or anything that is not a directory is refused.
    fn child(&self, name: &std::ffi::OsStr, create: bool) -> Result<Dir, String> {
        let c = c_name(name)?;
        let path = self.path.join(name);
        if create {
            // SAFETY: a valid descriptor and NUL-terminated name.
            let made = unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), 0o777) };
            if made < 0 && last_error().raw_os_error() != Some(libc::EEXIST) {
                return Err(format!(
                    "cannot create {}: {}",
                    path.display(),
                    last_error()
                ));
            }
        }
        // SAFETY: as above; O_NOFOLLOW: a symbolic link is never followed.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = last_error();
            return Err(match e.raw_os_error() {
                Some(libc::ELOOP) | Some(libc::ENOTDIR) if self.is_symlink(&c) => {
                    format!("{} is a symbolic link: not followed", path.display())
                }
                Some(libc::ENOTDIR) => format!("{} is not a directory", path.display()),
                _ => format!("cannot open {}: {e}", path.display()),
            });
        }
        Ok(Dir {
            // SAFETY: just opened, owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path,
        })
    }

    fn is_symlink(&self, name: &CString) -> bool {
        // SAFETY: a zeroed stat is a valid out-parameter; valid descriptor and name.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                name.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        r == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFLNK
    }

    /// The directory at `rel` below this one, every component a real directory (made if
    /// `create` and missing).
    pub fn dir(&self, rel: &Path, create: bool) -> Result<Dir, String> {
        let mut dir = self.try_clone()?;
        for name in components(rel)? {
            dir = dir.child(name, create)?;
        }
        Ok(dir)
    }

    fn try_clone(&self) -> Result<Dir, String> {
        Ok(Dir {
            fd: self
                .fd
                .try_clone()
                .map_err(|e| format!("cannot open {}: {e}", self.path.display()))?,
            path: self.path.clone(),
        })
    }

    /// The parent directory of `rel` (made as needed) and `rel`'s last name.
    fn parent_of(&self, rel: &Path) -> Result<(Dir, CString, PathBuf), String> {
        let names = components(rel)?;
        let Some((last, parents)) = names.split_last() else {
            return Err(format!("'{}' names no file", rel.display()));
        };
        let mut dir = self.try_clone()?;
        for name in parents {
            dir = dir.child(name, true)?;
        }
        let path = dir.path.join(last);
        Ok((dir, c_name(last)?, path))
    }

    /// Creates (or truncates) the regular file at `rel`, for writing (mode 0600 until
    /// its own is set); a symbolic link there is refused, not followed.
    pub fn create_file(&self, rel: &Path) -> Result<File, String> {
        let (dir, name, path) = self.parent_of(rel)?;
        // SAFETY: valid descriptor and name; the descriptor returned is owned below.
        let fd = unsafe {
            libc::openat(
                dir.fd.as_raw_fd(),
                name.as_ptr(),
                libc::O_WRONLY
                    | libc::O_CREAT
                    | libc::O_TRUNC
                    | libc::O_NOFOLLOW
                    | libc::O_NONBLOCK
                    | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        if fd < 0 {
            let e = last_error();
            return Err(match e.raw_os_error() {
                Some(libc::ELOOP) => format!("{} is a symbolic link: not followed", path.display()),
                _ => format!("cannot write {}: {e}", path.display()),
            });
        }
        // SAFETY: just opened, owned by nobody else.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        // Only a regular file is written (a FIFO or device left there is refused).
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if !meta.is_file() {
            return Err(format!("{} is not a regular file", path.display()));
        }
        Ok(file)
    }

    /// A symbolic link at `rel` to `target` (what it points to is not looked at),
    /// replacing a file or link there.
    pub fn symlink(&self, rel: &Path, target: &str) -> Result<(), String> {
        let (dir, name, path) = self.parent_of(rel)?;
        let target = CString::new(target)
            .map_err(|_| format!("the link {} has a NUL byte in its target", path.display()))?;
        // SAFETY: valid descriptor and names. unlinkat never follows the last component.
        unsafe { libc::unlinkat(dir.fd.as_raw_fd(), name.as_ptr(), 0) };
        let made = unsafe { libc::symlinkat(target.as_ptr(), dir.fd.as_raw_fd(), name.as_ptr()) };
        if made < 0 {
            return Err(format!(
                "cannot create the link {}: {}",
                path.display(),
                last_error()
            ));
        }
        Ok(())
    }

    /// Sets this directory's mode.
    pub fn set_mode(&self, mode: u32) -> Result<(), String> {
        // SAFETY: a valid descriptor.
        if unsafe { libc::fchmod(self.fd.as_raw_fd(), mode as libc::mode_t) } < 0 {
            return Err(format!(
                "cannot set the mode of {}: {}",
                self.path.display(),
                last_error()
            ));
        }
        Ok(())
    }
}

/// Permission bits only: setuid, setgid and sticky bits are never restored.
pub fn permission_bits(mode: u32) -> u32 {
    mode & 0o777
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_never_followed_on_the_way_or_at_the_end() {
        let outside = tempfile::tempdir().unwrap();
        let ws = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), ws.path().join("out")).unwrap();
        std::fs::write(outside.path().join("f"), b"keep").unwrap();
        std::os::unix::fs::symlink(outside.path().join("f"), ws.path().join("f")).unwrap();
        let root = Dir::open(ws.path()).unwrap();
        let err = root.create_file(Path::new("out/new")).unwrap_err();
        assert!(err.contains("is a symbolic link: not followed"), "{err}");
        let err = root.dir(Path::new("out/a/b"), true).unwrap_err();
        assert!(err.contains("is a symbolic link"), "{err}");
        let err = root.create_file(Path::new("f")).unwrap_err();
        assert!(err.contains("is a symbolic link"), "{err}");
        let err = root.symlink(Path::new("out/l"), "/").unwrap_err();
        assert!(err.contains("is a symbolic link"), "{err}");
        assert!(root.dir(Path::new("../x"), true).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
        assert_eq!(std::fs::read(outside.path().join("f")).unwrap(), b"keep");
        // Real directories are made and used.
        use std::io::Write;
        root.create_file(Path::new("a/b/c.txt"))
            .unwrap()
            .write_all(b"x")
            .unwrap();
        assert_eq!(std::fs::read(ws.path().join("a/b/c.txt")).unwrap(), b"x");
        assert_eq!(permission_bits(0o4755), 0o755);
        assert_eq!(permission_bits(0o3777), 0o777);
    }
}
