//! `wasgi run SCRIPT`: one app, one group, configured by flags.
//!
//! The flags become the [`Config`] a `wasgi.toml` with one group and one app
//! would give, and go through the same plan and the same supervisor as
//! `wasgi serve`; the defaults the flags show are the config's.
//! Everything that can be wrong with the flags (a missing script, a grant of a
//! path that does not exist, an address in use) is reported before any guest
//! starts; an app that fails to import stops the command with its traceback.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Args;

use crate::cli::supervisor::{supervise, OnHangup};
use crate::config::plan::plan_config;
use crate::config::{self, AppConfig, Config, FlagGrant, GroupConfig, Input, Problem, Problems};
use crate::engine::args::InterpreterArgs;
use crate::spec::connect::{ConnectGrant, ConnectRule};
use crate::spec::grant_dir::{GrantDir, GrantDirError};
use crate::spec::limits::{secs_or_off, HttpLimits, Isolation, Limits, Reload};
use crate::spec::listen::{Listen, ListenAddr};
use crate::spec::proxies::{ProxyHeaders, TrustedProxies};

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
    #[arg(long = "listen", value_name = "ADDR", default_value = config::DEFAULT_LISTEN)]
    pub listen: Vec<ListenAddr>,
    /// Permission bits for Unix-socket listeners, in octal (e.g. 660 or 666), so Apache's user can connect.
    #[arg(long = "socket-mode", value_name = "OCTAL", value_parser = crate::spec::listen::parse_socket_mode)]
    pub socket_mode: Option<u32>,
    /// Serve HTTPS on every --listen address with this certificate chain (PEM, the server's
    /// certificate first); read again on SIGHUP. Needs --tls-key.
    #[arg(long = "tls-cert", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long = "tls-key", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The admin listener (/metrics for Prometheus, /status for `wasgi status`, /live and
    /// /ready probes): HOST:PORT or unix:/path; never routed to the app.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<ListenAddr>,
    /// Where access log lines go: stdout, stderr, off, or a file (reopened on SIGUSR1).
    #[arg(long = "access-log", value_name = "TARGET", default_value = "stdout")]
    pub access_log: crate::spec::logging::AccessLogTarget,
    /// The access log's format: wasgi (Apache's combined plus request id, group and
    /// milliseconds), combined, common, json, or an Apache LogFormat template.
    #[arg(long = "access-log-format", value_name = "FORMAT", default_value = "wasgi")]
    pub access_log_format: crate::spec::logging::AccessFormat,
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
    #[arg(long, value_name = "MODE", default_value_t = Isolation::default(),
          value_parser = PossibleValuesParser::new(Isolation::NAMES).map(|s| s.parse::<Isolation>().expect("a possible value")))]
    pub isolation: Isolation,
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
    /// Let the app connect to TO: HOST:PORT (HOST an IP address, a CIDR block, a DNS name or
    /// *.domain; IPv6 in brackets; PORT a number or a range such as 5432-5433) or
    /// unix:/path/to.sock (repeatable). Nothing is reachable without one.
    #[arg(long = "connect", value_name = "TO", value_parser = parse_connect)]
    pub connect: Vec<ConnectGrant>,
    /// Open outbound connections the app's instances may hold at once, together.
    #[arg(long = "max-outbound-connections", value_name = "N", default_value_t = config::DEFAULT_MAX_CONNECTIONS)]
    pub max_outbound_connections: usize,
    /// Seconds an outbound connect may take.
    #[arg(long = "connect-timeout", value_name = "SECONDS", default_value_t = config::DEFAULT_CONNECT_TIMEOUT_SECS)]
    pub connect_timeout: u64,
    /// The CA certificates the app's `ssl` module trusts (default: the host's store).
    #[arg(long = "ca-file", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Let the granted paths (the script's directory, --python-path, --venv, --grant-*) contain
    /// symlinks, resolved once at start (default: a symlink in a grant's path is an error, so
    /// nobody can redirect a grant by swapping a directory for a link).
    #[arg(long = "follow-symlinks")]
    pub follow_symlinks: bool,
    /// Guest instances serving requests (each is single-threaded). Default: the number of cores.
    // (config::default_instances, as for a [[group]] without `instances`.)
    #[arg(long, value_name = "N")]
    pub instances: Option<usize>,
    /// The name of the WSGI callable in the script.
    #[arg(long, value_name = "NAME", default_value = config::DEFAULT_CALLABLE)]
    pub callable: String,
    /// The app's working directory (must be inside a grant). Default: the script's directory.
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// The most requests that may wait for a free instance before new ones get 503.
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_MAX_QUEUE)]
    pub max_queue: usize,
    /// Linear memory each instance may use, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = config::DEFAULT_MEMORY_LIMIT_MIB)]
    pub memory_limit: usize,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = config::DEFAULT_GRACEFUL_TIMEOUT_SECS)]
    pub graceful_timeout: u64,
    /// A request running longer is interrupted (504) and its instance replaced; 0 = no limit.
    #[arg(long, value_name = "SECONDS", default_value_t = secs_or_off(Limits::default().request_timeout))]
    pub request_timeout: u64,
    /// An instance still importing the app after this is stopped; 0 = no limit.
    #[arg(long, value_name = "SECONDS", default_value_t = secs_or_off(Limits::default().startup_timeout))]
    pub startup_timeout: u64,
    /// A request that waited this long for a free instance gets 503 with Retry-After; 0 = no limit.
    #[arg(long, value_name = "SECONDS", default_value_t = secs_or_off(Limits::default().queue_timeout))]
    pub queue_timeout: u64,
    /// Restart the instances, without failing a request, when the script changes (mod_wsgi's WSGIScriptReloading).
    #[arg(long)]
    pub reload: bool,
    /// Like --reload, for any file under the script's directory.
    #[arg(long)]
    pub reload_tree: bool,
    /// Replace an instance after about this many requests (±10%); 0 = never.
    #[arg(long, value_name = "N", default_value_t = Limits::default().maximum_requests.unwrap_or(0))]
    pub maximum_requests: u64,
    /// CPU time one request may use (wasm execution, not waiting); past it, 504 and a new instance; 0 = no limit.
    #[arg(long, value_name = "SECONDS", default_value_t = secs_or_off(Limits::default().cpu_time_limit))]
    pub cpu_time_limit: u64,
    /// Stop instances idle this long; the next request starts them again; 0 = never.
    #[arg(long, value_name = "SECONDS", default_value_t = secs_or_off(Limits::default().inactivity_timeout))]
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
    #[arg(long, value_name = "SECONDS", default_value_t = HttpLimits::default().shutdown_delay.as_secs())]
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

/// Makes a path absolute without resolving symlinks, so the guest sees the
/// path the user wrote (a `.wsgi` file refers to its directories that way).
fn absolute(path: &Path, flag: &str) -> Result<PathBuf, Problem> {
    std::path::absolute(path)
        .map(|p| crate::spec::grant_dir::normalize(&p))
        .map_err(|e| Problem::flag(format!("{flag} {}", path.display()), format!("cannot make it absolute: {e}")))
}

/// `--connect`'s value, parsed as a policy's `to` is.
fn parse_connect(text: &str) -> Result<ConnectGrant, String> {
    text.parse::<ConnectGrant>().map_err(|e| e.to_string())
}

/// The flags as the config a `wasgi.toml` with one `[[group]]` and one
/// `[[app]]` would give, checked as a file's values are (the plan then
/// checks the paths, for both alike). The group is named after the script.
pub fn config_from_flags(args: &RunArgs) -> Result<Config, Problems> {
    let mut problems = Vec::new();
    let mut absolute = |path: &Path, flag: &str| absolute(path, flag).map_err(|p| problems.push(p)).ok();
    let script = absolute(&args.script, "the script").unwrap_or_default();
    let python_path = args.python_path.iter().filter_map(|dir| absolute(dir, "--python-path")).collect();
    let venv = args.venv.as_ref().and_then(|venv| absolute(venv, "--venv"));
    let home = args.home.as_ref().and_then(|home| absolute(home, "--home"));
    let ca_file = args.ca_file.as_ref().and_then(|file| absolute(file, "--ca-file"));
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let (cert, key) = (absolute(cert, "--tls-cert"), absolute(key, "--tls-key"));
            cert.zip(key).map(|(cert, key)| crate::spec::listen::TlsFiles { cert, key })
        }
        _ => None,
    };
    let mut flag_grants = Vec::new();
    for (dirs, write, flag) in [(&args.grant_read, false, "--grant-read"), (&args.grant_write, true, "--grant-write")] {
        flag_grants.extend(dirs.iter().filter_map(|dir| absolute(dir, flag)).map(|path| FlagGrant { path, write, flag }));
    }
    for (flag, file) in tls.iter().flat_map(|t| [("--tls-cert", &t.cert), ("--tls-key", &t.key)]) {
        if let Err(e) = std::fs::File::open(file) {
            problems.push(Problem::flag(format!("{flag} {}", file.display()), format!("cannot read it: {e}")));
        }
    }
    if let Some(file) = ca_file.as_ref().filter(|f| !f.is_file()) {
        problems.push(Problem::flag(format!("--ca-file {}", file.display()), "not a file"));
    }
    // --home must exist, as it always had to (the plan does not ask that of
    // a file's `home`, and still does not).
    if let Some(home) = &home {
        if let Err(e) = GrantDir::open(home, args.follow_symlinks) {
            let hint = if matches!(e, GrantDirError::Symlink { .. }) { " (--follow-symlinks allows it for every flag)" } else { "" };
            problems.push(Problem::flag(format!("--home {}", home.display()), format!("{e}{hint}")));
        }
    }
    let instances = args.instances.unwrap_or_else(config::default_instances);
    if instances == 0 {
        problems.push(Problem::flag("", "--instances must be at least 1"));
    }
    let mut trusted_proxies = TrustedProxies::default();
    for entry in &args.trusted_proxy {
        if let Err(e) = trusted_proxies.add(entry) {
            problems.push(Problem::flag("", format!("--trusted-proxy {e}")));
        }
    }
    if !args.trusted_proxy_header.is_empty() {
        match ProxyHeaders::from_names(args.trusted_proxy_header.iter().map(String::as_str)) {
            Ok(headers) => trusted_proxies.headers = headers,
            Err(e) => problems.push(Problem::flag("", format!("--trusted-proxy-header {e}"))),
        }
    }
    if !problems.is_empty() {
        return Err(Problems(problems));
    }

    let name = script.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
    let group = GroupConfig {
        instances,
        python_path,
        venv,
        home,
        memory_limit: args.memory_limit,
        max_queue: args.max_queue,
        limits: Limits {
            request_timeout: secs(args.request_timeout),
            startup_timeout: secs(args.startup_timeout),
            queue_timeout: secs(args.queue_timeout),
            maximum_requests: (args.maximum_requests > 0).then_some(args.maximum_requests),
            inactivity_timeout: secs(args.inactivity_timeout),
            cpu_time_limit: secs(args.cpu_time_limit),
        },
        reload: if args.reload_tree {
            Reload::Tree
        } else if args.reload {
            Reload::Script
        } else {
            Reload::Off
        },
        restrict_stdout: args.restrict_stdout,
        follow_symlinks: args.follow_symlinks,
        snapshot: args.snapshot || args.isolation == Isolation::Request,
        isolation: args.isolation,
        warmup: args.warmup.clone(),
        // No interpreter of its own: the process's default (--interpreter), as for a file's group.
        flag_grants,
        flag_connect: args.connect.iter().map(|grant| ConnectRule { grant: grant.clone(), origin: format!("--connect {grant}") }).collect(),
        max_connections: args.max_outbound_connections,
        connect_timeout: Duration::from_secs(args.connect_timeout.max(1)),
        ca_file,
        ..GroupConfig::named(name.clone())
    };
    let app = AppConfig {
        hosts: vec!["*".into()],
        mount: String::new(),
        script: script.clone(),
        callable: args.callable.clone(),
        group: name,
        access: Default::default(),
        pass_authorization: args.pass_authorization,
        static_dirs: Vec::new(),
        line: 0,
    };
    Ok(Config {
        input: Input::Flags,
        file: script,
        policies: PathBuf::new(),
        listen: args.listen.iter().map(|addr| Listen { addr: addr.clone(), socket_mode: args.socket_mode, tls: tls.clone() }).collect(),
        groups: vec![group],
        apps: vec![app],
        http: args.http.limits(),
        graceful_timeout: Duration::from_secs(args.graceful_timeout),
        trusted_proxies,
        logging: crate::spec::logging::Logging {
            access_log: match &args.access_log {
                crate::spec::logging::AccessLogTarget::File(path) => crate::spec::logging::AccessLogTarget::File(std::path::absolute(path).unwrap_or_else(|_| path.clone())),
                other => other.clone(),
            },
            access_format: args.access_log_format.clone(),
            format: crate::cli::logline::current_format(),
        },
        admin: args.admin.clone(),
        cache_unused: crate::config::cache_unused(crate::config::DEFAULT_CACHE_UNUSED_DAYS),
    })
}

/// `wasgi run`: the flags' config planned as a file's is, then supervised
/// as `wasgi serve`'s (SIGHUP restarts the instances: there is no file to
/// re-read).
pub fn run(args: RunArgs) -> Result<()> {
    let started = Instant::now();
    let cache_dir = args.interpreter.cache_dir()?;
    let config = config_from_flags(&args)?;
    let graceful = config.graceful_timeout;
    let plan = plan_config(config, &cache_dir, args.interpreter.interpreter())?;
    supervise(plan, &args.interpreter, OnHangup::Restart, graceful, started)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use clap::Parser;

    use super::*;
    use crate::config::plan::plan;
    use crate::spec::guest::GuestSpec;
    use crate::spec::interpreter::Choice;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        run: RunArgs,
    }

    fn flags(args: &[&str]) -> RunArgs {
        Cmd::try_parse_from(std::iter::once("wasgi-run").chain(args.iter().copied())).expect("the flags parse").run
    }

    /// A scratch directory with an app, a library directory and a data
    /// directory, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(label: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("wasgi-run-{label}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            for sub in ["app", "lib", "data", "cache", "policies/users"] {
                std::fs::create_dir_all(dir.join(sub)).unwrap();
            }
            std::fs::write(dir.join("app/app.wsgi"), "def application(e, s):\n    s('200 OK', [])\n    return [b'']\n").unwrap();
            Scratch(dir)
        }

        fn path(&self, sub: &str) -> String {
            self.0.join(sub).display().to_string()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Every default `wasgi run` shows is the one a wasgi.toml gets when it
    /// leaves the key out: there is one source for each.
    #[test]
    fn the_flags_defaults_are_the_files_defaults() {
        let scratch = Scratch::new("defaults");
        let from_flags = config_from_flags(&flags(&[&scratch.path("app/app.wsgi")])).unwrap();
        let text = format!("[[group]]\nname = \"app.wsgi\"\n[[app]]\nscript = \"{}\"\ngroup = \"app.wsgi\"\n", scratch.path("app/app.wsgi"));
        let from_file = crate::config::from_text(Path::new("/etc/wasgi/wasgi.toml"), &text).unwrap();
        let (f, g) = (&from_flags.groups[0], &from_file.groups[0]);
        assert_eq!(f.instances, g.instances);
        assert_eq!(f.memory_limit, g.memory_limit);
        assert_eq!(f.max_queue, g.max_queue);
        assert_eq!(f.limits, g.limits);
        assert_eq!((f.reload, f.isolation, f.snapshot, f.restrict_stdout, f.follow_symlinks), (g.reload, g.isolation, g.snapshot, g.restrict_stdout, g.follow_symlinks));
        assert_eq!(f.interpreter, g.interpreter);
        assert_eq!(from_flags.apps[0].callable, from_file.apps[0].callable);
        assert_eq!(from_flags.apps[0].pass_authorization, from_file.apps[0].pass_authorization);
        assert_eq!(from_flags.listen, from_file.listen);
        assert_eq!(from_flags.graceful_timeout, from_file.graceful_timeout);
        assert_eq!(format!("{:?}", from_flags.http), format!("{:?}", from_file.http));
        assert_eq!(format!("{:?}", from_flags.trusted_proxies), format!("{:?}", from_file.trusted_proxies));
    }

    /// The same app from flags and from a file with a policy: the same
    /// grants, sys.path and limits come out of the one plan; only the names
    /// (of the app, its grants' origins, its private directories) differ.
    #[test]
    fn flags_and_a_file_plan_the_same_guest() {
        let scratch = Scratch::new("same");
        let (script, lib, data, cache) = (scratch.path("app/app.wsgi"), scratch.path("lib"), scratch.path("data"), scratch.0.join("cache"));
        let args = flags(&[&script, "--python-path", &lib, "--grant-write", &data, "--grant-read", &lib, "--memory-limit", "256", "--maximum-requests", "5"]);
        let from_flags = plan_config(config_from_flags(&args).unwrap(), &cache, Choice::Pinned).unwrap();
        std::fs::write(scratch.0.join("policies/users/u.toml"), format!("[[grant]]\npath = \"{data}\"\naccess = \"write\"\n")).unwrap();
        let text = format!(
            "[[group]]\nname = \"g\"\nuser = \"u\"\npython_path = [\"{lib}\"]\nmemory_limit = 256\nmaximum_requests = 5\ninterpreter = \"cpython-3.12\"\n[[app]]\nscript = \"{script}\"\ngroup = \"g\"\n"
        );
        std::fs::write(scratch.0.join("wasgi.toml"), text).unwrap();
        let from_file = plan(&scratch.0.join("wasgi.toml"), &cache, Choice::Cpython313).unwrap();
        let (f, g) = (&from_flags.apps[0].spec, &from_file.apps[0].spec);
        let dirs = |spec: &GuestSpec| {
            let mut dirs: Vec<(PathBuf, PathBuf, bool)> =
                spec.grants.iter().filter(|g| !g.path.starts_with(&cache)).map(|g| (g.path.clone(), g.guest_path.clone(), g.write)).collect();
            dirs.sort();
            dirs
        };
        assert_eq!(dirs(f), dirs(g));
        assert_eq!(f.grants.len(), g.grants.len(), "the private bytecode cache and /tmp: {:?}", f.grants);
        assert_eq!((&f.script, &f.callable, &f.python_path, &f.home), (&g.script, &g.callable, &g.python_path, &g.home));
        assert_eq!((f.memory_limit, &f.limits, f.interpreter), (g.memory_limit, &g.limits, g.interpreter));
        assert_eq!((&*f.name, f.host_facts.user.as_str()), ("app.wsgi", "wasgi"));
        assert_eq!((&*g.name, g.host_facts.user.as_str()), ("g:app.wsgi", "u"));
        let origin = |spec: &GuestSpec, path: &str| spec.grants.iter().find(|g| g.path == Path::new(path)).map(|g| g.origin.clone()).unwrap();
        assert_eq!(origin(f, &lib), "--python-path", "the first grant of a path keeps its origin when the second adds nothing");
        assert_eq!(origin(f, &data), "--grant-write");
        assert_eq!(origin(f, &scratch.path("app")), "the script's directory");
        assert_eq!(origin(g, &scratch.path("app")), "the app's script directory");
    }

    /// The same mistake, worded for each input: a flag and its value, or
    /// the file, line and key.
    #[test]
    fn problems_name_the_flag_or_the_files_line() {
        let scratch = Scratch::new("problems");
        let cache = scratch.0.join("cache");
        let missing = scratch.path("missing");
        let args = flags(&[&scratch.path("app/app.wsgi"), "--python-path", &missing, "--grant-read", &missing]);
        let problems = plan_config(config_from_flags(&args).unwrap(), &cache, Choice::Pinned).err().unwrap().to_string();
        assert!(problems.lines().any(|l| l == format!("--python-path {missing}: {missing} is not a directory")), "{problems}");
        assert!(problems.lines().any(|l| l.starts_with(&format!("--grant-read {missing}: {missing}: "))), "{problems}");
        let text = format!("[[group]]\nname = \"g\"\npython_path = [\"{missing}\"]\n[[app]]\nscript = \"{}\"\ngroup = \"g\"\n", scratch.path("app/app.wsgi"));
        std::fs::write(scratch.0.join("wasgi.toml"), text).unwrap();
        let problems = plan(&scratch.0.join("wasgi.toml"), &cache, Choice::Pinned).err().unwrap().to_string();
        assert_eq!(problems, format!("{}: group \"g\": python_path: {missing} is not a directory", scratch.0.join("wasgi.toml:2").display()));
        let problems = config_from_flags(&flags(&[&scratch.path("app/app.wsgi"), "--instances", "0", "--trusted-proxy", "nowhere"])).err().unwrap().to_string();
        assert!(problems.starts_with("--instances must be at least 1\n--trusted-proxy "), "{problems}");
    }
}
