//! The on-disk cache's files: compiled code is written whole (a temporary
//! file and a rename), readable only by this user, and loaded only from
//! files that pass [`trusted_artifact`]; and Cranelift's per-function cache.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// Compiled code is loaded only from a file this user owns and nobody else
/// can write: anything else in the cache is treated as damaged.
pub(crate) fn trusted_artifact(path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let me = unsafe { libc::geteuid() };
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    if meta.uid() != me {
        bail!("{} belongs to uid {}, not to this user (uid {me}); compiled code is loaded only from the server's own files", path.display(), meta.uid());
    }
    if meta.mode() & 0o022 != 0 {
        bail!("{} is writable by other users (mode {:o}); compiled code is loaded only from files nobody else can change", path.display(), meta.mode() & 0o777);
    }
    Ok(())
}


pub(crate) fn unique() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}


/// Writes `path` through a temporary file beside it and a rename, so a
/// crash never leaves a half-written file behind.
pub(crate) fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}-{}.tmp", std::process::id(), unique()));
    write_private(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Writes a new file only this user can read and write, whatever the
/// umask: compiled code is loaded only from such files ([`trusted_artifact`]).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?.write_all(bytes)
}

/// Cranelift's incremental compilation cache: one file per compiled
/// function, named by a hash of its key. A snapshot has the interpreter's
/// code with new data, so all of its functions are found here.
#[derive(Debug)]
pub struct FunctionCache {
    dir: PathBuf,
}

impl FunctionCache {
    pub fn new(dir: PathBuf) -> FunctionCache {
        FunctionCache { dir }
    }

    fn path(&self, key: &[u8]) -> PathBuf {
        let name = hex::encode(&Sha256::digest(key)[..16]);
        self.dir.join(&name[..2]).join(&name[2..])
    }
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let path = self.path(key);
        let bytes = std::fs::read(&path).ok()?;
        // Found: marked as used, at most once a day (pruning keeps it).
        crate::engine::cache::mark_if_older(&path, std::time::Duration::from_secs(86400));
        Some(Cow::Owned(bytes))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let path = self.path(key);
        let Some(parent) = path.parent() else { return false };
        if std::fs::create_dir_all(parent).is_err() {
            return false;
        }
        write_whole(&path, &value).is_ok()
    }
}
