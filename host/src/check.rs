//! From a validated `wasgi.toml` to what runs: each app's guest spec (its
//! capability set: policies, script directory, python_path, venv, private
//! caches), the `wasgi check` report, and `wasgi serve`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::config::{self, AppConfig, Config, GroupConfig, Problem, Problems};
use crate::group::Group;
use crate::instance::{Grant, GuestSpec};
use crate::interpreter::{Choice, Interpreter};
use crate::policy::{self, Capability, Origin};
use crate::router::{Route, Router};
use crate::grant_dir::GrantDir;
use crate::run::{private_dirs, InterpreterArgs, Interpreters, PRIVATE_PYCACHE, PRIVATE_TMP};
use crate::server::{self, Listener, Server};

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

/// Native extensions built for the host cannot load inside the sandbox:
/// name each package that has one.
fn native_extensions(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    let mut seen = 0usize;
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().filter_map(|e| e.ok()) {
            seen += 1;
            if seen > 50_000 {
                return found;
            }
            let path = entry.path();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "so") {
                let package = path
                    .strip_prefix(dir)
                    .ok()
                    .and_then(|p| p.components().next())
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .unwrap_or_default();
                found.push((package, path));
            }
        }
    }
    found.sort();
    found
}

fn problem(config: &Config, line: usize, key: String, message: String) -> Problem {
    Problem { file: config.file.clone(), line, key, message }
}

/// Validates the config and its policies and works out every app's spec;
/// a group that names no interpreter runs `default_interpreter`.
pub fn plan(config_file: &Path, cache_dir: &Path, default_interpreter: Choice) -> Result<Plan, Problems> {
    let config = config::load(config_file)?;
    let capabilities = policy::resolve(&config)?;
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let config_key = hex::encode(&Sha256::digest(config.file.as_os_str().as_encoded_bytes())[..6]);
    let cache_real = cache_dir.canonicalize().unwrap_or_else(|_| cache_dir.to_owned());
    let mut apps = Vec::new();

    for app in &config.apps {
        let Some(group) = config.groups.iter().find(|g| g.name == app.group) else { continue };
        let (policy_caps, policy_memory) = &capabilities[&group.name];
        let mut caps: Vec<Capability> = policy_caps.clone();
        // Each implied grant opened once, like a policy's (see grant_dir).
        let follow = group.follow_symlinks;
        let implied = |caps: &mut Vec<Capability>, problems: &mut Vec<Problem>, path: PathBuf, why: &'static str| {
            let path = crate::grant_dir::normalize(&path);
            match GrantDir::open(&path, follow) {
                Ok(dir) => policy::add_capability(
                    caps,
                    Capability { path, write: false, shared: false, origin: Origin::Config(why), dir, follow_symlinks: follow },
                ),
                Err(e) => problems.push(problem(
                    &config,
                    group.line,
                    format!("group {:?}: {why}", group.name),
                    format!("{e}{}", if follow { "" } else { " (follow_symlinks = true in the [[group]] allows it for the script directory, python_path and venv)" }),
                )),
            }
        };

        match std::fs::metadata(&app.script) {
            Ok(m) if m.is_file() => {}
            Ok(_) => problems.push(problem(&config, app.line, "app.script".into(), format!("{} is not a file", app.script.display()))),
            Err(e) => problems.push(problem(&config, app.line, "app.script".into(), format!("{}: {e}", app.script.display()))),
        }
        let script_dir = app.script.parent().map(Path::to_owned).unwrap_or_default();
        implied(&mut caps, &mut problems, script_dir.clone(), "the app's script directory");

        let mut python_path = Vec::new();
        for dir in &group.python_path {
            if dir.is_dir() {
                implied(&mut caps, &mut problems, dir.clone(), "python_path");
                python_path.push(dir.clone());
            } else {
                problems.push(problem(&config, group.line, format!("group {:?}: python_path", group.name), format!("{} is not a directory", dir.display())));
            }
        }
        if let Some(venv) = &group.venv {
            // The whole venv, read-only: the guide's `activate_this.py` recipe
            // reads bin/, and pyvenv.cfg sits at the top.
            implied(&mut caps, &mut problems, venv.clone(), "venv");
            let site = venv_site_packages(venv);
            if site.is_empty() {
                problems.push(problem(
                    &config,
                    group.line,
                    format!("group {:?}: venv", group.name),
                    format!("no lib/python3.*/site-packages under {}", venv.display()),
                ));
            }
            for dir in site {
                for (package, so) in native_extensions(&dir) {
                    warnings.push(format!(
                        "group {:?}: package {package:?} has a native extension ({}) built for the host; it cannot load inside the sandbox unless the package falls back to pure Python",
                        group.name,
                        so.display()
                    ));
                }
                python_path.push(dir);
            }
        }

        // The guide's `.wsgi` puts its libraries on sys.path itself: an
        // ungranted one fails at import, so say it now.
        if let Ok(source) = std::fs::read_to_string(&app.script) {
            let script = app.script.to_string_lossy();
            for found in crate::apache::wsgi_script::scan(&script, &source) {
                let Ok(dir) = found.path else { continue };
                if Path::new(&dir).is_dir() && !caps.iter().any(|c| Path::new(&dir).starts_with(&c.path)) {
                    warnings.push(format!(
                        "group {:?}: {script}:{} puts {dir} on sys.path ({}), but no grant covers it, so the app cannot import from it: \
                         add \"{dir}\" to the group's python_path, or a read-only [[grant]] path = \"{dir}\" to its policy",
                        group.name,
                        found.line,
                        found.kind.describe()
                    ));
                }
            }
        }

        for conflict in policy::cache_conflict(&cache_real, &caps) {
            problems.push(problem(&config, group.line, format!("group {:?}: grants", group.name), conflict));
        }
        let key = format!("{}-{config_key}", group.name);
        let mut grants: Vec<Grant> = caps.iter().map(|c| Grant::same_path(c.path.clone(), c.write, c.origin.to_string(), c.dir.clone())).collect();
        let pycache = match private_dirs(cache_dir, &key, &mut grants) {
            Ok(p) => p,
            Err(e) => {
                problems.push(problem(&config, group.line, format!("group {:?}", group.name), format!("{e:#}")));
                continue;
            }
        };
        for g in grants.iter().filter(|g| g.origin == PRIVATE_PYCACHE || g.origin == PRIVATE_TMP) {
            let why = if g.origin == PRIVATE_PYCACHE { "private bytecode cache" } else { "private /tmp" };
            caps.push(Capability { path: g.path.clone(), write: true, shared: false, origin: Origin::Config(why), dir: g.dir.clone(), follow_symlinks: true });
        }

        let home = group.home.clone().unwrap_or(script_dir);
        if !caps.iter().any(|c| home.starts_with(&c.path)) {
            problems.push(problem(
                &config,
                group.line,
                format!("group {:?}: home", group.name),
                format!("{} is not inside any directory the group may use", home.display()),
            ));
        }
        for (read, write) in policy::read_only_inside_write(&caps) {
            problems.push(problem(&config, group.line, format!("group {:?}: grants", group.name), policy::nested_error(&group.name, read, write)));
        }
        let memory_limit = policy_memory.map_or(group.memory_limit, |p| p.min(group.memory_limit));
        let mut env = group.env.clone();
        env.push(("PYTHONPYCACHEPREFIX".into(), pycache.to_string_lossy().into_owned()));
        let name = format!("{}:{}", group.name, app.script.file_name().map(|f| f.to_string_lossy()).unwrap_or_default());
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
            interpreter: group.interpreter.unwrap_or(default_interpreter),
            host_facts: crate::instance::HostFacts {
                // A group without a `user` is its own user.
                user: group.user.clone().unwrap_or_else(|| group.name.clone()),
                group: group.group.clone().or_else(|| group.user.clone()).unwrap_or_else(|| group.name.clone()),
                hostname: group.hostname.clone().unwrap_or_else(crate::instance::host_name),
            },
            group: group.name.clone(),
            policies: [("users", &group.user), ("groups", &group.group)]
                .iter()
                .filter_map(|(kind, name)| name.as_ref().map(|n| config.policies.join(kind).join(format!("{n}.toml")).display().to_string()))
                .collect(),
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

/// Every interpreter the plan's groups run, found (fetched or built if
/// missing, as `wasgi serve` would), so that one which cannot be had fails
/// `wasgi check` rather than the server's start.
pub fn locate_interpreters(plan: &Plan, args: &InterpreterArgs) -> Result<Vec<(Choice, Interpreter)>> {
    let mut found: Vec<(Choice, Interpreter)> = Vec::new();
    for a in &plan.apps {
        let choice = a.spec.interpreter;
        if found.iter().any(|(c, _)| *c == choice) {
            continue;
        }
        let python = args
            .locate(choice)
            .map_err(|e| anyhow::anyhow!("{}: group {:?} runs {choice}, which cannot be used: {e:#}", plan.config.file.display(), a.group.name))?;
        found.push((choice, python));
    }
    Ok(found)
}

/// The `wasgi check` report: each group's interpreter and capability table
/// and each app's route.
pub fn report(plan: &Plan, interpreters: &[(Choice, Interpreter)]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: OK", plan.config.file.display());
    let listen: Vec<String> = plan
        .config
        .listen
        .iter()
        .map(|l| match l.socket_mode {
            Some(mode) => format!("{} (mode {mode:04o})", l.addr),
            None => l.addr.to_string(),
        })
        .collect();
    let _ = writeln!(out, "listen: {}", listen.join(", "));
    for a in &plan.apps {
        let g = &a.group;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "app {} (group {:?}: {} instance(s), user {}, group {}, memory {} MiB)",
            a.app.script.display(),
            g.name,
            g.instances,
            g.user.as_deref().unwrap_or("-"),
            g.group.as_deref().unwrap_or("-"),
            a.spec.memory_limit >> 20,
        );
        if let Some((choice, python)) = interpreters.iter().find(|(c, _)| *c == a.spec.interpreter) {
            let _ = writeln!(out, "  interpreter  {choice} (CPython {}, {})", python.version, python.path.display());
            let snapshot = match (python.reactor.is_some(), g.snapshot) {
                (true, true) => "on: instances start from a snapshot taken after the app's import",
                (true, false) => "off: every instance imports the app (snapshot = true starts them from a snapshot)",
                (false, _) => "not available on this interpreter: every instance imports the app",
            };
            let _ = writeln!(out, "  snapshot  {snapshot}");
            if python.reactor.is_some() && g.snapshot && !g.warmup.is_empty() {
                let _ = writeln!(out, "  warmup  GET {} before the snapshot ({} times each)", g.warmup.join(", "), crate::instance::WARMUP_ROUNDS);
            }
        }
        if g.isolation == crate::instance::Isolation::Request {
            let _ = writeln!(out, "  isolation  request: a fresh instance for every request");
        }
        let mount = if a.app.mount.is_empty() { "/" } else { &a.app.mount };
        for host in &a.app.hosts {
            let _ = writeln!(out, "  route  {host}{mount}");
        }
        for (url, dir) in &a.app.static_dirs {
            let _ = writeln!(out, "  static {url} -> {} (served by Apache, see wasgi apache-config)", dir.display());
        }
        if !a.app.access.is_open() {
            let _ = writeln!(out, "  clients  {}", describe_access(&a.app.access));
        }
        if g.restrict_stdout {
            let _ = writeln!(out, "  stdout  restricted (writes raise an error)");
        }
        let width = a.capabilities.iter().map(|c| c.path.as_os_str().len()).max().unwrap_or(4).max(4);
        let _ = writeln!(out, "  {:<width$}  {:<6}  granted by", "path", "access");
        for c in &a.capabilities {
            let _ = writeln!(out, "  {:<width$}  {:<6}  {}", c.path.display(), if c.write { "write" } else { "read" }, c.origin);
            if c.follow_symlinks && c.real_path() != c.path {
                let _ = writeln!(out, "  {:<width$}  {:<6}  (follow_symlinks: resolved once, to {})", "", "", c.real_path().display());
            }
        }
    }
    for w in &plan.warnings {
        let _ = writeln!(out, "\nwarning: {w}");
    }
    out
}

fn describe_access(access: &crate::access::Access) -> String {
    let list = |set: &crate::access::AddressSet| {
        if set.all {
            "all".to_owned()
        } else {
            set.nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
        }
    };
    match (!access.allow.is_empty(), !access.deny.is_empty()) {
        (true, true) => format!("allow {}; deny {}", list(&access.allow), list(&access.deny)),
        (true, false) => format!("allow {}", list(&access.allow)),
        (false, true) => format!("deny {}", list(&access.deny)),
        (false, false) => "all".to_owned(),
    }
}

/// `wasgi serve --config FILE`: check, bind, start every group, serve;
/// SIGHUP re-reads the file and its policies.
pub fn serve(config_file: &Path, interpreter: &InterpreterArgs, graceful_timeout: Option<Duration>) -> Result<()> {
    let started = Instant::now();
    let cache_dir = interpreter.cache_dir()?;
    let plan = plan(config_file, &cache_dir, interpreter.interpreter())?;
    for w in &plan.warnings {
        tracing::warn!("{w}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        // Before anything else: SIGHUP's default action would end the process.
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let mut listeners = Vec::new();
        for addr in &plan.config.listen {
            listeners.push(Listener::bind(addr, plan.config.http.listen_backlog).await?);
        }
        let mut interpreters = Interpreters::new(interpreter)?;
        let (routes, groups) = start_apps(plan.apps, &mut interpreters, &[]).await?;
        let server = Server::new(Router::new(routes, plan.config.trusted_proxies.clone()), plan.config.http.clone());
        for listener in &listeners {
            tracing::info!("serving {} on {} (ready in {:.2}s)", plan.config.file.display(), listener.local_addr(), started.elapsed().as_secs_f64());
        }
        let reloader = Reloader { server: server.clone(), config_file: config_file.to_owned(), cache_dir, interpreters, groups, listen: plan.config.listen };
        let reloads = tokio::spawn(reloader.run(hangup));
        let drain = graceful_timeout.unwrap_or(plan.config.graceful_timeout);
        let result = server::serve(server, listeners, crate::run::shutdown_signal(), drain).await;
        reloads.abort();
        result
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    tracing::info!("stopped");
    Ok(())
}

/// Starts a group for each app, reusing a running group whose spec (its
/// interpreter included), size and queue are unchanged. The interpreters the
/// new groups run are prepared first, each once. If one fails, the groups
/// started here are retired and the error returned.
async fn start_apps(
    apps: Vec<AppPlan>,
    interpreters: &mut Interpreters,
    running: &[Arc<Group>],
) -> Result<(Vec<Route>, Vec<Arc<Group>>)> {
    let mut kept = Vec::new();
    let mut to_start = Vec::new();
    for a in apps {
        match running.iter().find(|g| g.runs(&a.spec, a.group.instances, a.group.max_queue)) {
            Some(group) => kept.push((a.app, group.clone())),
            None => to_start.push(a),
        }
    }
    for a in &to_start {
        interpreters
            .prepare(a.spec.interpreter)
            .await
            .with_context(|| format!("group {:?} runs {}, which cannot be used", a.group.name, a.spec.interpreter))?;
    }
    let starts = to_start.into_iter().map(|a| {
        let pre = interpreters.get(a.spec.interpreter).clone();
        let on = interpreters.describe(a.spec.interpreter).to_owned();
        async move {
            let name = a.spec.name.clone();
            tracing::info!(app = %name, "starting {} instance(s) of {} on {on}", a.group.instances, a.spec.script.display());
            Group::start(a.spec, pre, a.group.instances, a.group.max_queue)
                .await
                .map(|group| (a.app, group))
                .map_err(|e| anyhow::anyhow!("{name}: the app could not start:\n{e}"))
        }
    });
    let mut started = Vec::new();
    let mut failure = None;
    for result in futures::future::join_all(starts).await {
        match result {
            Ok(pair) => started.push(pair),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    if let Some(e) = failure {
        for (_, group) in &started {
            group.retire();
        }
        return Err(e);
    }
    let mut routes = Vec::new();
    let mut groups: Vec<Arc<Group>> = Vec::new();
    for (app, group) in kept.into_iter().chain(started) {
        for host in &app.hosts {
            routes.push(Route { host: host.clone(), mount: app.mount.clone(), group: group.clone(), access: app.access.clone(), pass_authorization: app.pass_authorization });
        }
        if !groups.iter().any(|g| Arc::ptr_eq(g, &group)) {
            groups.push(group);
        }
    }
    Ok((routes, groups))
}

/// SIGHUP: re-read wasgi.toml and the policies. New groups start, changed
/// ones are replaced, removed ones finish their queued requests and stop; the
/// listening sockets stay open throughout. A configuration with problems is
/// refused with its errors in the log, and the running one keeps serving.
struct Reloader {
    server: Arc<Server>,
    config_file: PathBuf,
    cache_dir: PathBuf,
    /// Linked once each and kept: a reload prepares only an interpreter no
    /// running group has used yet.
    interpreters: Interpreters,
    groups: Vec<Arc<Group>>,
    listen: Vec<crate::server::Listen>,
}

impl Reloader {
    async fn run(mut self, mut hangup: tokio::signal::unix::Signal) {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading {}", self.config_file.display());
            if let Err(e) = self.reload().await {
                tracing::error!("the new configuration is refused; the running one keeps serving:\n{e:#}");
            }
        }
    }

    async fn reload(&mut self) -> Result<()> {
        // Reading files (a policy on a slow mount, a grant's directories) is
        // blocking work: done off the threads that serve requests.
        let (file, cache, choice) = (self.config_file.clone(), self.cache_dir.clone(), self.interpreters.default_choice());
        let plan = tokio::task::spawn_blocking(move || plan(&file, &cache, choice)).await??;
        for w in &plan.warnings {
            tracing::warn!("{w}");
        }
        if plan.config.listen != self.listen {
            tracing::warn!("[[listen]] changed: listeners are kept open across reloads, so the change takes effect at the next restart");
        }
        let (routes, groups) = start_apps(plan.apps, &mut self.interpreters, &self.groups).await?;
        self.server.replace_router(Router::new(routes, plan.config.trusted_proxies));
        let mut retired = 0;
        for old in &self.groups {
            if !groups.iter().any(|g| Arc::ptr_eq(g, old)) {
                old.retire();
                retired += 1;
            }
        }
        let kept = groups.iter().filter(|g| self.groups.iter().any(|o| Arc::ptr_eq(g, o))).count();
        tracing::info!("configuration reloaded: {kept} group(s) unchanged, {} started, {retired} retired", groups.len() - kept);
        self.groups = groups;
        Ok(())
    }
}
