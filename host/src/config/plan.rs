//! From a validated config (a `wasgi.toml`, or `wasgi run`'s flags) to what
//! runs: each app's guest spec (its capability set: policies or granting
//! flags, script directory, python_path, venv, private caches), checked
//! across tenants. `wasgi check` prints it; `wasgi serve` and `wasgi run`
//! start it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::config::policy::{self, Capability, Origin};
use crate::config::{self, AppConfig, Config, GroupConfig, Input, Problem, Problems};
use crate::spec::connect::Network;
use crate::spec::grant_dir::{GrantDir, GrantDirError};
use crate::spec::guest::{Grant, GuestSpec, RUN_FLAGS_POLICY};
use crate::spec::interpreter::Choice;

/// One app as it will run: its group's settings and its guest spec.
pub struct AppPlan {
    pub app: AppConfig,
    pub group: GroupConfig,
    pub spec: GuestSpec,
    /// Every grant with where it comes from, for the report.
    pub capabilities: Vec<Capability>,
}

/// A whole configuration, checked and ready to start.
pub struct Plan {
    pub config: Config,
    pub apps: Vec<AppPlan>,
    /// Things that will not stop the server but deserve a look.
    pub warnings: Vec<String>,
}

/// `venv/lib/python3.*/site-packages`, whatever the venv's Python minor version.
pub(crate) fn venv_site_packages(venv: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages"))
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    found
}

pub use crate::spec::guest::{GUEST_PYCACHE, PRIVATE_PYCACHE, PRIVATE_TMP};

/// The private, writable directories every group gets: a bytecode cache (so
/// a read-only app directory does not mean recompiling every module at every
/// start) and a temporary directory seen as `/tmp`. `key` names the group.
/// They are the server's own (inside its cache directory), opened once like
/// any grant; the guests see them at [`GUEST_PYCACHE`] and `/tmp`.
fn private_dirs(cache_dir: &Path, key: &str, grants: &mut Vec<Grant>) -> Result<()> {
    let pycache = cache_dir.join("pycache").join(key);
    let tmp = cache_dir.join("tmp").join(key);
    let open = |dir: &Path| -> Result<GrantDir> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        GrantDir::open(dir, true).with_context(|| format!("cannot open {}", dir.display()))
    };
    let (pycache_dir, tmp_dir) = (open(&pycache)?, open(&tmp)?);
    // Pushed, not merged: no other grant may lie in the cache (cache_conflict).
    grants.push(Grant { path: pycache, guest_path: PathBuf::from(GUEST_PYCACHE), write: true, origin: PRIVATE_PYCACHE.into(), dir: pycache_dir });
    grants.push(Grant { path: tmp, guest_path: PathBuf::from("/tmp"), write: true, origin: PRIVATE_TMP.into(), dir: tmp_dir });
    Ok(())
}

/// Where guests find the CA bundle: a directory of its own holding only it.
pub const GUEST_CA_DIR: &str = "/.wasgi-ca";
pub const CA_BUNDLE: &str = "the CA certificates guests trust (ca_file)";

/// A copy of the CA bundle, in a directory of the server's cache named by its
/// content and granted read-only at [`GUEST_CA_DIR`]: the guest reads the
/// certificates and nothing else of the host's /etc. Returns the guest's path.
fn ca_dir(cache_dir: &Path, ca_file: &Path, grants: &mut Vec<Grant>) -> Result<String> {
    let pem = std::fs::read(ca_file).with_context(|| format!("cannot read {}", ca_file.display()))?;
    let dir = cache_dir.join("ca").join(hex::encode(&Sha256::digest(&pem)[..8]));
    let file = dir.join("ca.pem");
    if std::fs::read(&file).ok().as_deref() != Some(&pem[..]) {
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let partial = dir.join(format!(".ca.pem.{}", std::process::id()));
        std::fs::write(&partial, &pem).with_context(|| format!("cannot write {}", partial.display()))?;
        std::fs::rename(&partial, &file).with_context(|| format!("cannot write {}", file.display()))?;
    }
    let opened = GrantDir::open(&dir, true).with_context(|| format!("cannot open {}", dir.display()))?;
    grants.push(Grant { path: dir, guest_path: PathBuf::from(GUEST_CA_DIR), write: false, origin: CA_BUNDLE.into(), dir: opened });
    Ok(format!("{GUEST_CA_DIR}/ca.pem"))
}

/// A problem, located where its input can show it: a file's line, or (for
/// `wasgi run`) no place, the key naming the flag.
fn problem(config: &Config, line: usize, key: String, message: String) -> Problem {
    match config.input {
        Input::File => Problem { file: config.file.clone(), line, key, message },
        Input::Flags => Problem::flag(key, message),
    }
}

/// Reads and validates a config file and its policies and works out every
/// app's spec; a group that names no interpreter runs `default_interpreter`.
pub fn plan(config_file: &Path, cache_dir: &Path, default_interpreter: Choice) -> Result<Plan, Problems> {
    plan_config(config::load(config_file)?, cache_dir, default_interpreter)
}

/// Works out every app's spec from a validated config, whether a file's
/// (`wasgi serve`, `wasgi check`) or `wasgi run`'s flags': the same grants,
/// checks and private directories; only the words of the problems differ.
pub fn plan_config(config: Config, cache_dir: &Path, default_interpreter: Choice) -> Result<Plan, Problems> {
    let capabilities = policy::resolve(&config)?;
    let flags = config.input == Input::Flags;
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let config_key = hex::encode(&Sha256::digest(config.file.as_os_str().as_encoded_bytes())[..if flags { 8 } else { 6 }]);
    let cache_real = cache_dir.canonicalize().unwrap_or_else(|_| cache_dir.to_owned());
    let mut apps = Vec::new();

    for app in &config.apps {
        let Some(group) = config.groups.iter().find(|g| g.name == app.group) else { continue };
        let granted = &capabilities[&group.name];
        let (policy_caps, policy_memory) = (&granted.capabilities, &granted.memory_limit);
        let mut caps: Vec<Capability> = policy_caps.clone();
        // Each implied grant opened once, like a policy's (see grant_dir).
        let follow = group.follow_symlinks;
        let implied = |caps: &mut Vec<Capability>, problems: &mut Vec<Problem>, path: PathBuf, what: Implied| {
            let path = crate::spec::grant_dir::normalize(&path);
            match GrantDir::open(&path, follow) {
                Ok(dir) => {
                    let origin = if flags { Origin::Flag(what.flag().into()) } else { Origin::Config(what.key()) };
                    policy::add_capability(caps, Capability { path, write: false, shared: false, origin, dir, follow_symlinks: follow })
                }
                Err(e) if flags => {
                    let hint = if matches!(e, GrantDirError::Symlink { .. }) { " (--follow-symlinks allows it for every flag)" } else { "" };
                    problems.push(Problem::flag(format!("{} {}", what.flag(), path.display()), format!("{e}{hint}")))
                }
                Err(e) => problems.push(problem(
                    &config,
                    group.line,
                    format!("group {:?}: {}", group.name, what.key()),
                    format!("{e}{}", if follow { "" } else { " (follow_symlinks = true in the [[group]] allows it for the script directory, python_path and venv)" }),
                )),
            }
        };

        match std::fs::metadata(&app.script) {
            Ok(m) if m.is_file() => {}
            Ok(_) if flags => problems.push(Problem::flag(app.script.display().to_string(), "the script is not a file")),
            Err(e) if flags => problems.push(Problem::flag(app.script.display().to_string(), format!("cannot read the script: {e}"))),
            Ok(_) => problems.push(problem(&config, app.line, "app.script".into(), format!("{} is not a file", app.script.display()))),
            Err(e) => problems.push(problem(&config, app.line, "app.script".into(), format!("{}: {e}", app.script.display()))),
        }
        let script_dir = app.script.parent().map(Path::to_owned).unwrap_or_default();
        implied(&mut caps, &mut problems, script_dir.clone(), Implied::ScriptDir);

        let mut python_path = Vec::new();
        for dir in &group.python_path {
            if dir.is_dir() {
                implied(&mut caps, &mut problems, dir.clone(), Implied::PythonPath);
                python_path.push(dir.clone());
            } else if flags {
                problems.push(Problem::flag(format!("--python-path {}", dir.display()), format!("{} is not a directory", dir.display())));
            } else {
                problems.push(problem(&config, group.line, format!("group {:?}: python_path", group.name), format!("{} is not a directory", dir.display())));
            }
        }
        if let Some(venv) = &group.venv {
            // The whole venv, read-only: the guide's `activate_this.py` recipe
            // reads bin/, and pyvenv.cfg sits at the top.
            implied(&mut caps, &mut problems, venv.clone(), Implied::Venv);
            let site = venv_site_packages(venv);
            // (A missing venv is one problem with the flags, as the flag names it already.)
            if site.is_empty() && !(flags && !venv.is_dir()) {
                problems.push(if flags {
                    Problem::flag(format!("--venv {}", venv.display()), "no lib/python3.*/site-packages in it: is it a virtualenv?")
                } else {
                    problem(&config, group.line, format!("group {:?}: venv", group.name), format!("no lib/python3.*/site-packages under {}", venv.display()))
                });
            }
            // (Its native extensions are the engine's to judge, which
            // knows the recipes: `wasgi check` lists them, a start warns.)
            python_path.extend(site);
        }
        // `wasgi run`'s --grant-read and --grant-write, after what they imply.
        for grant in &group.flag_grants {
            match GrantDir::open(&grant.path, follow) {
                Ok(dir) => policy::add_capability(
                    &mut caps,
                    Capability { path: grant.path.clone(), write: grant.write, shared: false, origin: Origin::Flag(grant.flag.into()), dir, follow_symlinks: follow },
                ),
                Err(e) => {
                    let hint = if matches!(e, GrantDirError::Symlink { .. }) { " (--follow-symlinks allows it for every flag)" } else { "" };
                    problems.push(Problem::flag(format!("{} {}", grant.flag, grant.path.display()), format!("{e}{hint}")));
                }
            }
        }

        // The guide's `.wsgi` puts its libraries on sys.path itself: an
        // ungranted one fails at import, so say it now.
        if let Ok(source) = std::fs::read_to_string(&app.script) {
            let script = app.script.to_string_lossy();
            for found in crate::config::wsgi_script::scan(&script, &source) {
                let Ok(dir) = found.path else { continue };
                if Path::new(&dir).is_dir() && !caps.iter().any(|c| Path::new(&dir).starts_with(&c.path)) {
                    let fix = if flags {
                        format!("add `--python-path {dir}` (or `--grant-read {dir}`) to `wasgi run`")
                    } else {
                        format!("add \"{dir}\" to the group's python_path, or a read-only [[grant]] path = \"{dir}\" to its policy")
                    };
                    warnings.push(format!(
                        "group {:?}: {script}:{} puts {dir} on sys.path ({}), but no grant covers it, so the app cannot import from it: {fix}",
                        group.name,
                        found.line,
                        found.kind.describe()
                    ));
                }
            }
        }

        for conflict in policy::cache_conflict(&cache_real, &caps) {
            problems.push(if flags { Problem::flag("", conflict) } else { problem(&config, group.line, format!("group {:?}: grants", group.name), conflict) });
        }
        // `wasgi run` keys its private directories by the script, a file's
        // groups by their name and the file.
        let key = if flags { format!("run-{config_key}") } else { format!("{}-{config_key}", group.name) };
        let mut grants: Vec<Grant> = caps.iter().map(|c| Grant::same_path(c.path.clone(), c.write, c.origin.to_string(), c.dir.clone())).collect();
        if let Err(e) = private_dirs(cache_dir, &key, &mut grants) {
            problems.push(problem(&config, group.line, format!("group {:?}", group.name), format!("{e:#}")));
            continue;
        }
        for g in grants.iter().filter(|g| g.is_private()) {
            let why = if g.origin == PRIVATE_PYCACHE { "private bytecode cache" } else { "private /tmp" };
            caps.push(Capability { path: g.path.clone(), write: true, shared: false, origin: Origin::Config(why), dir: g.dir.clone(), follow_symlinks: true });
        }

        let home = group.home.clone().unwrap_or(script_dir);
        if !caps.iter().any(|c| home.starts_with(&c.path)) {
            problems.push(if flags {
                Problem::flag(format!("--home {}", home.display()), "not inside any granted directory, so the app could not use it")
            } else {
                problem(&config, group.line, format!("group {:?}: home", group.name), format!("{} is not inside any directory the group may use", home.display()))
            });
        }
        for (read, write) in policy::read_only_inside_write(&caps) {
            let message = policy::nested_error(&group.name, read, write);
            problems.push(if flags { Problem::flag("", message) } else { problem(&config, group.line, format!("group {:?}: grants", group.name), message) });
        }
        let memory_limit = policy_memory.map_or(group.memory_limit, |p| p.min(group.memory_limit));
        let mut env = group.env.clone();
        env.push(("PYTHONPYCACHEPREFIX".into(), GUEST_PYCACHE.to_owned()));
        let network = network(group, granted);
        if let Some(ca_file) = &network.ca_file {
            match ca_dir(cache_dir, ca_file, &mut grants) {
                // OpenSSL's default verify paths read it (ssl.create_default_context()).
                Ok(guest_file) => {
                    // requests trusts certifi's bundle, not OpenSSL's default,
                    // unless told: a CA named on purpose is for it too.
                    let vars = if group.ca_file.is_some() { &["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"][..] } else { &["SSL_CERT_FILE"][..] };
                    for var in vars {
                        if !env.iter().any(|(k, _)| k == var) {
                            env.push((var.to_string(), guest_file.clone()));
                        }
                    }
                }
                Err(e) => problems.push(problem(&config, group.line, format!("group {:?}: ca_file", group.name), format!("{e:#}"))),
            }
        }
        // `wasgi run`'s one group is named after its script, and so is its app.
        let name = match flags {
            true => group.name.clone(),
            false => format!("{}:{}", group.name, app.script.file_name().map(|f| f.to_string_lossy()).unwrap_or_default()),
        };
        // A group without a `user` is its own user; `wasgi run`'s is "wasgi".
        let own_user = if flags { RUN_USER.to_owned() } else { group.name.clone() };
        let interpreter = group.interpreter.unwrap_or(default_interpreter);
        if !network.rules.is_empty() && interpreter == Choice::Pinned {
            warnings.push(format!(
                "group {:?} has connect grants, but runs {interpreter}, which has no host calls for connections: its app has no network (connect grants need cpython-3.13)",
                group.name
            ));
        }
        let spec = GuestSpec {
            name: name.into(),
            script: app.script.clone(),
            callable: app.callable.clone(),
            python_path,
            grants,
            home: Some(home),
            env,
            memory_limit: memory_limit.saturating_mul(1 << 20),
            limits: group.limits.clone(),
            reload: group.reload,
            restrict_stdout: group.restrict_stdout,
            snapshot: group.snapshot,
            isolation: group.isolation,
            warmup: group.warmup.clone(),
            interpreter,
            // Filled when the group starts (see GuestSpec::extensions).
            extensions: Vec::new(),
            host_facts: crate::spec::guest::HostFacts {
                user: group.user.clone().unwrap_or_else(|| own_user.clone()),
                group: group.group.clone().or_else(|| group.user.clone()).unwrap_or(own_user),
                hostname: group.hostname.clone().unwrap_or_else(crate::spec::guest::host_name),
            },
            network,
            group: group.name.clone(),
            policies: match flags {
                true => vec![RUN_FLAGS_POLICY.into()],
                false => [("users", &group.user), ("groups", &group.group)]
                    .iter()
                    .filter_map(|(kind, name)| name.as_ref().map(|n| config.policies.join(kind).join(format!("{n}.toml")).display().to_string()))
                    .collect(),
            },
        };
        apps.push(AppPlan { app: app.clone(), group: group.clone(), spec, capabilities: caps });
    }
    // The private cache and /tmp are per group by construction; everything
    // else a tenant may use is checked against every other tenant.
    let shared_view: Vec<Vec<Capability>> = apps
        .iter()
        .map(|a| a.capabilities.iter().filter(|c| !matches!(c.origin, Origin::Config("private bytecode cache" | "private /tmp"))).cloned().collect())
        .collect();
    let tenants: Vec<policy::Tenant<'_>> = apps
        .iter()
        .zip(&shared_view)
        .map(|(a, caps)| policy::Tenant { group: &a.group.name, line: a.group.line, capabilities: caps })
        .collect();
    problems.extend(policy::overlapping_tenants(&config.file, &tenants));
    if problems.is_empty() {
        Ok(Plan { config, apps, warnings })
    } else {
        Err(Problems(problems))
    }
}

/// Where a group's guests may connect: its policies' `[[connect]]` lines and
/// `wasgi run`'s `--connect` flags, under the lower of the group's and the
/// policies' `max_connections`; the CA bundle its guests trust.
fn network(group: &GroupConfig, granted: &policy::GroupPolicy) -> Network {
    let mut rules = granted.connect.clone();
    for rule in &group.flag_connect {
        policy::add_connect(&mut rules, rule.clone());
    }
    let ca_file = match &group.ca_file {
        Some(file) => Some(file.clone()),
        None if rules.is_empty() => None,
        None => config::HOST_CA_FILES.iter().map(PathBuf::from).find(|f| f.is_file()),
    };
    Network {
        rules,
        max_connections: granted.max_connections.map_or(group.max_connections, |p| p.min(group.max_connections)),
        connect_timeout: group.connect_timeout,
        ca_file,
        counters: Default::default(),
    }
}

/// The user and group `wasgi run`'s guests are told they run as.
const RUN_USER: &str = "wasgi";

/// A directory a group is granted because the config names it for
/// another purpose, and its name in each input.
#[derive(Clone, Copy)]
enum Implied {
    ScriptDir,
    PythonPath,
    Venv,
}

impl Implied {
    /// In a wasgi.toml (and `wasgi check`'s table).
    fn key(self) -> &'static str {
        match self {
            Implied::ScriptDir => "the app's script directory",
            Implied::PythonPath => "python_path",
            Implied::Venv => "venv",
        }
    }

    /// Among `wasgi run`'s flags.
    fn flag(self) -> &'static str {
        match self {
            Implied::ScriptDir => "the script's directory",
            Implied::PythonPath => "--python-path",
            Implied::Venv => "--venv",
        }
    }
}

