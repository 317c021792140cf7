//! Paths as the Apache configuration writes them (Windows ones included:
//! the guide's examples use them), compared and cut without touching the
//! file system, and names made fit for a policy file.

use std::path::{Path, PathBuf};

/// `C:\dir\app.wsgi`, `C:/dir`, `\\server\share`.
pub(super) fn is_windows_path(p: &str) -> bool {
    let b = p.as_bytes();
    (b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && (b[2] == b'\\' || b[2] == b'/')) || p.starts_with("\\\\")
}

/// A path for comparisons: forward slashes, no trailing slash, and lower
/// case for Windows paths (their file systems ignore case).
pub(super) fn norm_path(p: &str) -> String {
    let windows = is_windows_path(p);
    let mut s = if windows { p.replace('\\', "/").to_ascii_lowercase() } else { p.to_owned() };
    while s.len() > 1 && s.ends_with('/') {
        s.pop();
    }
    s
}

/// The directory of a file path, Windows paths included, as written.
pub(super) fn parent_of(p: &str) -> String {
    let cut = if is_windows_path(p) { p.rfind(['\\', '/']) } else { p.rfind('/') };
    match cut {
        Some(0) => "/".into(),
        Some(i) if is_windows_path(p) && i == 2 => p[..3].to_owned(),
        Some(i) => p[..i].to_owned(),
        None => p.to_owned(),
    }
}

/// A directory as written, without its trailing separators.
pub(super) fn trim_dir(p: &str) -> String {
    let mut s = p.to_owned();
    while s.len() > 1 && (s.ends_with('/') || (is_windows_path(p) && s.ends_with('\\') && s.len() > 3)) {
        s.pop();
    }
    s
}

/// Is `path` inside the directory `dir` (both normalised)?
pub(super) fn within(path: &str, dir: &str) -> bool {
    dir == "/" || path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// A name usable as a policy file name.
pub(super) fn file_name(name: &str) -> String {
    let cleaned: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    let cleaned = cleaned.trim_start_matches('.').to_owned();
    if cleaned.is_empty() {
        "unnamed".into()
    } else {
        cleaned
    }
}

/// mod_wsgi's python-path: `:`-separated (`;` on Windows).
pub(super) fn split_path(value: &str) -> Vec<String> {
    let sep = if is_windows_path(value) || value.contains(';') { ';' } else { ':' };
    value.split(sep).map(str::trim).filter(|s| !s.is_empty()).map(trim_dir).collect()
}

/// The first symlink on `path` on this machine, and where it leads.
pub(super) fn symlink_in(path: &str) -> Option<(PathBuf, String)> {
    match crate::spec::grant_dir::GrantDir::open(Path::new(path), false) {
        Err(crate::spec::grant_dir::GrantDirError::Symlink { link, target }) => Some((link, target)),
        _ => None,
    }
}
