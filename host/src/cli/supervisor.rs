//! The one supervisor of `wasgi run` and `wasgi serve` (gunicorn's arbiter):
//! given a plan, it binds the listeners, starts a group for each app, serves,
//! and owns the signals. SIGTERM/SIGINT stop accepting and drain (a second
//! one exits at once); SIGHUP reloads. What a reload is depends on the
//! input ([`OnHangup`]): `wasgi serve` re-reads its file and starts, keeps
//! or retires groups by the new plan; `wasgi run`, with no file to re-read,
//! restarts its instances on the code as it is now. The groups themselves
//! replace lost instances (`crate::pool::group`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cli::systemd;
use crate::config::plan::{plan, AppPlan, Plan};
use crate::config::Input;
use crate::engine::args::InterpreterArgs;
use crate::engine::extensions;
use crate::http::access_log::AccessLog;
use crate::http::listener::Listener;
use crate::http::server::{self, Server};
use crate::http::tls::CertStore;
use crate::pool::group::Group;
use crate::routing::router::{Route, Router};
use crate::sandbox::interpreters::Interpreters;

/// Logs under the target each command always had (`wasgi::run` for `wasgi
/// run`, `wasgi::check` for `wasgi serve`), so `WASGI_LOG` filters still work.
macro_rules! log_as {
    ($level:ident, $input:expr, $($arg:tt)+) => {
        match $input {
            Input::Flags => tracing::$level!(target: "wasgi::run", $($arg)+),
            Input::File => tracing::$level!(target: "wasgi::check", $($arg)+),
        }
    };
}

/// What SIGHUP does.
pub enum OnHangup {
    /// `wasgi serve`: re-read the file and its policies and apply the new
    /// plan; a plan with problems is refused and the running one serves on.
    Reread { file: PathBuf, cache_dir: PathBuf },
    /// `wasgi run`: restart every instance on the code as it is now, without
    /// failing a request.
    Restart,
}

/// Serves `plan` until SIGTERM or SIGINT; `drain` caps how long requests in
/// flight may take to finish then. `started` is when the command began, for
/// the "ready in" line.
pub fn supervise(plan: Plan, interpreter: &InterpreterArgs, on_hangup: OnHangup, drain: Duration, started: Instant) -> Result<()> {
    let input = plan.config.input;
    for w in &plan.warnings {
        log_as!(warn, input, "{w}");
    }
    // Before any thread starts: systemd's variables are read and removed.
    let mut handover = systemd::Handover::take()?;
    raise_open_file_limit(input);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // Before anything else: SIGHUP's and SIGUSR1's default action would
        // end the process.
        let hangups = forward(tokio::signal::unix::SignalKind::hangup())?;
        let reopens = forward(tokio::signal::unix::SignalKind::user_defined1())?;
        // Bind first: an address in use is reported before any guest starts.
        // A socket systemd handed over is served as it is.
        let inherited: Vec<_> = plan.config.listen.iter().map(|listen| handover.socket_for(listen)).collect();
        handover.check_all_taken()?;
        let mut listeners = Vec::new();
        for (listen, inherited) in plan.config.listen.iter().zip(inherited) {
            listeners.push(match inherited {
                Some(fd) => {
                    log_as!(info, input, "listening on {} as handed over by systemd", listen.addr);
                    Listener::inherit(fd, listen)?
                }
                None => Listener::bind(listen, plan.config.http.listen_backlog).await?,
            });
        }
        if let Some(every) = handover.watchdog {
            tokio::spawn(systemd::watchdog(every));
        }
        let admin = match &plan.config.admin {
            Some(addr) => Some(Listener::bind(&crate::spec::listen::Listen::new(addr.clone()), 64).await.context("the admin listener")?),
            None => None,
        };
        let serving = Serving { listeners, admin, hangups, reopens };
        serve_plan(plan, interpreter, serving, on_hangup, shutdown_signal(), drain, started).await
    })?;
    // Guests parked on their stdin are dropped with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(1));
    log_as!(info, input, "stopped");
    Ok(())
}

/// A signal as messages on a channel; one that arrives while the last is
/// being handled is folded into it.
fn forward(kind: tokio::signal::unix::SignalKind) -> Result<tokio::sync::mpsc::Receiver<()>> {
    let mut signal = tokio::signal::unix::signal(kind)?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        while signal.recv().await.is_some() {
            let _ = tx.try_send(());
        }
    });
    Ok(rx)
}

/// What a server serves on and listens to: its bound listeners, and the
/// signals (as messages, so the tests' in-process server can send them):
/// SIGHUP reloads, SIGUSR1 reopens the access log.
pub struct Serving {
    pub listeners: Vec<Listener>,
    /// /metrics, /status, /live and /ready, on an address of its own.
    pub admin: Option<Listener>,
    pub hangups: tokio::sync::mpsc::Receiver<()>,
    pub reopens: tokio::sync::mpsc::Receiver<()>,
}

/// What [`supervise`] does once its listeners are bound, without the
/// process's signals: starts the plan's groups, serves on `serving`'s
/// listeners until `shutdown` resolves, and reloads (`on_hangup`) for each
/// message on its `hangups` (the plan's warnings are the caller's to log).
/// The tests' in-process server calls it directly.
pub async fn serve_plan(
    plan: Plan,
    interpreter: &InterpreterArgs,
    serving: Serving,
    on_hangup: OnHangup,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
    started: Instant,
) -> Result<()> {
    let Serving { listeners, admin, hangups, reopens } = serving;
    let input = plan.config.input;
    // The log settings first: a file that cannot be opened stops the start
    // before any guest runs.
    crate::cli::logline::apply_config_format(plan.config.logging.format);
    let access_log = Arc::new(AccessLog::open(&plan.config.logging.access_log, &plan.config.logging.access_format)?);
    // Kept while guests run: it ticks their epoch.
    let mut interpreters = Interpreters::new(interpreter, slot_reuse(&plan))?;
    // `wasgi run`'s "serving" line names its app and counts its instances.
    let instances: usize = plan.apps.iter().map(|a| a.group.instances).sum();
    let name = plan.apps.first().map(|a| a.spec.name.clone()).unwrap_or_default();
    let (routes, groups) = start_apps(input, plan.apps, &mut interpreters, &[]).await?;
    let server = Server::new(Router::new(routes, plan.config.trusted_proxies.clone()), plan.config.http.clone(), access_log.clone());
    let reopening = tokio::spawn(reopen_access_log(access_log, reopens, input));
    let admin = admin.map(|listener| {
        log_as!(info, input, "admin listener on {} (/metrics, /status, /live, /ready)", listener.url());
        let since = (started, std::time::SystemTime::now() - started.elapsed());
        tokio::spawn(crate::http::admin::serve(Arc::new(crate::http::admin::Admin { server: server.clone(), started: since }), listener))
    });
    let shutdown = async move {
        shutdown.await;
        systemd::stopping();
    };
    for listener in &listeners {
        let ready = started.elapsed().as_secs_f64();
        match input {
            Input::Flags => log_as!(info, input, "serving {name} on {} ({instances} instance(s) ready in {ready:.2}s)", listener.url()),
            Input::File => log_as!(info, input, "serving {} on {} (ready in {ready:.2}s)", plan.config.file.display(), listener.url()),
        }
    }
    let groups_started = groups.len();
    systemd::ready(&format!("serving {groups_started} group(s) on {}", listeners.iter().map(Listener::url).collect::<Vec<_>>().join(", ")));
    let certificates = listeners.iter().filter_map(Listener::cert_store).collect();
    let supervisor = Supervisor {
        server: server.clone(),
        input,
        on_hangup,
        interpreters,
        groups,
        listen: (plan.config.listen, plan.config.admin),
        logging: plan.config.logging,
        certificates,
        cache_unused: plan.config.cache_unused,
    };
    let reloads = tokio::spawn(supervisor.on_hangups(hangups));
    let result = server::serve(server, listeners, shutdown, drain).await;
    reloads.abort();
    reopening.abort();
    if let Some(admin) = admin {
        admin.abort();
    }
    result
}

/// SIGUSR1: the access log file is opened again (logrotate has moved it).
async fn reopen_access_log(access_log: Arc<AccessLog>, mut reopens: tokio::sync::mpsc::Receiver<()>, input: Input) {
    while reopens.recv().await.is_some() {
        match access_log.reopen() {
            Ok(()) => log_as!(info, input, "SIGUSR1: access log {} reopened", access_log.describe()),
            Err(e) => log_as!(error, input, "SIGUSR1: {e:#}; access lines go nowhere until it can be opened"),
        }
    }
}

/// Every group holds its granted directories open, and every connection is
/// a descriptor: the soft limit on open files goes up to the hard one (as Go
/// programs and nginx do), so a thousand tenants do not run out at 1,024.
fn raise_open_file_limit(input: Input) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write the struct they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= limit.rlim_max {
            return;
        }
        let from = limit.rlim_cur;
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
            log_as!(debug, input, "open files: soft limit raised from {from} to {}", limit.rlim_max);
        }
    }
}

/// Per-request instances want finished slots kept warm; long-lived ones
/// want their memory given back (a stopped tenant then holds none).
fn slot_reuse(plan: &Plan) -> crate::engine::interpreter::SlotReuse {
    use crate::engine::interpreter::SlotReuse;
    match plan.apps.iter().any(|a| a.spec.isolation == crate::spec::limits::Isolation::Request) {
        true => SlotReuse::PerRequest,
        false => SlotReuse::LongLived,
    }
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits at once.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("can listen for SIGTERM");
    let mut int = signal(SignalKind::interrupt()).expect("can listen for SIGINT");
    tokio::select! {
        _ = term.recv() => tracing::info!(target: "wasgi::run", "SIGTERM received"),
        _ = int.recv() => tracing::info!(target: "wasgi::run", "SIGINT received"),
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::warn!(target: "wasgi::run", "second signal: stopping now");
        std::process::exit(1);
    });
}

/// Starts a group for each app, reusing a running group whose spec (its
/// interpreter and the native extensions its environment pins included),
/// size and queue are unchanged. The interpreters the new groups run are
/// prepared first, each once. If one fails, the groups started here are
/// retired and the error returned.
async fn start_apps(input: Input, mut apps: Vec<AppPlan>, interpreters: &mut Interpreters, running: &[Arc<Group>]) -> Result<(Vec<Route>, Vec<Arc<Group>>)> {
    // What each environment holds now (the plan cannot say: which packages
    // have a recipe is the engine's to know).
    let paths: Vec<Vec<PathBuf>> = apps.iter().map(|a| a.spec.python_path.clone()).collect();
    let environments = tokio::task::spawn_blocking(move || paths.iter().map(|p| extensions::scan(p)).collect::<Vec<_>>()).await?;
    let mut kept = Vec::new();
    let mut to_start = Vec::new();
    for (mut a, environment) in apps.drain(..).zip(environments) {
        a.spec.extensions = environment.to_build;
        match running.iter().find(|g| g.runs(&a.spec, a.group.instances, a.group.max_queue)) {
            Some(group) => kept.push((a.app, group.clone())),
            None => {
                for m in environment.modules.iter().filter(|m| !m.recipe && m.not_built.is_none()) {
                    log_as!(
                        warn,
                        input,
                        app = %a.spec.name,
                        "{} is a native extension built for the host ({}); wasgi has no recipe to build it, so it cannot load in the sandbox unless {} falls back to pure Python",
                        m.module,
                        m.file.display(),
                        m.package.as_ref().map_or(m.module.split('.').next().unwrap_or_default(), |(name, _)| name.as_str())
                    );
                }
                to_start.push(a)
            }
        }
    }
    for a in &to_start {
        interpreters
            .prepare(a.spec.interpreter, &a.spec.extensions)
            .await
            .with_context(|| format!("group {:?} runs {}, which cannot be used", a.group.name, a.spec.interpreter))?;
    }
    let starts = to_start.into_iter().map(|a| {
        let pre = interpreters.get(a.spec.interpreter, &a.spec.extensions).clone();
        let on = interpreters.describe(a.spec.interpreter, &a.spec.extensions).to_owned();
        async move {
            let name = a.spec.name.clone();
            log_as!(info, input, app = %name, "starting {} instance(s) of {} on {on}", a.group.instances, a.spec.script.display());
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
    // The new groups' directories in the cache are marked as used before
    // they serve (cache upkeep marks them again while they run).
    let cache_dir = interpreters.cache_dir();
    for (_, group) in &started {
        group.spec.grants.iter().filter(|g| g.path.starts_with(cache_dir)).for_each(|g| crate::engine::cache::mark(&g.path));
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

/// What runs between the start and the stop: the groups, the interpreters
/// they run, and the server whose router a reload replaces. The listening
/// sockets stay open throughout.
struct Supervisor {
    server: Arc<Server>,
    input: Input,
    on_hangup: OnHangup,
    /// Linked once each and kept: a reload prepares only an interpreter no
    /// running group has used yet.
    interpreters: Interpreters,
    groups: Vec<Arc<Group>>,
    /// The public listeners and the admin listener, as configured.
    listen: (Vec<crate::spec::listen::Listen>, Option<crate::spec::listen::ListenAddr>),
    logging: crate::spec::logging::Logging,
    /// The TLS listeners' certificates, read again on each SIGHUP.
    certificates: Vec<Arc<CertStore>>,
    /// Cache entries unused this long are pruned (`cache_unused_days`).
    cache_unused: Option<Duration>,
}

impl Supervisor {
    /// Reloads on each SIGHUP; between them, looks after the cache.
    async fn on_hangups(mut self, mut hangups: tokio::sync::mpsc::Receiver<()>) {
        // The first tick is at once: what nothing used for long is pruned.
        let mut upkeep = tokio::time::interval(crate::engine::cache::REFRESH_EVERY);
        loop {
            tokio::select! {
                hangup = hangups.recv() => match hangup {
                    Some(()) => self.on_hangup().await,
                    None => return,
                },
                _ = upkeep.tick() => self.cache_upkeep().await,
            }
        }
    }

    async fn on_hangup(&mut self) {
        systemd::reloading();
        self.reload_certificates().await;
        match &self.on_hangup {
            OnHangup::Restart => {
                log_as!(info, self.input, "SIGHUP: restarting the instances");
                futures::future::join_all(self.groups.iter().map(|g| g.reload())).await;
            }
            OnHangup::Reread { file, .. } => {
                log_as!(info, self.input, "SIGHUP: reloading {}", file.display());
                if let Err(e) = self.reread().await {
                    log_as!(error, self.input, "the new configuration is refused; the running one keeps serving:\n{e:#}");
                }
            }
        }
        systemd::ready(&format!("serving {} group(s)", self.groups.len()));
    }

    /// The running groups' directories in the cache (bytecode cache, /tmp,
    /// CA bundle).
    fn private_dirs(&self) -> Vec<PathBuf> {
        let cache_dir = self.interpreters.cache_dir();
        self.groups.iter().flat_map(|g| g.spec.grants.iter().map(|grant| grant.path.clone())).filter(|p| p.starts_with(cache_dir)).collect()
    }

    /// Marks again what this server uses in its cache (the running groups'
    /// private directories, its interpreters and snapshots), then removes
    /// the entries no server has used for `cache_unused`, unless the cache
    /// was pruned lately. Off the serving threads: it walks the cache.
    async fn cache_upkeep(&self) {
        let cache_dir = self.interpreters.cache_dir().to_owned();
        let dirs = self.private_dirs();
        let (unused, input) = (self.cache_unused, self.input);
        let upkeep = tokio::task::spawn_blocking(move || {
            dirs.iter().for_each(|d| crate::engine::cache::mark(d));
            crate::engine::cache::refresh_marks();
            let Some(unused) = unused.filter(|_| crate::engine::cache::prune_due(&cache_dir)) else { return };
            match crate::engine::cache::prune(&cache_dir, unused, false) {
                Ok(pruned) => {
                    if !pruned.entries.is_empty() {
                        let mib = pruned.bytes as f64 / (1 << 20) as f64;
                        log_as!(info, input, "cache: removed {} entries unused for {} days ({mib:.1} MiB) from {}", pruned.entries.len(), unused.as_secs() / 86400, cache_dir.display());
                    }
                    for (path, error) in &pruned.failed {
                        log_as!(warn, input, "cache: cannot remove {}: {error}", path.display());
                    }
                }
                Err(e) => log_as!(warn, input, "cache: pruning {} failed: {e:#}", cache_dir.display()),
            }
        });
        if let Err(e) = upkeep.await {
            log_as!(warn, self.input, "cache upkeep failed: {e}");
        }
    }

    /// Reads every TLS listener's certificate and key again: new handshakes
    /// use the new pair, open connections keep theirs. A pair that cannot
    /// be used is refused with its reason and the one in use stays.
    async fn reload_certificates(&self) {
        for store in &self.certificates {
            let reloading = store.clone();
            match tokio::task::spawn_blocking(move || reloading.reload()).await {
                Ok(Ok(())) => log_as!(info, self.input, "SIGHUP: TLS certificate {} reloaded", store.files.cert.display()),
                Ok(Err(e)) => log_as!(error, self.input, "SIGHUP: the TLS certificate is not reloaded; the one in use stays: {e:#}"),
                Err(e) => log_as!(error, self.input, "SIGHUP: reloading {} failed: {e}", store.files.cert.display()),
            }
        }
    }

    /// SIGHUP for `wasgi serve`: new groups start, changed ones are
    /// replaced, removed ones finish their queued requests and stop.
    async fn reread(&mut self) -> Result<()> {
        let OnHangup::Reread { file, cache_dir } = &self.on_hangup else { return Ok(()) };
        // Reading files (a policy on a slow mount, a grant's directories) is
        // blocking work: done off the threads that serve requests.
        let (file, cache, choice) = (file.clone(), cache_dir.clone(), self.interpreters.default_choice());
        let plan = tokio::task::spawn_blocking(move || plan(&file, &cache, choice)).await??;
        for w in &plan.warnings {
            log_as!(warn, self.input, "{w}");
        }
        if plan.config.listen != self.listen.0 || plan.config.admin != self.listen.1 {
            log_as!(warn, self.input, "[[listen]] or admin changed: listeners are kept open across reloads, so the change takes effect at the next restart");
        }
        if plan.config.logging.access_log != self.logging.access_log || plan.config.logging.access_format != self.logging.access_format {
            log_as!(warn, self.input, "access_log or access_log_format changed: the access log is kept across reloads, so the change takes effect at the next restart");
        }
        crate::cli::logline::apply_config_format(plan.config.logging.format);
        if slot_reuse(&plan) == crate::engine::interpreter::SlotReuse::PerRequest && self.interpreters.reuse() != crate::engine::interpreter::SlotReuse::PerRequest {
            log_as!(warn, self.input, "a group now has isolation = \"request\": its instances start without warm memory slots (about a quarter of the requests per second) until the next restart");
        }
        let (routes, groups) = start_apps(self.input, plan.apps, &mut self.interpreters, &self.groups).await?;
        self.server.replace_router(Router::new(routes, plan.config.trusted_proxies));
        let mut retired = 0;
        for old in &self.groups {
            if !groups.iter().any(|g| Arc::ptr_eq(g, old)) {
                old.retire();
                retired += 1;
            }
        }
        let kept = groups.iter().filter(|g| self.groups.iter().any(|o| Arc::ptr_eq(g, o))).count();
        log_as!(info, self.input, "configuration reloaded: {kept} group(s) unchanged, {} started, {retired} retired", groups.len() - kept);
        self.groups = groups;
        self.cache_unused = plan.config.cache_unused;
        Ok(())
    }
}
