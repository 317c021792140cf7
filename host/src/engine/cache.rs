//! The cache directory's upkeep: which of its entries are still used, and
//! removing those that are not.
//!
//! Everything in the cache can be made again (fetched, built, compiled), but
//! a server that runs for years leaves behind the snapshots, compiled
//! modules, interpreter variants and private directories of apps, settings
//! and wasgi versions it no longer runs: a hosting platform's disk fills
//! with them. So each entry carries a mark of use, its modification time,
//! set when a server uses it ([`mark_used`]: at start and reload) and again
//! while it keeps using it ([`refresh_marks`], run every few hours by a
//! serving process); [`prune`] removes the entries whose mark is older than
//! asked (`wasgi cache prune`, or `cache_unused_days` in wasgi.toml).
//!
//! Only the kinds in [`KINDS`] are pruned. The build's own inputs under
//! `cpython/` (toolchains, sources, package downloads) are bounded by the
//! number of wasgi versions, not by the number of apps, and are left alone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};

/// How often a serving process marks again what it uses.
pub const REFRESH_EVERY: Duration = Duration::from_secs(6 * 3600);

/// The shortest `unused for` that [`prune`] accepts: well above
/// [`REFRESH_EVERY`], so an entry a running server holds is never taken.
pub const SHORTEST_UNUSED: Duration = Duration::from_secs(24 * 3600);

/// A mark is written again only when it is older than this (a start with a
/// thousand groups does not rewrite a thousand marks it just wrote).
const MARK_SLACK: Duration = Duration::from_secs(3600);

/// One kind of entry: the folder under the cache directory holding them,
/// which of that folder's names are entries, and how they lie there.
#[derive(Debug)]
pub struct Kind {
    pub dir: &'static str,
    pub what: &'static str,
    entries: fn(&str) -> bool,
    layout: Layout,
}

#[derive(Debug, PartialEq)]
enum Layout {
    /// Each file or folder is an entry.
    Each,
    /// Files grouped by name less their extension are one entry (a
    /// compiled module and its checksum).
    ByStem,
    /// The files of its two-digit folders are the entries (cranelift's).
    Fanned,
    /// In each build's `variants/` folder, each folder is an entry.
    Variants,
}

/// The kinds of entry that grow with the apps, settings and versions a
/// server has run, and are pruned.
pub static KINDS: &[Kind] = &[
    Kind { dir: "snapshots", what: "snapshots (an app's state after its import)", entries: |_| true, layout: Layout::Each },
    Kind { dir: "modules", what: "compiled interpreters", entries: |_| true, layout: Layout::ByStem },
    Kind { dir: "cpython", what: "interpreter builds (one per wasgi version)", entries: is_build, layout: Layout::Each },
    Kind { dir: "variants", what: "interpreter variants with an app's extensions", entries: |_| true, layout: Layout::Variants },
    Kind { dir: "pycache", what: "groups' bytecode caches", entries: |_| true, layout: Layout::Each },
    Kind { dir: "tmp", what: "groups' private /tmp", entries: |_| true, layout: Layout::Each },
    Kind { dir: "ca", what: "copies of CA bundles", entries: |_| true, layout: Layout::Each },
    Kind { dir: "cranelift", what: "compiled functions (incremental compilation)", entries: |_| true, layout: Layout::Fanned },
];

/// Under `cpython/`: a finished build (its key, 16 hex digits) or the
/// extension builder written out (`extensions-KEY`); not the build's inputs.
fn is_build(name: &str) -> bool {
    let key = name.strip_prefix("extensions-").unwrap_or(name);
    key.len() == 16 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What this process uses, marked again by [`refresh_marks`].
static IN_USE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Marks `path` (an entry of the cache, file or folder) as used now, and
/// remembers it so that [`refresh_marks`] marks it again: for what the
/// process keeps using while it runs (its interpreters, snapshots). A mark
/// that cannot be written is not an error: at worst the entry is made again.
pub fn mark_used(path: &Path) {
    IN_USE.lock().expect("cache marks lock").insert(path.to_owned());
    mark(path);
}

/// Marks `path` as used now, once: for what the caller marks again itself
/// while it uses it (the running groups' directories, which a reload retires).
pub fn mark(path: &Path) {
    mark_if_older(path, MARK_SLACK);
}

/// Marks again everything this process has marked with [`mark_used`]: a
/// server that runs for months keeps what it uses.
pub fn refresh_marks() {
    let paths: Vec<PathBuf> = IN_USE.lock().expect("cache marks lock").iter().cloned().collect();
    for path in paths {
        mark(&path);
    }
}

/// Sets `path`'s modification time to now, unless it is younger than `slack`.
pub(crate) fn mark_if_older(path: &Path, slack: Duration) {
    let Ok(file) = std::fs::File::open(path) else { return };
    let fresh = file.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|age| age < slack));
    if !fresh {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// One entry: its paths (one, or a module's files), mark, and the size of
/// its files ([`Entry::size`] adds its folders').
#[derive(Debug)]
pub struct Entry {
    pub kind: &'static Kind,
    pub paths: Vec<PathBuf>,
    pub bytes: u64,
    pub last_used: SystemTime,
}

impl Entry {
    fn unused_for(&self, now: SystemTime) -> Duration {
        now.duration_since(self.last_used).unwrap_or_default()
    }
}

/// Every entry of the kinds in [`KINDS`] under `cache_dir`.
pub fn entries(cache_dir: &Path) -> Result<Vec<Entry>> {
    let mut found = Vec::new();
    for kind in KINDS {
        let mut names = match kind.layout {
            // cpython/BUILD/variants/*
            Layout::Variants => {
                let builds = list(&cache_dir.join("cpython"))?.into_iter().filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(is_build));
                let mut all = Vec::new();
                for build in builds {
                    all.extend(list(&build.join("variants"))?);
                }
                all
            }
            _ => list(&cache_dir.join(kind.dir))?,
        };
        names.retain(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(kind.entries));
        if kind.layout == Layout::Fanned {
            let mut files = Vec::new();
            for sub in names.iter().filter(|p| p.is_dir()) {
                files.extend(list(sub)?);
            }
            names = files;
        }
        names.sort();
        if kind.layout == Layout::ByStem {
            let mut groups: Vec<(String, Vec<PathBuf>)> = Vec::new();
            for path in names {
                let stem = path.file_stem().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
                match groups.last_mut() {
                    Some((last, paths)) if *last == stem && !stem.is_empty() => paths.push(path),
                    _ => groups.push((stem, vec![path])),
                }
            }
            found.extend(groups.into_iter().filter_map(|(_, paths)| entry(kind, paths)));
        } else {
            found.extend(names.into_iter().filter_map(|path| entry(kind, vec![path])));
        }
    }
    Ok(found)
}

/// What `dir` holds; nothing if it does not exist.
fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(list) => Ok(list.flatten().map(|e| e.path()).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("cannot list {}", dir.display())),
    }
}

/// An entry's size and mark; `None` if it vanished meanwhile. A module's
/// mark is its newest file's.
fn entry(kind: &'static Kind, paths: Vec<PathBuf>) -> Option<Entry> {
    let mut bytes = 0;
    let mut last_used = SystemTime::UNIX_EPOCH;
    for path in &paths {
        let meta = std::fs::symlink_metadata(path).ok()?;
        last_used = last_used.max(meta.modified().ok()?);
        if !meta.is_dir() {
            bytes += meta.len();
        }
    }
    Some(Entry { kind, paths, bytes, last_used })
}

impl Entry {
    /// Its size: the files' own, a folder's walked here (not when it is
    /// listed: a prune walks only what it removes).
    pub fn size(&self) -> u64 {
        let mut bytes = self.bytes;
        for path in self.paths.iter().filter(|p| p.is_dir()) {
            bytes += tree_size(path);
            // A build's variants are entries of their own (and go with it).
            if self.kind.dir == "cpython" {
                bytes -= tree_size(&path.join("variants")).min(bytes);
            }
        }
        bytes
    }
}

/// The bytes of the files under `dir` (symlinks not followed).
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => pending.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// What [`prune`] removed (or, dry, would remove).
#[derive(Debug, Default)]
pub struct Pruned {
    pub entries: Vec<Entry>,
    pub bytes: u64,
    /// Entries that could not be removed, and why.
    pub failed: Vec<(PathBuf, String)>,
}

/// Removes every entry unused for at least `unused_for` (refused when
/// shorter than [`SHORTEST_UNUSED`]); with `dry_run`, only says which.
pub fn prune(cache_dir: &Path, unused_for: Duration, dry_run: bool) -> Result<Pruned> {
    if unused_for < SHORTEST_UNUSED {
        bail!(
            "entries unused for less than {} day are never pruned: a running server marks what it uses only every {} hours",
            SHORTEST_UNUSED.as_secs() / 86400,
            REFRESH_EVERY.as_secs() / 3600
        );
    }
    let now = SystemTime::now();
    let mut pruned = Pruned::default();
    for entry in entries(cache_dir)? {
        if entry.unused_for(now) < unused_for {
            continue;
        }
        let bytes = entry.size();
        if !dry_run {
            if let Some((path, error)) = entry.paths.iter().find_map(|p| remove(p).err().map(|e| (p.clone(), e.to_string()))) {
                pruned.failed.push((path, error));
                continue;
            }
        }
        pruned.bytes += bytes;
        pruned.entries.push(Entry { bytes, ..entry });
    }
    if !dry_run {
        let _ = std::fs::write(cache_dir.join(PRUNED_STAMP), b"");
    }
    Ok(pruned)
}

/// Written by each [`prune`]: when this cache was last pruned.
pub const PRUNED_STAMP: &str = ".pruned";

/// Whether a serving process should prune `cache_dir` now: not if any
/// process did in the last [`REFRESH_EVERY`] (the servers sharing a cache,
/// and each start of a server, would otherwise all walk it; a large cache
/// has hundreds of thousands of compiled functions).
pub fn prune_due(cache_dir: &Path) -> bool {
    match std::fs::metadata(cache_dir.join(PRUNED_STAMP)).and_then(|m| m.modified()) {
        Ok(at) => at.elapsed().map_or(true, |age| age >= REFRESH_EVERY),
        Err(_) => true,
    }
}

fn remove(path: &Path) -> std::io::Result<()> {
    let result = match std::fs::symlink_metadata(path)?.is_dir() {
        true => std::fs::remove_dir_all(path),
        false => std::fs::remove_file(path),
    };
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(path: &Path, days: u64) {
        let file = std::fs::File::open(path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(days * 86400)).unwrap();
    }

    /// Entries unused for longer than asked go, with all their files; the
    /// rest, and what is not an entry (the build's inputs), stay.
    #[test]
    fn prune_takes_only_entries_unused_for_longer_than_asked() {
        let cache = std::env::temp_dir().join(format!("wasgi-cache-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&cache);
        let make = |rel: &str, days: u64| {
            let path = cache.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            if rel.ends_with('/') {
                std::fs::create_dir_all(&path).unwrap();
                std::fs::write(path.join("file"), b"1234").unwrap();
            } else {
                std::fs::write(&path, b"12345678").unwrap();
            }
            age(&path, days);
            path
        };
        let old_snapshot = make("snapshots/aaaa/", 40);
        let new_snapshot = make("snapshots/bbbb/", 2);
        let old_module = [make("modules/1111-wasmtime48.0.8-aa.cwasm", 40), make("modules/1111-wasmtime48.0.8-aa.crc32", 40)];
        let new_module = [make("modules/1111-wasmtime48.0.8-bb.cwasm", 1), make("modules/1111-wasmtime48.0.8-bb.crc32", 40)];
        let old_builder = make("cpython/extensions-0123456789abcdef/", 40);
        let build = make("cpython/fedcba9876543210/", 1);
        let old_variant = make("cpython/fedcba9876543210/variants/0011223344556677/", 40);
        let toolchain = make("cpython/toolchain/", 400);
        let old_function = make("cranelift/ab/cdef", 40);
        let old_tmp = make("tmp/group-key/", 40);

        assert!(prune(&cache, Duration::from_secs(3600), true).is_err(), "an hour is shorter than a running server's marks");
        let dry = prune(&cache, Duration::from_secs(30 * 86400), true).unwrap();
        assert_eq!(dry.entries.len(), 6);
        assert!(old_snapshot.exists(), "a dry run removes nothing");

        let pruned = prune(&cache, Duration::from_secs(30 * 86400), false).unwrap();
        assert_eq!(pruned.entries.len(), 6, "{pruned:?}");
        assert_eq!(pruned.bytes, 4 + 8 + 8 + 4 + 4 + 8 + 4);
        for gone in [&old_snapshot, &old_module[0], &old_module[1], &old_builder, &old_variant, &old_function, &old_tmp] {
            assert!(!gone.exists(), "{} should be pruned", gone.display());
        }
        for kept in [&new_snapshot, &new_module[0], &new_module[1], &build, &toolchain] {
            assert!(kept.exists(), "{} should be kept", kept.display());
        }

        // A link a guest left in its private directory is removed, not
        // followed: what it points at stays, and is not counted.
        let outside = cache.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("precious"), b"keep").unwrap();
        let linked = make("pycache/group-with-link/", 40);
        std::os::unix::fs::symlink(&outside, linked.join("link")).unwrap();
        age(&linked, 40);
        let pruned = prune(&cache, Duration::from_secs(30 * 86400), false).unwrap();
        let link_itself = outside.as_os_str().len() as u64;
        assert_eq!((pruned.entries.len(), pruned.bytes), (1, 4 + link_itself), "the link, not what it points at: {pruned:?}");
        assert!(!linked.exists() && outside.join("precious").is_file());

        // A mark makes an old entry new again.
        age(&new_snapshot, 40);
        mark_used(&new_snapshot);
        assert!(prune(&cache, Duration::from_secs(30 * 86400), false).unwrap().entries.is_empty());
        std::fs::remove_dir_all(&cache).unwrap();
    }
}
