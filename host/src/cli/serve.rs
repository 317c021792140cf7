//! `wasgi serve`: a config file's plan started (listeners bound, every
//! group started, the router built) and served; SIGHUP reloads it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cli::run::shutdown_signal;
use crate::config::plan::{plan, AppPlan};
use crate::engine::args::InterpreterArgs;
use crate::http::server::{self, Listener, Server};
use crate::pool::group::Group;
use crate::routing::router::{Route, Router};
use crate::sandbox::interpreters::Interpreters;

/// This module's log target: its name before the folders, so log lines
/// and `WASGI_LOG` filters read as they did.
const LOG_TARGET: &str = "wasgi::check";

/// `wasgi serve --config FILE`: check, bind, start every group, serve;
/// SIGHUP re-reads the file and its policies.
pub fn serve(config_file: &Path, interpreter: &InterpreterArgs, graceful_timeout: Option<Duration>) -> Result<()> {
    let started = Instant::now();
    let cache_dir = interpreter.cache_dir()?;
    let plan = plan(config_file, &cache_dir, interpreter.interpreter())?;
    for w in &plan.warnings {
        tracing::warn!(target: LOG_TARGET, "{w}");
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
            tracing::info!(target: LOG_TARGET, "serving {} on {} (ready in {:.2}s)", plan.config.file.display(), listener.local_addr(), started.elapsed().as_secs_f64());
        }
        let reloader = Reloader { server: server.clone(), config_file: config_file.to_owned(), cache_dir, interpreters, groups, listen: plan.config.listen };
        let reloads = tokio::spawn(reloader.run(hangup));
        let drain = graceful_timeout.unwrap_or(plan.config.graceful_timeout);
        let result = server::serve(server, listeners, shutdown_signal(), drain).await;
        reloads.abort();
        result
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    tracing::info!(target: LOG_TARGET, "stopped");
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
            tracing::info!(target: LOG_TARGET, app = %name, "starting {} instance(s) of {} on {on}", a.group.instances, a.spec.script.display());
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
    listen: Vec<crate::spec::listen::Listen>,
}

impl Reloader {
    async fn run(mut self, mut hangup: tokio::signal::unix::Signal) {
        while hangup.recv().await.is_some() {
            tracing::info!(target: LOG_TARGET, "SIGHUP: reloading {}", self.config_file.display());
            if let Err(e) = self.reload().await {
                tracing::error!(target: LOG_TARGET, "the new configuration is refused; the running one keeps serving:\n{e:#}");
            }
        }
    }

    async fn reload(&mut self) -> Result<()> {
        // Reading files (a policy on a slow mount, a grant's directories) is
        // blocking work: done off the threads that serve requests.
        let (file, cache, choice) = (self.config_file.clone(), self.cache_dir.clone(), self.interpreters.default_choice());
        let plan = tokio::task::spawn_blocking(move || plan(&file, &cache, choice)).await??;
        for w in &plan.warnings {
            tracing::warn!(target: LOG_TARGET, "{w}");
        }
        if plan.config.listen != self.listen {
            tracing::warn!(target: LOG_TARGET, "[[listen]] changed: listeners are kept open across reloads, so the change takes effect at the next restart");
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
        tracing::info!(target: LOG_TARGET, "configuration reloaded: {kept} group(s) unchanged, {} started, {retired} retired", groups.len() - kept);
        self.groups = groups;
        Ok(())
    }
}
