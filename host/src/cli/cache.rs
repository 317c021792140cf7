//! `wasgi cache`: what the cache directory holds, by kind, and how much of
//! it no server has used for a while; `wasgi cache prune` removes that
//! (a serving process does the same on its own, see `cache_unused_days`).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::engine::cache::{self, Entry};

#[derive(Args, Debug)]
pub struct CacheArgs {
    /// The cache directory (default: WASGI_CACHE_DIR, else $XDG_CACHE_HOME/wasgi or ~/.cache/wasgi).
    #[arg(long, env = "WASGI_CACHE_DIR", value_name = "DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// The age, in days, from which an entry counts as unused.
    #[arg(long, value_name = "DAYS", default_value_t = crate::config::DEFAULT_CACHE_UNUSED_DAYS, global = true)]
    pub unused_for: u64,
    #[command(subcommand)]
    pub action: Option<CacheAction>,
}

#[derive(Subcommand, Debug)]
pub enum CacheAction {
    /// Remove the entries no server has used for --unused-for days (snapshots, compiled
    /// interpreters, interpreter builds and variants, groups' private directories, compiled
    /// functions). Everything removed is made again when next needed.
    Prune {
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Runs `wasgi cache [prune]`; what it prints.
pub fn run(args: &CacheArgs) -> Result<String> {
    let dir = match &args.cache_dir {
        Some(dir) => dir.clone(),
        None => crate::engine::interpreter::default_cache_dir()?,
    };
    let dir = crate::engine::interpreter::own_cache_dir(&dir)?;
    let unused_for = Duration::from_secs(args.unused_for.saturating_mul(86400));
    match args.action {
        None => {
            // The report shows every entry's size: each folder is walked.
            let entries: Vec<Entry> = cache::entries(&dir)?.into_iter().map(|e| Entry { bytes: e.size(), ..e }).collect();
            Ok(report(&dir, &entries, unused_for))
        }
        Some(CacheAction::Prune { dry_run }) => {
            let pruned = cache::prune(&dir, unused_for, dry_run)?;
            let mut out = String::new();
            let now = SystemTime::now();
            let verb = if dry_run { "would remove" } else { "removed" };
            for kind in cache::KINDS {
                let of_kind: Vec<&Entry> = pruned.entries.iter().filter(|e| e.kind.dir == kind.dir).collect();
                if kind.dir == "cranelift" {
                    if !of_kind.is_empty() {
                        let bytes = of_kind.iter().map(|e| e.bytes).sum();
                        out += &format!("{verb} {} compiled functions under {}/ ({})\n", of_kind.len(), dir.join(kind.dir).display(), size(bytes));
                    }
                    continue;
                }
                for e in of_kind {
                    let days_unused = now.duration_since(e.last_used).unwrap_or_default().as_secs() / 86400;
                    out += &format!("{verb} {} ({}, unused for {})\n", e.paths[0].display(), size(e.bytes), days(days_unused));
                }
            }
            for (path, error) in &pruned.failed {
                out += &format!("cannot remove {}: {error}\n", path.display());
            }
            out +=
                &format!("{verb} {} entries unused for {} or more, {}; {}\n", pruned.entries.len(), days(args.unused_for), size(pruned.bytes), dir.display());
            if !pruned.failed.is_empty() {
                anyhow::bail!("{out}{} entries could not be removed", pruned.failed.len());
            }
            Ok(out)
        }
    }
}

/// A line per kind: entries, size, and how much is unused for `unused_for`.
fn report(dir: &std::path::Path, entries: &[Entry], unused_for: Duration) -> String {
    let now = SystemTime::now();
    let unused = |e: &Entry| now.duration_since(e.last_used).unwrap_or_default() >= unused_for;
    let days = unused_for.as_secs() / 86400;
    let mut out = format!("{}\n", dir.display());
    let width = cache::KINDS.iter().map(|k| k.dir.len()).max().unwrap_or(0);
    for kind in cache::KINDS {
        let of_kind: Vec<&Entry> = entries.iter().filter(|e| e.kind.dir == kind.dir).collect();
        let bytes: u64 = of_kind.iter().map(|e| e.bytes).sum();
        let old: Vec<&Entry> = of_kind.iter().copied().filter(|e| unused(e)).collect();
        out += &format!(
            "  {:width$}  {:>6} entries {:>10}   unused for {days}+ days: {:>6} {:>10}   {}\n",
            kind.dir,
            of_kind.len(),
            size(bytes),
            old.len(),
            size(old.iter().map(|e| e.bytes).sum()),
            kind.what,
        );
    }
    let total: u64 = entries.iter().map(|e| e.bytes).sum();
    let old: u64 = entries.iter().filter(|e| unused(e)).map(|e| e.bytes).sum();
    out += &format!("total {}, of which {} unused for {days} days or more (wasgi cache prune removes it)\n", size(total), size(old));
    out
}

fn days(n: u64) -> String {
    match n {
        1 => "1 day".to_owned(),
        n => format!("{n} days"),
    }
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    if value < 1024.0 {
        return format!("{bytes} B");
    }
    let mut unit = "";
    for u in UNITS {
        value /= 1024.0;
        unit = u;
        if value < 1024.0 {
            break;
        }
    }
    format!("{value:.1} {unit}")
}
