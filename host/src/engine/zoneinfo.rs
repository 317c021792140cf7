//! The IANA time-zone database, for `zoneinfo` in every guest.
//!
//! A WASI guest has no /usr/share/zoneinfo, and Django (like most apps)
//! does not depend on the `tzdata` package on Linux, so `ZoneInfo("UTC")`
//! would fail. wasgi ships the database itself: the pinned `tzdata` wheel,
//! fetched with pip once per machine like the pinned interpreter, checked by
//! SHA-256, unpacked into the server's cache and mapped read-only at
//! /usr/share/zoneinfo in every guest, the first directory of CPython's
//! default TZPATH (and where dateutil and others look too). Shipping it
//! rather than granting the host's copy keeps every guest the same on every
//! machine, containers without one included; the host's copy is only the
//! fallback when the wheel cannot be fetched.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::engine::interpreter::{pip_download, sha256_file, tempdir_in, Progress};

/// This module's log target: its name before the folders, so log lines
/// and `WASGI_LOG` filters read as they did.
const LOG_TARGET: &str = "wasgi::zoneinfo";

/// The pinned database: the wheel of this release and its SHA-256.
const TZDATA: &str = "tzdata==2026.6";
const TZDATA_SHA256: &str = "0a10eec6e13ef16b627fabed9a5f2ba61a62b1c67f327305f4e7e412a70b4aec";

/// Where guests find it.
pub const GUEST_DIR: &str = "/usr/share/zoneinfo";

/// The host's own database, the fallback.
const HOST_DIR: &str = "/usr/share/zoneinfo";

/// The directory mapped at [`GUEST_DIR`] in every guest: the pinned
/// database from the cache (fetched if missing), else the host's, else none
/// (a warning says what the apps will miss).
pub fn locate(cache_dir: &Path) -> Option<PathBuf> {
    match pinned(cache_dir) {
        Ok(dir) => Some(dir),
        Err(e) if Path::new(HOST_DIR).join("UTC").is_file() => {
            tracing::warn!(target: LOG_TARGET, "cannot fetch the time-zone database ({TZDATA}): {e:#}; guests get the host's {HOST_DIR} instead");
            Some(PathBuf::from(HOST_DIR))
        }
        Err(e) => {
            tracing::warn!(
                target: LOG_TARGET,
                "cannot fetch the time-zone database ({TZDATA}): {e:#}; zoneinfo finds no time zone inside the guests \
                 unless an app installs the tzdata package"
            );
            None
        }
    }
}

/// The pinned database, unpacked in the cache.
fn pinned(cache_dir: &Path) -> Result<PathBuf> {
    let version = TZDATA.split("==").nth(1).expect("a pinned requirement");
    let dir = cache_dir.join("zoneinfo").join(format!("tzdata-{version}-{}", &TZDATA_SHA256[..16]));
    if dir.join("UTC").is_file() {
        return Ok(dir);
    }
    let parent = dir.parent().expect("a cache path has a parent");
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let progress = Progress::start(format!("fetching the time-zone database ({TZDATA}, via pip)"));
    let scratch = tempdir_in(parent)?;
    let wheel = pip_download(TZDATA, &scratch.0)?;
    let found = sha256_file(&wheel)?;
    if found != TZDATA_SHA256 {
        bail!("{} is not the pinned {TZDATA}: expected SHA-256 {TZDATA_SHA256}, found {found}", wheel.display());
    }
    let unpacked = scratch.0.join("zoneinfo");
    unpack(&wheel, &unpacked)?;
    if let Err(e) = std::fs::rename(&unpacked, &dir) {
        // Another server unpacked it at the same time.
        if !dir.join("UTC").is_file() {
            return Err(e).with_context(|| format!("cannot store {}", dir.display()));
        }
    }
    progress.done();
    Ok(dir)
}

/// The wheel's `tzdata/zoneinfo/` tree (the zone files and tables, not the
/// package's Python files) into `dest`.
fn unpack(wheel: &Path, dest: &Path) -> Result<()> {
    const PREFIX: &str = "tzdata/zoneinfo/";
    let mut archive = zip::ZipArchive::new(std::fs::File::open(wheel)?).with_context(|| format!("{} is not a readable wheel", wheel.display()))?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        // enclosed_name refuses absolute paths and `..`.
        let Some(name) = entry.enclosed_name() else { continue };
        let Ok(inside) = name.strip_prefix(PREFIX) else { continue };
        if entry.is_dir() || inside.extension().is_some_and(|x| x == "py") {
            continue;
        }
        let path = dest.join(inside);
        std::fs::create_dir_all(path.parent().expect("a file in the tree has a directory"))?;
        let mut out = std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
        std::io::copy(&mut entry, &mut out)?;
    }
    if !dest.join("UTC").is_file() {
        bail!("{} has no {PREFIX}UTC", wheel.display());
    }
    Ok(())
}
