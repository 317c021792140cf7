//! Capability policies: what a process group may touch.
//!
//! mod_wsgi drops a daemon process to `user=` and `group=` and lets the
//! kernel decide; wasgi reads `policies/users/NAME.toml` and
//! `policies/groups/NAME.toml` and grants the guest exactly the union of their
//! directories (write wins over read on the same path). Nothing else exists
//! inside the sandbox. A grant of a missing or relative path, or a write grant
//! that overlaps another tenant's grant, is an error naming file and line.
//! `[[connect]] to = "HOST:PORT"` lines grant outbound connections
//! ([`crate::spec::connect`]); none is granted by default.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::config::{Config, Problem, Problems, Source};
use crate::spec::connect::{ConnectGrant, ConnectRule};
use crate::spec::grant_dir::{self, GrantDir};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    grant: Vec<RawGrant>,
    #[serde(default)]
    connect: Vec<RawConnect>,
    limits: Option<RawLimits>,
}

/// `[[connect]] to = "HOST:PORT"` (see [`crate::spec::connect`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnect {
    to: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    path: Spanned<String>,
    access: Spanned<String>,
    /// Allows this grant to overlap other tenants' grants.
    #[serde(default)]
    shared: bool,
    /// Lets the path contain symlinks, resolved once when the configuration
    /// is planned (default: a symlink in a grant's path is an error).
    #[serde(default)]
    follow_symlinks: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    /// MiB of linear memory per instance; caps the group's own setting.
    memory_limit: Option<Spanned<i64>>,
    /// Open outbound connections per group; caps the group's own setting.
    max_connections: Option<Spanned<i64>>,
}

/// Where a grant came from, for `wasgi check` and for denials in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `policies/users/alice.toml:3`
    Policy { file: PathBuf, line: usize },
    /// Implied by the config (script directory, python_path, venv, caches).
    Config(&'static str),
    /// A command-line flag of `wasgi run`, or what it implies.
    Flag(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Policy { file, line } => write!(f, "{}:{line}", file.display()),
            Origin::Config(why) => f.write_str(why),
            Origin::Flag(flag) => f.write_str(flag),
        }
    }
}

/// One directory a group may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    /// As configured: the path the guest sees.
    pub path: PathBuf,
    pub write: bool,
    pub shared: bool,
    pub origin: Origin,
    /// The directory, opened once (see [`crate::spec::grant_dir`]).
    pub dir: GrantDir,
    /// The path was allowed to contain symlinks (resolved once, at `dir`).
    pub follow_symlinks: bool,
}

impl Capability {
    /// Where the directory really is: the path itself, or, for a grant that
    /// follows symlinks, what it resolved to. Overlap checks compare these.
    pub fn real_path(&self) -> &Path {
        self.dir.resolved()
    }
}

/// A parsed policy file.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub grants: Vec<Capability>,
    pub connect: Vec<ConnectRule>,
    pub memory_limit: Option<usize>,
    pub max_connections: Option<usize>,
}

/// What a group's policies give it, united: directories, connect grants,
/// and the lowest of their limits.
#[derive(Debug, Clone, Default)]
pub struct GroupPolicy {
    pub capabilities: Vec<Capability>,
    pub connect: Vec<ConnectRule>,
    pub memory_limit: Option<usize>,
    pub max_connections: Option<usize>,
}

/// The policies a configuration names, each read once.
#[derive(Default)]
pub struct PolicySet {
    /// Keyed by ("users" | "groups", name).
    pub policies: HashMap<(&'static str, String), Policy>,
}

fn read_policy(path: &Path, problems: &mut Vec<Problem>) -> Option<Policy> {
    let source = match Source::read(path) {
        Ok(s) => s,
        Err(Problems(mut p)) => {
            problems.append(&mut p);
            return None;
        }
    };
    let raw: RawPolicy = match source.parse() {
        Ok(r) => r,
        Err(Problems(mut p)) => {
            problems.append(&mut p);
            return None;
        }
    };
    let mut policy = Policy::default();
    for (i, g) in raw.grant.iter().enumerate() {
        let key = format!("grant[{i}]");
        let write = match g.access.get_ref().as_str() {
            "read" => false,
            "write" => true,
            other => {
                problems.push(source.problem(&g.access.span(), format!("{key}.access"), format!("{other:?}: use \"read\" or \"write\"")));
                continue;
            }
        };
        let path = PathBuf::from(g.path.get_ref());
        if !path.is_absolute() {
            problems.push(source.problem(&g.path.span(), format!("{key}.path"), format!("{:?} is not an absolute path", g.path.get_ref())));
            continue;
        }
        let path = grant_dir::normalize(&path);
        let dir = match GrantDir::open(&path, g.follow_symlinks) {
            Ok(dir) => dir,
            Err(e) => {
                problems.push(source.problem(&g.path.span(), format!("{key}.path"), e.to_string()));
                continue;
            }
        };
        policy.grants.push(Capability {
            path,
            write,
            shared: g.shared,
            origin: Origin::Policy { file: source.path.clone(), line: source.line_of(&g.path.span()) },
            dir,
            follow_symlinks: g.follow_symlinks,
        });
    }
    for (i, c) in raw.connect.iter().enumerate() {
        match c.to.get_ref().parse::<ConnectGrant>() {
            Ok(grant) => {
                let origin = Origin::Policy { file: source.path.clone(), line: source.line_of(&c.to.span()) };
                add_connect(&mut policy.connect, ConnectRule { grant, origin: origin.to_string() });
            }
            Err(e) => problems.push(source.problem(&c.to.span(), format!("connect[{i}].to"), e.to_string())),
        }
    }
    if let Some(limits) = &raw.limits {
        if let Some(m) = &limits.memory_limit {
            if *m.get_ref() < 1 {
                problems.push(source.problem(&m.span(), "limits.memory_limit", format!("must be at least 1 (MiB), not {}", m.get_ref())));
            } else {
                policy.memory_limit = Some(*m.get_ref() as usize);
            }
        }
        if let Some(m) = &limits.max_connections {
            if *m.get_ref() < 0 {
                problems.push(source.problem(&m.span(), "limits.max_connections", format!("must be 0 (no connections) or more, not {}", m.get_ref())));
            } else {
                policy.max_connections = Some(*m.get_ref() as usize);
            }
        }
    }
    Some(policy)
}

/// Adds `cap`, merging with an existing grant of the same path (write wins).
/// The one merge of grants: policies, the grants a config implies, and
/// `wasgi run`'s flags all go through it (see `crate::config::plan`).
pub fn add_capability(set: &mut Vec<Capability>, cap: Capability) {
    match set.iter_mut().find(|c| c.path == cap.path) {
        Some(existing) => {
            if cap.write && !existing.write {
                *existing = cap;
            }
        }
        None => set.push(cap),
    }
}

/// Adds a connect grant unless the same grant is already there (the first
/// origin is kept).
pub fn add_connect(set: &mut Vec<ConnectRule>, rule: ConnectRule) {
    if !set.iter().any(|r| r.grant == rule.grant) {
        set.push(rule);
    }
}

/// What every group's user and group policies give it.
pub fn resolve(config: &Config) -> Result<HashMap<String, GroupPolicy>, Problems> {
    let mut problems = Vec::new();
    let mut loaded: HashMap<PathBuf, Option<Policy>> = HashMap::new();
    let mut result = HashMap::new();
    for group in &config.groups {
        let mut united = GroupPolicy::default();
        for (kind, name, line) in [("users", &group.user, group.user_line), ("groups", &group.group, group.group_line)] {
            let Some(name) = name else { continue };
            let file = config.policies.join(kind).join(format!("{name}.toml"));
            if !file.exists() {
                problems.push(Problem {
                    file: config.file.clone(),
                    line,
                    key: format!("group {:?}: {}", group.name, if kind == "users" { "user" } else { "group" }),
                    message: format!("no policy file {} for {name:?}", file.display()),
                });
                continue;
            }
            let policy = loaded.entry(file.clone()).or_insert_with(|| read_policy(&file, &mut problems)).clone();
            if let Some(policy) = policy {
                for cap in policy.grants {
                    add_capability(&mut united.capabilities, cap);
                }
                for rule in policy.connect {
                    add_connect(&mut united.connect, rule);
                }
                let lowest = |a: Option<usize>, b: Option<usize>| match (a, b) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                united.memory_limit = lowest(united.memory_limit, policy.memory_limit);
                united.max_connections = lowest(united.max_connections, policy.max_connections);
            }
        }
        result.insert(group.name.clone(), united);
    }

    if problems.is_empty() {
        Ok(result)
    } else {
        problems.dedup();
        Err(Problems(problems))
    }
}

/// One tenant's view for the overlap check: its group name, the config line
/// declaring it, and every directory it may use.
pub struct Tenant<'a> {
    pub group: &'a str,
    pub line: usize,
    pub capabilities: &'a [Capability],
}

/// No tenant may write where another tenant can read or write, unless the
/// grant says it is shared on purpose.
pub fn overlapping_tenants(config_file: &Path, tenants: &[Tenant<'_>]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for a in tenants {
        for b in tenants.iter().filter(|b| b.group != a.group) {
            for wa in a.capabilities.iter().filter(|c| c.write && !c.shared) {
                for gb in b.capabilities.iter().filter(|c| !c.shared) {
                    if !(wa.real_path().starts_with(gb.real_path()) || gb.real_path().starts_with(wa.real_path())) {
                        continue;
                    }
                    let (file, line) = match &wa.origin {
                        Origin::Policy { file, line } => (file.clone(), *line),
                        Origin::Config(_) | Origin::Flag(_) => (config_file.to_owned(), a.line),
                    };
                    problems.push(Problem {
                        file,
                        line,
                        key: "grant".into(),
                        message: format!(
                            "group {:?} may write {}, which overlaps group {:?}'s grant of {} ({}, {}); \
                             tenants must not share writable directories (set shared = true on the grant to allow it)",
                            a.group,
                            wa.path.display(),
                            b.group,
                            gb.path.display(),
                            if gb.write { "write" } else { "read" },
                            gb.origin
                        ),
                    });
                }
            }
        }
    }
    problems.dedup();
    problems
}

/// Read-only grants nested inside a write grant of the same group. The
/// guest's C library picks a grant by path prefix, so `W/./r/file` reaches
/// the nested directory through the write grant, and the app could rename it
/// and put something else in its place: it cannot stay read-only, so such a
/// configuration is refused.
pub fn read_only_inside_write(capabilities: &[Capability]) -> Vec<(&Capability, &Capability)> {
    let mut found = Vec::new();
    for read in capabilities.iter().filter(|c| !c.write) {
        let inside = |w: &&Capability| {
            w.write
                && ((read.path.starts_with(&w.path) && read.path != w.path)
                    || (read.real_path().starts_with(w.real_path()) && read.real_path() != w.real_path()))
        };
        if let Some(write) = capabilities.iter().find(inside) {
            found.push((read, write));
        }
    }
    found
}

/// The error for one such pair.
pub fn nested_error(group: &str, read: &Capability, write: &Capability) -> String {
    format!(
        "group {group:?}: {} is granted read-only ({}) but lies inside the write grant {} ({}): \
         the app could write it too (through paths such as {}/./…) or replace it; \
         grant write on a narrower directory beside it, or make {} writable",
        read.path.display(),
        read.origin,
        write.path.display(),
        write.origin,
        write.path.display(),
        read.path.display(),
    )
}

/// The cache directory holds compiled code the host loads and every group's
/// private directories: no grant may lie inside it or contain it. `cache` is
/// its real path; the private directories are not passed in.
pub fn cache_conflict(cache: &Path, capabilities: &[Capability]) -> Vec<String> {
    capabilities
        .iter()
        .filter_map(|c| {
            let real = c.real_path();
            let how = if real.starts_with(cache) {
                "lies inside"
            } else if cache.starts_with(real) {
                "contains"
            } else {
                return None;
            };
            Some(format!(
                "the grant of {} ({}) {how} the cache directory {}: the cache holds compiled code the server loads \
                 and every group's private directories, so no app may see it; keep the cache elsewhere \
                 (--cache-dir, WASGI_CACHE_DIR) or grant a narrower directory",
                c.path.display(),
                c.origin,
                cache.display()
            ))
        })
        .collect()
}

/// Mutation fuzzing of this format (see `crate::fuzz`).
#[cfg(test)]
mod fuzz_target {
    use crate::fuzz::run;

    /// A policy file (read from disk, as the server does).
    #[test]
    fn fuzz_policy() {
        let dir = std::env::temp_dir().join(format!("wasgi-fuzz-policy-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("policies/users")).unwrap();
        let config = dir.join("wasgi.toml");
        std::fs::write(&config, "[[group]]\nname = \"g\"\nuser = \"u\"\n[[app]]\nscript = \"/srv/app.wsgi\"\ngroup = \"g\"\n").unwrap();
        let config = crate::config::load(&config).unwrap();
        let seed = b"[[grant]]\npath = \"/tmp\"\naccess = \"read\"\n\n[[grant]]\npath = \"/nonexistent/x/../y\"\naccess = \"write\"\nshared = true\nfollow_symlinks = true\n\n[limits]\nmemory_limit = 512\n";
        run("policy", &[seed], |input| {
            std::fs::write(dir.join("policies/users/u.toml"), input).unwrap();
            let _ = crate::config::policy::resolve(&config);
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
}
