//! A granted directory, opened once and held by handle.
//!
//! A grant is a capability: the directory the configuration named when it
//! was planned, not whatever that name leads to later. Re-opening a grant by
//! path at every instance start let a tenant who can write next to (or
//! inside) a granted directory swap it for a symlink and have the host
//! follow it into another tenant's files. So each grant is opened exactly
//! once, when the configuration is planned, one path component at a time
//! without following symlinks (a symlink anywhere in the path is refused,
//! naming it, unless the grant says `follow_symlinks = true`, in which case
//! the path is resolved once, here). Instances get that same directory
//! through [`GrantDir::reopen_path`], never by a fresh look-up of its name.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Why a grant's directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum GrantDirError {
    #[error(
        "{link} is a symlink (to {target}); grants do not follow symlinks, so a tenant cannot redirect one: \
         grant the directory it leads to, or set follow_symlinks = true on this grant to resolve it once at start"
    )]
    Symlink { link: PathBuf, target: String },
    #[error("{0} is not a directory (grants are directories)")]
    NotADirectory(PathBuf),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0:?} is not an absolute path")]
    Relative(PathBuf),
}

/// An open directory (an `O_PATH` descriptor), shared by every instance of
/// the grant. Two handles are equal when they are the same directory
/// (device and inode), whatever path reached them.
#[derive(Clone)]
pub struct GrantDir {
    fd: Arc<OwnedFd>,
    dev: u64,
    ino: u64,
    /// Where the directory was when it was opened: the path itself, or, for
    /// a grant that follows symlinks, what the path resolved to.
    resolved: PathBuf,
}

impl GrantDir {
    /// Opens `path` (absolute) once. Without `follow_symlinks`, every
    /// component is opened with `O_NOFOLLOW` from `/`, and a symlink
    /// anywhere is an error naming it; `.` and `..` are taken lexically
    /// first, which is what the kernel would do on a path with no symlinks.
    pub fn open(path: &Path, follow_symlinks: bool) -> Result<GrantDir, GrantDirError> {
        if !path.is_absolute() {
            return Err(GrantDirError::Relative(path.to_owned()));
        }
        if follow_symlinks {
            let fd = open_at(libc::AT_FDCWD, path.as_os_str(), 0).map_err(|e| classify(path, e))?;
            return GrantDir::from_fd(fd, path);
        }
        let normal = normalize(path);
        let mut current = open_at(libc::AT_FDCWD, OsStr::new("/"), libc::O_NOFOLLOW).map_err(|e| GrantDirError::Io("/".into(), e))?;
        let mut so_far = PathBuf::from("/");
        for part in normal.components().skip(1) {
            let name = part.as_os_str();
            so_far.push(name);
            current = match open_at(current.as_raw_fd(), name, libc::O_NOFOLLOW) {
                Ok(fd) => fd,
                Err(e) => {
                    if let Some(target) = symlink_target(&current, name) {
                        return Err(GrantDirError::Symlink { link: so_far, target });
                    }
                    return Err(match classify(&so_far, e) {
                        // The whole path is what the configuration says.
                        GrantDirError::Io(_, e) => GrantDirError::Io(normal, e),
                        other => other,
                    });
                }
            };
        }
        GrantDir::from_fd(current, &normal)
    }

    fn from_fd(fd: OwnedFd, path: &Path) -> Result<GrantDir, GrantDirError> {
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(GrantDirError::Io(path.to_owned(), std::io::Error::last_os_error()));
        }
        let resolved = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_else(|_| path.to_owned());
        Ok(GrantDir { fd: Arc::new(fd), dev: st.st_dev, ino: st.st_ino, resolved })
    }

    /// Where the directory was when it was opened (symlinks resolved).
    pub fn resolved(&self) -> &Path {
        &self.resolved
    }

    /// A path that opens this very directory, whatever has been renamed or
    /// replaced since: the descriptor's entry in `/proc/self/fd`, a link the
    /// kernel resolves to the open directory itself, not to a name.
    /// wasmtime-wasi's `preopened_dir` takes only a path; this is how an
    /// instance gets the handle rather than a new look-up of the grant's name.
    pub fn reopen_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// Device and inode: what the grant is, for keys that must change when
    /// a directory is replaced by another under the same name.
    pub fn identity(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}

impl PartialEq for GrantDir {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for GrantDir {}

impl std::fmt::Debug for GrantDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GrantDir({}, dev {} ino {})", self.resolved.display(), self.dev, self.ino)
    }
}

/// `path` with `.` dropped and `..` applied to what precedes it.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `openat(dir, name, O_PATH | O_DIRECTORY | O_CLOEXEC | extra)`.
fn open_at(dir: libc::c_int, name: &OsStr, extra: libc::c_int) -> std::io::Result<OwnedFd> {
    let name = CString::new(name.as_bytes()).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let fd = unsafe { libc::openat(dir, name.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC | extra) };
    if fd < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// The target of `name` in `dir` if it is a symlink.
fn symlink_target(dir: &OwnedFd, name: &OsStr) -> Option<String> {
    let name = CString::new(name.as_bytes()).ok()?;
    let mut buf = vec![0u8; 4096];
    let n = unsafe { libc::readlinkat(dir.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(String::from_utf8_lossy(&buf).into_owned())
}

fn classify(path: &Path, e: std::io::Error) -> GrantDirError {
    if e.raw_os_error() == Some(libc::ENOTDIR) {
        GrantDirError::NotADirectory(path.to_owned())
    } else {
        GrantDirError::Io(path.to_owned(), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wasgi-grant-dir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_symlink_anywhere_in_the_path_is_refused_and_named() {
        let dir = scratch("link");
        std::fs::create_dir_all(dir.join("real/inner")).unwrap();
        std::os::unix::fs::symlink("real", dir.join("alias")).unwrap();
        let err = GrantDir::open(&dir.join("alias/inner"), false).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{} is a symlink (to real)", dir.join("alias").display())), "{err}");
        // Resolved once when the grant says so.
        let followed = GrantDir::open(&dir.join("alias/inner"), true).unwrap();
        assert_eq!(followed.resolved(), dir.join("real/inner"));
        assert_eq!(followed, GrantDir::open(&dir.join("real/inner"), false).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_handle_keeps_the_directory_it_opened_when_the_name_is_swapped() {
        let dir = scratch("swap");
        std::fs::create_dir_all(dir.join("grant")).unwrap();
        std::fs::write(dir.join("grant/mine.txt"), "mine").unwrap();
        std::fs::create_dir_all(dir.join("other")).unwrap();
        std::fs::write(dir.join("other/secret.txt"), "secret").unwrap();
        let handle = GrantDir::open(&dir.join("grant"), false).unwrap();
        std::fs::rename(dir.join("grant"), dir.join("grant.old")).unwrap();
        std::os::unix::fs::symlink("other", dir.join("grant")).unwrap();
        let reopened = handle.reopen_path();
        assert_eq!(std::fs::read_to_string(reopened.join("mine.txt")).unwrap(), "mine");
        assert!(!reopened.join("secret.txt").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_and_non_directories_say_so() {
        let dir = scratch("missing");
        std::fs::write(dir.join("file"), "").unwrap();
        let err = GrantDir::open(&dir.join("file"), false).unwrap_err();
        assert!(matches!(err, GrantDirError::NotADirectory(_)), "{err}");
        let err = GrantDir::open(&dir.join("nope"), false).unwrap_err().to_string();
        assert!(err.contains("No such file"), "{err}");
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
