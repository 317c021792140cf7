//! `wasgi run SCRIPT`: one app, one group, configured by flags.
//!
//! Everything that can be wrong with the flags (a missing script, a grant of a
//! path that does not exist, an address in use) is reported before any guest
//! starts; an app that fails to import stops the command with its traceback.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use sha2::{Digest, Sha256};

use crate::config::plan::{add_grant, private_dirs};
use crate::config::policy::{self, Capability, Origin};
use crate::engine::args::InterpreterArgs;
use crate::http::server::{self, Listener, Server};
use crate::pool::group::Group;
use crate::routing::router::{Route, Router};
use crate::sandbox::interpreters::Interpreters;
use crate::spec::grant_dir::GrantDir;
use crate::spec::guest::{Grant, GuestSpec, RUN_FLAGS_POLICY};
use crate::spec::limits::{HttpLimits, Isolation, Limits, Reload};
use crate::spec::listen::{Listen, ListenAddr};

/// This module's log target: its name before the folders, so log lines
/// and `WASGI_LOG` filters read as they did.
const LOG_TARGET: &str = "wasgi::run";

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The WSGI script: a `.wsgi` file (or `.py`) that defines `application`.
    pub script: PathBuf,
    /// A proxy whose X-Forwarded-* / Forwarded headers are believed: an address, a CIDR block, or `unix` for Unix-socket peers (repeatable).
    #[arg(long = "trusted-proxy", value_name = "ADDR")]
    pub trusted_proxy: Vec<String>,
    /// A forwarding header believed from trusted proxies (repeatable; replaces the default
    /// x-forwarded-for, -host, -proto and -port): forwarded, x-forwarded-for, x-forwarded-host, x-forwarded-proto, x-forwarded-port.
    #[arg(long = "trusted-proxy-header", value_name = "NAME")]
    pub trusted_proxy_header: Vec<String>,
    /// Where to listen: HOST:PORT or unix:/path/to.sock (repeatable).
    #[arg(long = "listen", value_name = "ADDR", default_value = "127.0.0.1:8000")]
    pub listen: Vec<ListenAddr>,
    /// Permission bits for Unix-socket listeners, in octal (e.g. 660 or 666), so Apache's user can connect.
    #[arg(long = "socket-mode", value_name = "OCTAL", value_parser = crate::spec::listen::parse_socket_mode)]
    pub socket_mode: Option<u32>,
    /// Pass the Authorization header to the app as HTTP_AUTHORIZATION (mod_wsgi's `WSGIPassAuthorization On`; default: hidden, as under mod_wsgi).
    #[arg(long = "pass-authorization")]
    pub pass_authorization: bool,
    /// Make writes to sys.stdout raise an error, as mod_wsgi's `WSGIRestrictStdout On` did (default: they go to the log).
    #[arg(long = "restrict-stdout")]
    pub restrict_stdout: bool,
    /// Start instances from a snapshot taken after the app's import instead of importing it in
    /// each (needs an interpreter with a reactor build: cpython-3.13; implied by --isolation request).
    #[arg(long)]
    pub snapshot: bool,
    /// instance (long-lived instances, as under mod_wsgi) or request (every request in a fresh
    /// instance started from the snapshot; nothing survives between requests).
    #[arg(long, value_name = "MODE", default_value = "instance", value_parser = ["instance", "request"])]
    pub isolation: String,
    /// A path (with an optional query) to GET once while the snapshot is made, so what it runs
    /// is already warm in every instance (repeatable; with --snapshot or --isolation request).
    #[arg(long, value_name = "PATH", value_parser = crate::spec::limits::warmup_path)]
    pub warmup: Vec<String>,
    /// A directory to put on sys.path (granted read-only; repeatable).
    #[arg(long = "python-path", value_name = "DIR")]
    pub python_path: Vec<PathBuf>,
    /// A virtualenv (mod_wsgi's python-home): granted read-only, its site-packages put on sys.path.
    #[arg(long, value_name = "DIR")]
    pub venv: Option<PathBuf>,
    /// A directory the app may read (repeatable).
    #[arg(long = "grant-read", value_name = "DIR")]
    pub grant_read: Vec<PathBuf>,
    /// A directory the app may read and write (repeatable).
    #[arg(long = "grant-write", value_name = "DIR")]
    pub grant_write: Vec<PathBuf>,
    /// Let the granted paths (the script's directory, --python-path, --venv, --grant-*) contain
    /// symlinks, resolved once at start (default: a symlink in a grant's path is an error, so
    /// nobody can redirect a grant by swapping a directory for a link).
    #[arg(long = "follow-symlinks")]
    pub follow_symlinks: bool,
    /// Guest instances serving requests (each is single-threaded). Default: the number of cores.
    #[arg(long, value_name = "N")]
    pub instances: Option<usize>,
    /// The name of the WSGI callable in the script.
    #[arg(long, value_name = "NAME", default_value = "application")]
    pub callable: String,
    /// The app's working directory (must be inside a grant). Default: the script's directory.
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// The most requests that may wait for a free instance before new ones get 503.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_queue: usize,
    /// Linear memory each instance may use, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    pub memory_limit: usize,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub graceful_timeout: u64,
    /// A request running longer is interrupted (504) and its instance replaced; 0 = no limit.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub request_timeout: u64,
    /// An instance still importing the app after this is stopped; 0 = no limit.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub startup_timeout: u64,
    /// A request that waited this long for a free instance gets 503 with Retry-After; 0 = no limit.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub queue_timeout: u64,
    /// Restart the instances, without failing a request, when the script changes (mod_wsgi's WSGIScriptReloading).
    #[arg(long)]
    pub reload: bool,
    /// Like --reload, for any file under the script's directory.
    #[arg(long)]
    pub reload_tree: bool,
    /// Replace an instance after about this many requests (±10%); 0 = never.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub maximum_requests: u64,
    /// CPU time one request may use (wasm execution, not waiting); past it, 504 and a new instance; 0 = no limit.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub cpu_time_limit: u64,
    /// Stop instances idle this long; the next request starts them again; 0 = never.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub inactivity_timeout: u64,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub interpreter: InterpreterArgs,
}

/// Limits on what clients may send (defaults in [`HttpLimits`]).
#[derive(Args, Debug, Clone)]
pub struct HttpArgs {
    /// Request line plus headers, in bytes (431 past it).
    #[arg(long, value_name = "BYTES", default_value_t = HttpLimits::default().max_header_bytes)]
    pub max_header_bytes: usize,
    /// Header fields per request (431 past it).
    #[arg(long, value_name = "N", default_value_t = HttpLimits::default().max_headers)]
    pub max_headers: usize,
    /// Request body, in bytes (413 past it).
    #[arg(long, value_name = "BYTES", default_value_t = HttpLimits::default().max_body_bytes)]
    pub max_body_bytes: u64,
    /// Seconds to receive a request's head, idle keep-alive included.
    #[arg(long, value_name = "SECONDS", default_value_t = HttpLimits::default().header_read_timeout.as_secs())]
    pub header_read_timeout: u64,
    /// Longest pause, in seconds, between two pieces of a request body.
    #[arg(long, value_name = "SECONDS", default_value_t = HttpLimits::default().body_read_timeout.as_secs())]
    pub body_read_timeout: u64,
    /// Seconds a response may wait for a client that reads nothing before the
    /// exchange ends as a disconnect and the instance is freed.
    #[arg(long, value_name = "SECONDS", default_value_t = HttpLimits::default().body_write_timeout.as_secs())]
    pub body_write_timeout: u64,
    /// Open connections at most; more wait in the listen backlog.
    #[arg(long, value_name = "N", default_value_t = HttpLimits::default().max_connections)]
    pub max_connections: usize,
    /// Connections the kernel queues for each TCP listener.
    #[arg(long, value_name = "N", default_value_t = HttpLimits::default().listen_backlog)]
    pub listen_backlog: u32,
    /// Seconds between SIGTERM and closing the listeners, while the readiness check
    /// already answers 503, so a load balancer stops sending first (0: close at once).
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub shutdown_delay: u64,
}

impl HttpArgs {
    pub fn limits(&self) -> HttpLimits {
        HttpLimits {
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
            max_body_bytes: self.max_body_bytes,
            header_read_timeout: Duration::from_secs(self.header_read_timeout.max(1)),
            body_read_timeout: Duration::from_secs(self.body_read_timeout.max(1)),
            body_write_timeout: Duration::from_secs(self.body_write_timeout.max(1)),
            max_connections: self.max_connections.max(1),
            listen_backlog: self.listen_backlog.max(1),
            shutdown_delay: Duration::from_secs(self.shutdown_delay),
        }
    }
}

impl RunArgs {
    fn limits(&self) -> Limits {
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        Limits {
            request_timeout: secs(self.request_timeout),
            startup_timeout: secs(self.startup_timeout),
            queue_timeout: secs(self.queue_timeout),
            maximum_requests: (self.maximum_requests > 0).then_some(self.maximum_requests),
            inactivity_timeout: secs(self.inactivity_timeout),
            cpu_time_limit: secs(self.cpu_time_limit),
        }
    }
}

/// Makes a path absolute without resolving symlinks, so the guest sees the
/// path the user wrote (a `.wsgi` file refers to its directories that way).
fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot make {} absolute", path.display()))
}

/// A directory named by a flag, opened once (see [`crate::spec::grant_dir`]).
fn existing_dir(path: &Path, flag: &str, follow_symlinks: bool) -> Result<(PathBuf, GrantDir)> {
    let abs = crate::spec::grant_dir::normalize(&absolute(path)?);
    match GrantDir::open(&abs, follow_symlinks) {
        Ok(dir) => Ok((abs, dir)),
        Err(e @ crate::spec::grant_dir::GrantDirError::Symlink { .. }) => bail!("{flag} {}: {e} (--follow-symlinks allows it for every flag)", path.display()),
        Err(e) => bail!("{flag} {}: {e}", path.display()),
    }
}

/// A grant from the flags, as policies name theirs (for the shared checks).
fn flag_capability(g: &Grant, follow_symlinks: bool) -> Capability {
    Capability { path: g.path.clone(), write: g.write, shared: false, origin: Origin::Flag(g.origin.clone()), dir: g.dir.clone(), follow_symlinks }
}

/// Turns the flags into what each instance is built from.
pub fn guest_spec(args: &RunArgs, cache_dir: &Path) -> Result<GuestSpec> {
    let script = crate::spec::grant_dir::normalize(&absolute(&args.script)?);
    match std::fs::metadata(&script) {
        Ok(m) if m.is_file() => {}
        Ok(_) => bail!("{}: the script is not a file", args.script.display()),
        Err(e) => bail!("{}: cannot read the script: {e}", args.script.display()),
    }
    let script_dir = script.parent().expect("an absolute file path has a parent").to_owned();

    let follow = args.follow_symlinks;
    let mut grants = Vec::new();
    let (script_dir, script_handle) = existing_dir(&script_dir, "the script's directory", follow)?;
    add_grant(&mut grants, script_dir.clone(), false, "the script's directory", script_handle);
    let mut python_path = Vec::new();
    for dir in &args.python_path {
        let (dir, handle) = existing_dir(dir, "--python-path", follow)?;
        add_grant(&mut grants, dir.clone(), false, "--python-path", handle);
        python_path.push(dir);
    }
    if let Some(venv) = &args.venv {
        let (venv, handle) = existing_dir(venv, "--venv", follow)?;
        let site = crate::config::plan::venv_site_packages(&venv);
        if site.is_empty() {
            bail!("--venv {}: no lib/python3.*/site-packages in it: is it a virtualenv?", venv.display());
        }
        add_grant(&mut grants, venv, false, "--venv", handle);
        python_path.extend(site);
    }
    for dir in &args.grant_read {
        let (dir, handle) = existing_dir(dir, "--grant-read", follow)?;
        add_grant(&mut grants, dir, false, "--grant-read", handle);
    }
    for dir in &args.grant_write {
        let (dir, handle) = existing_dir(dir, "--grant-write", follow)?;
        add_grant(&mut grants, dir, true, "--grant-write", handle);
    }

    let flag_grants: Vec<Capability> = grants.iter().map(|g| flag_capability(g, follow)).collect();
    let cache_real = cache_dir.canonicalize().unwrap_or_else(|_| cache_dir.to_owned());
    if let Some(conflict) = policy::cache_conflict(&cache_real, &flag_grants).first() {
        bail!("{conflict}");
    }
    let key = format!("run-{}", hex::encode(&Sha256::digest(script.as_os_str().as_encoded_bytes())[..8]));
    let pycache = private_dirs(cache_dir, &key, &mut grants)?;

    let home = match &args.home {
        Some(home) => {
            let (home, _) = existing_dir(home, "--home", follow)?;
            if !grants.iter().any(|g| home.starts_with(&g.path)) {
                bail!("--home {}: not inside any granted directory, so the app could not use it", home.display());
            }
            home
        }
        None => script_dir,
    };

    let name = script.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let capabilities: Vec<Capability> = grants.iter().map(|g| flag_capability(g, follow)).collect();
    if let Some((read, write)) = policy::read_only_inside_write(&capabilities).first() {
        bail!("{}", policy::nested_error(&name, read, write));
    }
    Ok(GuestSpec {
        name: name.as_str().into(),
        script,
        callable: args.callable.clone(),
        python_path,
        grants,
        home: Some(home),
        env: vec![("PYTHONPYCACHEPREFIX".into(), pycache.to_string_lossy().into_owned())],
        group: name,
        policies: vec![RUN_FLAGS_POLICY.into()],
        memory_limit: args.memory_limit.saturating_mul(1 << 20),
        limits: args.limits(),
        reload: if args.reload_tree {
            Reload::Tree
        } else if args.reload {
            Reload::Script
        } else {
            Reload::Off
        },
        restrict_stdout: args.restrict_stdout,
        snapshot: args.snapshot || args.isolation == "request",
        isolation: if args.isolation == "request" { Isolation::Request } else { Isolation::Instance },
        warmup: args.warmup.clone(),
        interpreter: args.interpreter.interpreter(),
        host_facts: crate::spec::guest::HostFacts { user: "wasgi".into(), group: "wasgi".into(), hostname: crate::spec::guest::host_name() },
    })
}

pub fn run(args: RunArgs) -> Result<()> {
    let started = Instant::now();
    let cache_dir = args.interpreter.cache_dir()?;
    let spec = guest_spec(&args, &cache_dir)?;
    let instances = args.instances.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
    if instances == 0 {
        bail!("--instances must be at least 1");
    }
    let mut trusted = crate::spec::proxies::TrustedProxies::default();
    for entry in &args.trusted_proxy {
        trusted.add(entry).map_err(|e| anyhow::anyhow!("--trusted-proxy {e}"))?;
    }
    if !args.trusted_proxy_header.is_empty() {
        trusted.headers = crate::spec::proxies::ProxyHeaders::from_names(args.trusted_proxy_header.iter().map(String::as_str))
            .map_err(|e| anyhow::anyhow!("--trusted-proxy-header {e}"))?;
    }

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // Before anything else: SIGHUP's default action would end the process.
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        // Bind first: an address in use is a flag error, reported at once.
        let mut listeners = Vec::new();
        for addr in &args.listen {
            let listen = Listen { addr: addr.clone(), socket_mode: args.socket_mode };
            listeners.push(Listener::bind(&listen, args.http.listen_backlog).await?);
        }

        // Kept alive while guests run: it ticks their epoch.
        let mut interpreters = Interpreters::new(&args.interpreter)?;
        let choice = spec.interpreter;
        interpreters.prepare(choice).await?;

        let name = spec.name.clone();
        tracing::info!(target: LOG_TARGET, app = %name, "starting {instances} instance(s) of {} on {}", spec.script.display(), interpreters.describe(choice));
        let group = Group::start(spec, interpreters.get(choice).clone(), instances, args.max_queue)
            .await
            .map_err(|e| anyhow::anyhow!("{name}: the app could not start:\n{e}"))?;

        let reloading = group.clone();
        tokio::spawn(async move {
            // SIGHUP restarts the instances on the code as it is now, without
            // failing a request (there is no config file to re-read).
            while hangup.recv().await.is_some() {
                tracing::info!(target: LOG_TARGET, "SIGHUP: restarting the instances");
                reloading.reload().await;
            }
        });
        let server = Server::new(
            Router::new(vec![Route {
                host: "*".into(),
                mount: String::new(),
                group,
                access: Default::default(),
                pass_authorization: args.pass_authorization,
            }], trusted),
            args.http.limits(),
        );
        for listener in &listeners {
            tracing::info!(
                target: LOG_TARGET,
                "serving {name} on {} ({instances} instance(s) ready in {:.2}s)",
                listener.local_addr(),
                started.elapsed().as_secs_f64()
            );
        }
        server::serve(server, listeners, shutdown_signal(), Duration::from_secs(args.graceful_timeout)).await
    })?;
    // Guests parked on their stdin are dropped with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(1));
    tracing::info!(target: LOG_TARGET, "stopped");
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits at once.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("can listen for SIGTERM");
    let mut int = signal(SignalKind::interrupt()).expect("can listen for SIGINT");
    tokio::select! {
        _ = term.recv() => tracing::info!(target: LOG_TARGET, "SIGTERM received"),
        _ = int.recv() => tracing::info!(target: LOG_TARGET, "SIGINT received"),
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::warn!(target: LOG_TARGET, "second signal: stopping now");
        std::process::exit(1);
    });
}
