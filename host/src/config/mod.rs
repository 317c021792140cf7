//! `wasgi.toml`: listeners, process groups and apps.
//!
//! The file is read in two steps: serde fills raw structs that refuse unknown
//! keys and wrong types, keeping the byte span of every value; then one
//! validation pass turns them into [`Config`], and every problem it finds is
//! reported as `file:line: key: what is wrong`, all of them at once.
//!
//! - [`policy`]: the capability policies a group names (`user`, `group`).
//! - [`plan`]: the validated config and policies → each app's guest spec.
//! - [`wsgi_script`]: what a mod_wsgi script does that wasgi must know.
//!
//! May use: `spec` only (no runtime module: a config is checked and planned
//! without starting anything).

pub mod plan;
pub mod policy;
pub mod wsgi_script;

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::spec::access::Access;
use crate::spec::connect::ConnectRule;
use crate::spec::interpreter::Choice;
use crate::spec::limits::{HttpLimits, Isolation, Limits, Reload};
use crate::spec::listen::{Listen, ListenAddr};
use crate::spec::logging::Logging;
use crate::spec::proxies::TrustedProxies;

/// One problem, located in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub key: String,
    pub message: String,
}

impl Problem {
    /// A problem with `wasgi run`'s flags: no file, the key names the flag
    /// and its value (or is empty when the message says it all).
    pub fn flag(key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem { file: PathBuf::new(), line: 0, key: key.into(), message: message.into() }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.file.as_os_str().is_empty(), self.key.is_empty()) {
            (false, _) => write!(f, "{}:{}: {}: {}", self.file.display(), self.line, self.key, self.message),
            (true, false) => write!(f, "{}: {}", self.key, self.message),
            (true, true) => f.write_str(&self.message),
        }
    }
}

/// Every problem found in a configuration.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct Problems(pub Vec<Problem>);

/// A source file and its text, for turning byte spans into line numbers.
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    pub fn read(path: &Path) -> Result<Source, Problems> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Source { path: path.to_owned(), text }),
            Err(e) => Err(Problems(vec![Problem {
                file: path.to_owned(),
                line: 0,
                key: "(file)".into(),
                message: format!("cannot read: {e}"),
            }])),
        }
    }

    pub fn line_of(&self, span: &Range<usize>) -> usize {
        self.text[..span.start.min(self.text.len())].bytes().filter(|b| *b == b'\n').count() + 1
    }

    pub fn problem(&self, span: &Range<usize>, key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem { file: self.path.clone(), line: self.line_of(span), key: key.into(), message: message.into() }
    }

    /// Parses the whole file; a syntax error, an unknown key or a wrong type
    /// is one problem with its line.
    pub fn parse<'de, T: Deserialize<'de>>(&'de self) -> Result<T, Problems> {
        toml::from_str(&self.text).map_err(|e| {
            let line = e.span().map(|s| self.line_of(&s)).unwrap_or(0);
            let message = e.message().trim().to_owned();
            let key = if message.starts_with("unknown field") {
                "(unknown key)"
            } else if message.starts_with("invalid type") || message.starts_with("invalid value") {
                "(wrong type)"
            } else if message.starts_with("missing field") {
                "(missing key)"
            } else {
                "(syntax)"
            };
            Problems(vec![Problem { file: self.path.clone(), line, key: key.into(), message }])
        })
    }
}

// ---------------------------------------------------------------- raw file

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// The policies directory, relative to this file.
    policies: Option<Spanned<String>>,
    /// Seconds requests in flight may take to finish after SIGTERM/SIGINT.
    graceful_timeout: Option<Spanned<i64>>,
    /// Peers whose X-Forwarded-* / Forwarded headers are believed.
    #[serde(default)]
    trusted_proxies: Vec<Spanned<String>>,
    /// Which forwarding headers a trusted proxy is believed in (default: X-Forwarded-*).
    trusted_proxy_headers: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    listen: Vec<RawListen>,
    /// The admin listener (/metrics, /status, probes): HOST:PORT or unix:/path.
    admin: Option<Spanned<String>>,
    /// stdout (default), stderr, off, or a file (relative: to this file's directory).
    access_log: Option<Spanned<String>>,
    /// wasgi (default), combined, common, json, or an Apache LogFormat template.
    access_log_format: Option<Spanned<String>>,
    /// The error log: text (default) or json.
    log_format: Option<Spanned<String>>,
    /// Days after which cache entries no server used are removed (0: never).
    cache_unused_days: Option<Spanned<i64>>,
    #[serde(default)]
    group: Vec<RawGroup>,
    #[serde(default)]
    app: Vec<RawApp>,
    http: Option<RawHttp>,
}

/// `[http]`: limits on what clients may send; absent keys keep the defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    max_header_bytes: Option<Spanned<i64>>,
    max_headers: Option<Spanned<i64>>,
    max_body_bytes: Option<Spanned<i64>>,
    header_read_timeout: Option<Spanned<i64>>,
    body_read_timeout: Option<Spanned<i64>>,
    body_write_timeout: Option<Spanned<i64>>,
    max_connections: Option<Spanned<i64>>,
    listen_backlog: Option<Spanned<i64>>,
    shutdown_delay: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    address: Spanned<String>,
    /// Unix sockets: permission bits in octal, as in "0660".
    mode: Option<Spanned<String>>,
    /// TLS: the certificate chain and its private key, PEM files (both or
    /// neither; relative paths are read from this file's directory).
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
    instances: Option<Spanned<i64>>,
    user: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    #[serde(default)]
    python_path: Vec<Spanned<String>>,
    venv: Option<Spanned<String>>,
    home: Option<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
    memory_limit: Option<Spanned<i64>>,
    max_queue: Option<Spanned<i64>>,
    request_timeout: Option<Spanned<i64>>,
    startup_timeout: Option<Spanned<i64>>,
    queue_timeout: Option<Spanned<i64>>,
    maximum_requests: Option<Spanned<i64>>,
    inactivity_timeout: Option<Spanned<i64>>,
    cpu_time_limit: Option<Spanned<i64>>,
    /// Writes to sys.stdout raise an error (mod_wsgi's WSGIRestrictStdout On).
    restrict_stdout: Option<Spanned<bool>>,
    /// Lets the implied grants (script directory, python_path, venv) lie
    /// behind symlinks, resolved once when the configuration is planned.
    follow_symlinks: Option<Spanned<bool>>,
    /// Start instances from a snapshot taken after the app's import (default
    /// false, implied by isolation = "request"; only interpreters with a
    /// reactor build can be snapshotted).
    snapshot: Option<Spanned<bool>>,
    /// "instance" (default: long-lived instances) or "request": every request
    /// in a fresh instance started from the snapshot.
    isolation: Option<Spanned<String>>,
    /// Paths (with an optional query) requested once while the snapshot is
    /// made, so the code they run is warm in every instance.
    warmup: Option<Spanned<Vec<String>>>,
    /// true or "script": the script file; "tree": any file under its directory.
    reload_on_change: Option<Spanned<toml::Value>>,
    /// "cpython-3.12" or "cpython-3.13"; absent: the process's default.
    interpreter: Option<Spanned<String>>,
    /// What `socket.gethostname()` answers inside the guests; absent: the server's name.
    hostname: Option<Spanned<String>>,
    /// Open outbound connections the group's guests may hold at once.
    max_connections: Option<Spanned<i64>>,
    /// Seconds a connect may take (a guest's shorter socket timeout wins).
    connect_timeout: Option<Spanned<i64>>,
    /// The CA certificates the guests' `ssl` module trusts; absent: the host's store.
    ca_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    /// A name or a list of names.
    host: Option<Spanned<toml::Value>>,
    mount: Option<Spanned<String>>,
    script: Spanned<String>,
    callable: Option<Spanned<String>>,
    group: Spanned<String>,
    /// Client addresses allowed (addresses, CIDRs, Apache-style prefixes like "10.1", or "all").
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    /// Client addresses refused; a match here wins over `allow`.
    #[serde(default)]
    deny: Vec<Spanned<String>>,
    /// Pass the Authorization header to the app (mod_wsgi's WSGIPassAuthorization).
    pass_authorization: Option<Spanned<bool>>,
    /// URL path → directory: static files Apache serves in front of the app
    /// (`wasgi apache-config` writes them as `Alias` lines).
    #[serde(default, rename = "static")]
    static_dirs: BTreeMap<String, Spanned<String>>,
}

// ---------------------------------------------------------------- validated

/// Where a configuration came from. The plan is the same for both; only
/// the words differ: a file's problems name its lines and keys, the flags'
/// problems name the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A `wasgi.toml` (`wasgi serve`, `wasgi check`).
    File,
    /// The flags of `wasgi run` (see `crate::cli::run`): one group, one app.
    Flags,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub input: Input,
    /// The wasgi.toml; for [`Input::Flags`], the script.
    pub file: PathBuf,
    pub policies: PathBuf,
    pub listen: Vec<Listen>,
    pub groups: Vec<GroupConfig>,
    pub apps: Vec<AppConfig>,
    pub http: HttpLimits,
    pub graceful_timeout: std::time::Duration,
    pub trusted_proxies: TrustedProxies,
    /// The access log and the error log's format.
    pub logging: Logging,
    /// The admin listener, if any: never routed to apps.
    pub admin: Option<ListenAddr>,
    /// Cache entries unused for this long are pruned while serving; None: never.
    pub cache_unused: Option<std::time::Duration>,
}

#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub name: String,
    pub instances: usize,
    pub user: Option<String>,
    pub group: Option<String>,
    pub python_path: Vec<PathBuf>,
    pub venv: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    /// MiB of linear memory per instance.
    pub memory_limit: usize,
    pub max_queue: usize,
    pub limits: Limits,
    pub reload: Reload,
    pub restrict_stdout: bool,
    /// The script directory, python_path and venv may contain symlinks.
    pub follow_symlinks: bool,
    pub snapshot: bool,
    pub isolation: Isolation,
    /// GET requests made before the snapshot (see `GuestSpec::warmup`).
    pub warmup: Vec<String>,
    /// The interpreter its guests run; None: the process's default
    /// (`--interpreter`, `WASGI_INTERPRETER`, else the pinned build).
    pub interpreter: Option<Choice>,
    /// What `socket.gethostname()` answers inside its guests; None: the server's name.
    pub hostname: Option<String>,
    /// Directories granted by `wasgi run`'s `--grant-read`/`--grant-write`
    /// (a file's groups take theirs from policies, so this is empty there).
    pub flag_grants: Vec<FlagGrant>,
    /// Connect grants of `wasgi run`'s `--connect` (likewise empty in a file).
    pub flag_connect: Vec<ConnectRule>,
    /// Open outbound connections at once, for the whole group.
    pub max_connections: usize,
    pub connect_timeout: std::time::Duration,
    /// The CA bundle guests trust; None: the host's store, if it has one.
    pub ca_file: Option<PathBuf>,
    /// Where the group was declared, for later messages.
    pub line: usize,
    /// The lines of its `user` and `group` keys.
    pub user_line: usize,
    pub group_line: usize,
}

#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Host names (lower case, no port); `*.example.com` and `*` allowed.
    pub hosts: Vec<String>,
    /// The SCRIPT_NAME prefix: "" for the root, else "/path" without a trailing slash.
    pub mount: String,
    pub script: PathBuf,
    pub callable: String,
    pub group: String,
    /// Which clients may reach the app (403 for the others).
    pub access: Access,
    /// Does the app see HTTP_AUTHORIZATION? (mod_wsgi's WSGIPassAuthorization; off by default)
    pub pass_authorization: bool,
    /// Static files served by Apache in front of the app: (URL path, directory).
    /// wasgi itself does not serve them; `wasgi apache-config` writes `Alias` lines.
    pub static_dirs: Vec<(String, PathBuf)>,
    pub line: usize,
}

impl GroupConfig {
    /// A group with every setting at its default, as a `[[group]]` with only
    /// its name gives it: `wasgi run` and `wasgi import-apache` start here and
    /// set what they have, so a new key's default is written once.
    pub fn named(name: String) -> GroupConfig {
        GroupConfig {
            name,
            instances: default_instances(),
            user: None,
            group: None,
            python_path: Vec::new(),
            venv: None,
            home: None,
            env: Vec::new(),
            memory_limit: DEFAULT_MEMORY_LIMIT_MIB,
            max_queue: DEFAULT_MAX_QUEUE,
            limits: Limits::default(),
            reload: Reload::Off,
            restrict_stdout: false,
            follow_symlinks: false,
            snapshot: false,
            isolation: Isolation::default(),
            warmup: Vec::new(),
            interpreter: None,
            hostname: None,
            flag_grants: Vec::new(),
            flag_connect: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            connect_timeout: std::time::Duration::from_secs(DEFAULT_CONNECT_TIMEOUT_SECS),
            ca_file: None,
            line: 0,
            user_line: 0,
            group_line: 0,
        }
    }
}

/// A directory one of `wasgi run`'s flags grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagGrant {
    /// Absolute and normalised.
    pub path: PathBuf,
    pub write: bool,
    /// `--grant-read` or `--grant-write`: the grant's origin in messages.
    pub flag: &'static str,
}

// ---------------------------------------------------------------- defaults
//
// Each default lives once: here (or, for the lifecycle and HTTP limits, in
// `Limits::default()` and `HttpLimits::default()` in `crate::spec::limits`).
// The file's validation falls back to them and `wasgi run`'s flags show and
// use them (clap's `default_value_t`).

/// Where to listen when a file names no `[[listen]]`, and `--listen`'s default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";
/// The WSGI callable a script defines (mod_wsgi's name).
pub const DEFAULT_CALLABLE: &str = "application";
pub const DEFAULT_MEMORY_LIMIT_MIB: usize = 1024;
pub const DEFAULT_MAX_QUEUE: usize = 1024;
/// Seconds requests in flight may take to finish after SIGTERM/SIGINT.
pub const DEFAULT_GRACEFUL_TIMEOUT_SECS: u64 = 30;

/// `cache_unused_days`' default: what no server used for a month goes.
pub const DEFAULT_CACHE_UNUSED_DAYS: u64 = 30;

/// `cache_unused_days` as a duration: None for 0 (never prune).
pub fn cache_unused(days: u64) -> Option<std::time::Duration> {
    (days > 0).then(|| std::time::Duration::from_secs(days * 86400))
}
/// Open outbound connections per group (a policy's `[limits]` may lower it).
pub const DEFAULT_MAX_CONNECTIONS: usize = 100;
/// Seconds an outbound connect may take.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;
/// Where Debian, Ubuntu and Alpine keep the system's CA bundle: guests that
/// may connect trust it unless `ca_file` names another.
pub const HOST_CA_FILES: [&str; 3] = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];

/// Instances per group: one per core.
pub fn default_instances() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, Problems> {
    let source = Source::read(path)?;
    let raw: RawConfig = source.parse()?;
    let base = path.parent().map(Path::to_owned).unwrap_or_default();
    validate(&source, &base, raw)
}

/// Validates the text of a config file as if read from `path`.
pub fn from_text(path: &Path, text: &str) -> Result<Config, Problems> {
    let source = Source { path: path.to_owned(), text: text.to_owned() };
    let raw: RawConfig = source.parse()?;
    let base = path.parent().map(Path::to_owned).unwrap_or_default();
    validate(&source, &base, raw)
}

/// Normalises a mount: "" or "/" is the root (""), otherwise "/a/b".
pub(crate) fn normalise_mount(mount: &str) -> Option<String> {
    if mount.is_empty() || mount == "/" {
        return Some(String::new());
    }
    if !mount.starts_with('/') || mount.contains("//") || mount.split('/').any(|s| s == ".." || s == ".") {
        return None;
    }
    Some(mount.trim_end_matches('/').to_owned())
}

/// Checks a host pattern: a name, `*.name` or `*`.
pub(crate) fn normalise_host(host: &str) -> Option<String> {
    let host = host.trim().to_ascii_lowercase();
    let name = host.strip_prefix("*.").unwrap_or(&host);
    let valid = host == "*"
        || (!name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }));
    valid.then_some(host)
}

fn validate(source: &Source, base: &Path, raw: RawConfig) -> Result<Config, Problems> {
    let mut problems = Vec::new();
    let absolute = |value: &Spanned<String>, key: &str, problems: &mut Vec<Problem>| -> Option<PathBuf> {
        let path = PathBuf::from(value.get_ref());
        if path.is_absolute() {
            Some(path)
        } else {
            problems.push(source.problem(&value.span(), key, format!("{:?} is not an absolute path", value.get_ref())));
            None
        }
    };

    let policies = match &raw.policies {
        Some(p) => base.join(p.get_ref()),
        None => base.join("policies"),
    };

    let mut listen = Vec::new();
    for (i, l) in raw.listen.iter().enumerate() {
        let socket_mode = l.mode.as_ref().and_then(|m| match crate::spec::listen::parse_socket_mode(m.get_ref()) {
            Ok(mode) => Some(mode),
            Err(e) => {
                problems.push(source.problem(&m.span(), format!("listen[{i}].mode"), e));
                None
            }
        });
        let tls = match (&l.tls_cert, &l.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let mut file = |value: &Spanned<String>, key: &str| {
                    let path = base.join(value.get_ref());
                    if let Err(e) = std::fs::File::open(&path) {
                        problems.push(source.problem(&value.span(), format!("listen[{i}].{key}"), format!("cannot read {}: {e}", path.display())));
                    }
                    path
                };
                Some(crate::spec::listen::TlsFiles { cert: file(cert, "tls_cert"), key: file(key, "tls_key") })
            }
            (Some(one), None) | (None, Some(one)) => {
                problems.push(source.problem(&one.span(), format!("listen[{i}]"), "tls_cert and tls_key go together: a TLS listener needs both"));
                None
            }
        };
        match l.address.get_ref().parse::<ListenAddr>() {
            Ok(addr) => {
                if socket_mode.is_some() && !matches!(addr, ListenAddr::Unix(_)) {
                    problems.push(source.problem(&l.address.span(), format!("listen[{i}].mode"), "only a unix: listener has a file mode"));
                }
                listen.push(Listen { addr, socket_mode, tls })
            }
            Err(e) => problems.push(source.problem(&l.address.span(), format!("listen[{i}].address"), e)),
        }
    }
    if listen.is_empty() {
        listen.push(Listen::new(DEFAULT_LISTEN.parse().expect("a valid default")));
    }
    let admin = raw.admin.as_ref().and_then(|a| match a.get_ref().parse::<ListenAddr>() {
        Ok(addr) => {
            let port_zero = matches!(addr, ListenAddr::Tcp(a) if a.port() == 0);
            if !port_zero && listen.iter().any(|l| l.addr == addr) {
                problems.push(source.problem(&a.span(), "admin", "the admin listener needs an address of its own, not one of [[listen]]'s"));
            }
            Some(addr)
        }
        Err(e) => {
            problems.push(source.problem(&a.span(), "admin", e));
            None
        }
    });
    let mut logging = Logging::default();
    if let Some(v) = &raw.access_log {
        match v.get_ref().parse() {
            Ok(crate::spec::logging::AccessLogTarget::File(path)) => logging.access_log = crate::spec::logging::AccessLogTarget::File(base.join(path)),
            Ok(target) => logging.access_log = target,
            Err(e) => problems.push(source.problem(&v.span(), "access_log", e)),
        }
    }
    if let Some(v) = &raw.access_log_format {
        match v.get_ref().parse() {
            Ok(format) => logging.access_format = format,
            Err(e) => problems.push(source.problem(&v.span(), "access_log_format", e)),
        }
    }
    if let Some(v) = &raw.log_format {
        match v.get_ref().parse() {
            Ok(format) => logging.format = format,
            Err(e) => problems.push(source.problem(&v.span(), "log_format", e)),
        }
    }

    // A number of seconds, 0 allowed; a negative one is a problem and keeps the default.
    let seconds = |v: &Spanned<i64>, key: &str, problems: &mut Vec<Problem>| match u64::try_from(*v.get_ref()) {
        Ok(n) => Some(std::time::Duration::from_secs(n)),
        Err(_) => {
            problems.push(source.problem(&v.span(), key, format!("must be 0 or more seconds, not {}", v.get_ref())));
            None
        }
    };
    let graceful_timeout = raw
        .graceful_timeout
        .as_ref()
        .and_then(|v| seconds(v, "graceful_timeout", &mut problems))
        .unwrap_or(std::time::Duration::from_secs(DEFAULT_GRACEFUL_TIMEOUT_SECS));
    let cache_unused = match &raw.cache_unused_days {
        None => cache_unused(DEFAULT_CACHE_UNUSED_DAYS),
        Some(v) => match u64::try_from(*v.get_ref()) {
            Ok(days) => cache_unused(days),
            Err(_) => {
                problems.push(source.problem(&v.span(), "cache_unused_days", format!("must be a number of days (0: never prune), not {}", v.get_ref())));
                None
            }
        },
    };
    let mut trusted_proxies = TrustedProxies::default();
    for (i, entry) in raw.trusted_proxies.iter().enumerate() {
        if let Err(e) = trusted_proxies.add(entry.get_ref()) {
            problems.push(source.problem(&entry.span(), format!("trusted_proxies[{i}]"), e));
        }
    }
    if let Some(names) = &raw.trusted_proxy_headers {
        let mut headers = crate::spec::proxies::ProxyHeaders::none();
        for (i, name) in names.get_ref().iter().enumerate() {
            if let Err(e) = headers.add(name.get_ref()) {
                problems.push(source.problem(&name.span(), format!("trusted_proxy_headers[{i}]"), e));
            }
        }
        trusted_proxies.headers = headers;
    }
    let mut http = HttpLimits::default();
    if let Some(h) = &raw.http {
        let mut at_least_1 = |v: &Option<Spanned<i64>>, key: &str| -> Option<u64> {
            let v = v.as_ref()?;
            if *v.get_ref() >= 1 {
                Some(*v.get_ref() as u64)
            } else {
                problems.push(source.problem(&v.span(), format!("http.{key}"), format!("must be at least 1, not {}", v.get_ref())));
                None
            }
        };
        if let Some(n) = at_least_1(&h.max_header_bytes, "max_header_bytes") {
            http.max_header_bytes = n as usize;
        }
        if let Some(n) = at_least_1(&h.max_headers, "max_headers") {
            http.max_headers = n as usize;
        }
        if let Some(n) = at_least_1(&h.max_body_bytes, "max_body_bytes") {
            http.max_body_bytes = n;
        }
        if let Some(n) = at_least_1(&h.header_read_timeout, "header_read_timeout") {
            http.header_read_timeout = std::time::Duration::from_secs(n);
        }
        if let Some(n) = at_least_1(&h.body_read_timeout, "body_read_timeout") {
            http.body_read_timeout = std::time::Duration::from_secs(n);
        }
        if let Some(n) = at_least_1(&h.body_write_timeout, "body_write_timeout") {
            http.body_write_timeout = std::time::Duration::from_secs(n);
        }
        if let Some(n) = at_least_1(&h.max_connections, "max_connections") {
            http.max_connections = n as usize;
        }
        if let Some(n) = at_least_1(&h.listen_backlog, "listen_backlog") {
            http.listen_backlog = n.min(u32::MAX as u64) as u32;
        }
        if let Some(delay) = h.shutdown_delay.as_ref().and_then(|v| seconds(v, "http.shutdown_delay", &mut problems)) {
            http.shutdown_delay = delay;
        }
    }

    let mut groups = Vec::new();
    let mut group_names: HashMap<String, usize> = HashMap::new();
    for g in &raw.group {
        let name = g.name.get_ref().clone();
        let line = source.line_of(&g.name.span());
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            problems.push(source.problem(&g.name.span(), "group.name", format!("{name:?}: use letters, digits, '-', '_' and '.'")));
        }
        if let Some(first) = group_names.insert(name.clone(), line) {
            problems.push(source.problem(&g.name.span(), "group.name", format!("group {name:?} is already defined on line {first}")));
        }
        let positive = |v: &Option<Spanned<i64>>, key: &str, default: usize, problems: &mut Vec<Problem>| match v {
            None => default,
            Some(v) if *v.get_ref() >= 1 => *v.get_ref() as usize,
            Some(v) => {
                problems.push(source.problem(&v.span(), format!("group {name:?}: {key}"), format!("must be at least 1, not {}", v.get_ref())));
                default
            }
        };
        let instances = positive(&g.instances, "instances", default_instances(), &mut problems);
        let memory_limit = positive(&g.memory_limit, "memory_limit", DEFAULT_MEMORY_LIMIT_MIB, &mut problems);
        let max_queue = positive(&g.max_queue, "max_queue", DEFAULT_MAX_QUEUE, &mut problems);
        // Seconds (or a count); 0 turns the limit off.
        let off_or_more = |v: &Option<Spanned<i64>>, key: &str, default: Option<u64>, problems: &mut Vec<Problem>| match v {
            None => default,
            Some(v) if *v.get_ref() == 0 => None,
            Some(v) if *v.get_ref() > 0 => Some(*v.get_ref() as u64),
            Some(v) => {
                problems.push(source.problem(&v.span(), format!("group {name:?}: {key}"), format!("must be 0 (off) or more, not {}", v.get_ref())));
                default
            }
        };
        let defaults = Limits::default();
        let secs = |d: Option<std::time::Duration>| d.map(|d| d.as_secs());
        let limits = Limits {
            request_timeout: off_or_more(&g.request_timeout, "request_timeout", secs(defaults.request_timeout), &mut problems).map(std::time::Duration::from_secs),
            startup_timeout: off_or_more(&g.startup_timeout, "startup_timeout", secs(defaults.startup_timeout), &mut problems).map(std::time::Duration::from_secs),
            queue_timeout: off_or_more(&g.queue_timeout, "queue_timeout", secs(defaults.queue_timeout), &mut problems).map(std::time::Duration::from_secs),
            maximum_requests: off_or_more(&g.maximum_requests, "maximum_requests", defaults.maximum_requests, &mut problems),
            inactivity_timeout: off_or_more(&g.inactivity_timeout, "inactivity_timeout", secs(defaults.inactivity_timeout), &mut problems)
                .map(std::time::Duration::from_secs),
            cpu_time_limit: off_or_more(&g.cpu_time_limit, "cpu_time_limit", secs(defaults.cpu_time_limit), &mut problems)
                .map(std::time::Duration::from_secs),
        };
        let reload = match g.reload_on_change.as_ref().map(|v| (v, v.get_ref())) {
            None => Reload::Off,
            Some((_, toml::Value::Boolean(false))) => Reload::Off,
            Some((_, toml::Value::Boolean(true))) => Reload::Script,
            Some((_, toml::Value::String(s))) if s == "script" => Reload::Script,
            Some((_, toml::Value::String(s))) if s == "tree" => Reload::Tree,
            Some((v, other)) => {
                problems.push(source.problem(&v.span(), format!("group {name:?}: reload_on_change"), format!("{other}: use true, false, \"script\" or \"tree\"")));
                Reload::Off
            }
        };
        let isolation = match g.isolation.as_ref().map(|v| (v, v.get_ref().parse::<Isolation>())) {
            None => Isolation::default(),
            Some((_, Ok(isolation))) => isolation,
            Some((v, Err(why))) => {
                problems.push(source.problem(&v.span(), format!("group {name:?}: isolation"), why));
                Isolation::default()
            }
        };
        let warmup = g.warmup.as_ref().map(|v| v.get_ref().clone()).unwrap_or_default();
        if let Some(v) = &g.warmup {
            if let Some(Err(why)) = v.get_ref().iter().map(|p| crate::spec::limits::warmup_path(p)).find(Result::is_err) {
                problems.push(source.problem(&v.span(), format!("group {name:?}: warmup"), why));
            }
        }
        let python_path = g
            .python_path
            .iter()
            .filter_map(|p| absolute(p, &format!("group {name:?}: python_path"), &mut problems))
            .collect();
        let venv = g.venv.as_ref().and_then(|v| absolute(v, &format!("group {name:?}: venv"), &mut problems));
        let home = g.home.as_ref().and_then(|v| absolute(v, &format!("group {name:?}: home"), &mut problems));
        let env = g.env.iter().map(|(k, v)| (k.clone(), v.get_ref().clone())).collect();
        // The same names as --interpreter, through the same parser.
        let interpreter = g.interpreter.as_ref().and_then(|v| match v.get_ref().parse::<Choice>() {
            Ok(choice) => Some(choice),
            Err(e) => {
                problems.push(source.problem(&v.span(), format!("group {name:?}: interpreter"), e));
                None
            }
        });
        let hostname = g.hostname.as_ref().and_then(|v| match valid_hostname(v.get_ref()) {
            Ok(()) => Some(v.get_ref().clone()),
            Err(why) => {
                problems.push(source.problem(&v.span(), format!("group {name:?}: hostname"), why));
                None
            }
        });
        let max_connections = match &g.max_connections {
            None => DEFAULT_MAX_CONNECTIONS,
            Some(v) if *v.get_ref() >= 0 => *v.get_ref() as usize,
            Some(v) => {
                problems.push(source.problem(&v.span(), format!("group {name:?}: max_connections"), format!("must be 0 (no connections) or more, not {}", v.get_ref())));
                DEFAULT_MAX_CONNECTIONS
            }
        };
        let connect_timeout = std::time::Duration::from_secs(positive(&g.connect_timeout, "connect_timeout", DEFAULT_CONNECT_TIMEOUT_SECS as usize, &mut problems) as u64);
        let ca_file = g.ca_file.as_ref().and_then(|v| absolute(v, &format!("group {name:?}: ca_file"), &mut problems));
        if let (Some(file), Some(v)) = (&ca_file, &g.ca_file) {
            if !file.is_file() {
                problems.push(source.problem(&v.span(), format!("group {name:?}: ca_file"), format!("{} is not a file", file.display())));
            }
        }
        groups.push(GroupConfig {
            name,
            instances,
            user: g.user.as_ref().map(|u| u.get_ref().clone()),
            group: g.group.as_ref().map(|u| u.get_ref().clone()),
            python_path,
            venv,
            home,
            env,
            memory_limit,
            max_queue,
            limits,
            reload,
            restrict_stdout: g.restrict_stdout.as_ref().is_some_and(|v| *v.get_ref()),
            follow_symlinks: g.follow_symlinks.as_ref().is_some_and(|v| *v.get_ref()),
            snapshot: g.snapshot.as_ref().is_some_and(|v| *v.get_ref()) || isolation == Isolation::Request,
            isolation,
            warmup,
            interpreter,
            hostname,
            flag_grants: Vec::new(),
            flag_connect: Vec::new(),
            max_connections,
            connect_timeout,
            ca_file,
            line,
            user_line: g.user.as_ref().map_or(line, |u| source.line_of(&u.span())),
            group_line: g.group.as_ref().map_or(line, |u| source.line_of(&u.span())),
        });
    }

    let mut apps = Vec::new();
    let mut routes: HashMap<(String, String), usize> = HashMap::new();
    for a in &raw.app {
        let line = source.line_of(&a.script.span());
        let mut hosts = Vec::new();
        if let Some(h) = &a.host {
            let names: Vec<&toml::Value> = match h.get_ref() {
                toml::Value::Array(items) => items.iter().collect(),
                one => vec![one],
            };
            for name in names {
                match name.as_str().and_then(normalise_host) {
                    Some(host) => hosts.push(host),
                    None => problems.push(source.problem(&h.span(), "app.host", format!("{name} is not a host name, `*.domain` or `*`"))),
                }
            }
        }
        if hosts.is_empty() {
            hosts.push("*".into());
        }
        let mount = match &a.mount {
            None => String::new(),
            Some(m) => normalise_mount(m.get_ref()).unwrap_or_else(|| {
                problems.push(source.problem(&m.span(), "app.mount", format!("{:?} must be \"/\" or an absolute path like \"/blog\"", m.get_ref())));
                String::new()
            }),
        };
        let script = absolute(&a.script, "app.script", &mut problems).unwrap_or_default();
        if !group_names.contains_key(a.group.get_ref()) {
            let known: Vec<&str> = raw.group.iter().map(|g| g.name.get_ref().as_str()).collect();
            problems.push(source.problem(
                &a.group.span(),
                "app.group",
                format!("no group named {:?} (defined: {})", a.group.get_ref(), if known.is_empty() { "none".into() } else { known.join(", ") }),
            ));
        }
        for host in &hosts {
            if let Some(first) = routes.insert((host.clone(), mount.clone()), line) {
                problems.push(source.problem(
                    &a.script.span(),
                    "app",
                    format!("host {host:?} mount {:?} is already served by the app on line {first}", if mount.is_empty() { "/" } else { &mount }),
                ));
            }
        }
        let mut access = Access::default();
        for (key, entries, deny) in [("app.allow", &a.allow, false), ("app.deny", &a.deny, true)] {
            for entry in entries {
                if let Err(e) = access.add(entry.get_ref(), deny) {
                    problems.push(source.problem(&entry.span(), key, e));
                }
            }
        }
        let mut static_dirs = Vec::new();
        for (url, dir) in &a.static_dirs {
            let key = format!("app.static.{url:?}");
            match normalise_mount(url) {
                Some(url) if !url.is_empty() => {
                    if let Some(dir) = absolute(dir, &key, &mut problems) {
                        static_dirs.push((url, dir));
                    }
                }
                _ => problems.push(source.problem(&dir.span(), key, format!("{url:?} must be a path below \"/\", like \"/static\""))),
            }
        }
        apps.push(AppConfig {
            hosts,
            mount,
            script,
            callable: a.callable.as_ref().map(|c| c.get_ref().clone()).unwrap_or_else(|| DEFAULT_CALLABLE.into()),
            group: a.group.get_ref().clone(),
            access,
            pass_authorization: a.pass_authorization.as_ref().is_some_and(|p| *p.get_ref()),
            static_dirs,
            line,
        });
    }
    if apps.is_empty() {
        problems.push(Problem { file: source.path.clone(), line: 1, key: "app".into(), message: "no [[app]] is defined: nothing to serve".into() });
    }

    if problems.is_empty() {
        Ok(Config { input: Input::File, file: source.path.clone(), policies, listen, groups, apps, http, graceful_timeout, trusted_proxies, logging, admin, cache_unused })
    } else {
        Err(Problems(problems))
    }
}

/// A host name as RFC 1123 allows it: dot-separated labels of letters,
/// digits and '-', each 1 to 63 characters, 253 in all.
fn valid_hostname(name: &str) -> Result<(), String> {
    let label_ok = |l: &str| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-') && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if name.len() <= 253 && name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!("{name:?}: use a host name such as \"web1\" or \"web1.example.com\" (letters, digits and '-', labels separated by '.')"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Config, Problems> {
        let source = Source { path: "wasgi.toml".into(), text: text.into() };
        let raw: RawConfig = source.parse()?;
        validate(&source, Path::new("/etc/wasgi"), raw)
    }

    fn errors(text: &str) -> String {
        check(text).err().expect("problems").to_string()
    }

    const GOOD: &str = r#"
[[listen]]
address = "127.0.0.1:8000"

[[group]]
name = "alice"
instances = 2
user = "alice"

[[app]]
host = ["Alice.Example", "*.alice.example"]
mount = "/blog/"
script = "/srv/alice/app.wsgi"
group = "alice"
"#;

    #[test]
    fn a_good_file_validates() {
        let config = check(GOOD).unwrap();
        assert_eq!(config.groups[0].instances, 2);
        assert_eq!(config.apps[0].hosts, vec!["alice.example", "*.alice.example"]);
        assert_eq!(config.apps[0].mount, "/blog");
        assert_eq!(config.policies, Path::new("/etc/wasgi/policies"));
        assert!(config.apps[0].static_dirs.is_empty());
        assert!(!config.apps[0].pass_authorization, "hidden by default, as under mod_wsgi");
        let config = check(&format!("{GOOD}pass_authorization = true\n")).unwrap();
        assert!(config.apps[0].pass_authorization, "WSGIPassAuthorization On");
    }

    #[test]
    fn static_directories_for_apache() {
        let text = GOOD.replace("group = \"alice\"\n", "group = \"alice\"\nstatic = { \"/static/\" = \"/srv/alice/static\", \"/media\" = \"/srv/alice/media\" }\n");
        let config = check(&text).unwrap();
        assert_eq!(
            config.apps[0].static_dirs,
            vec![("/media".to_owned(), PathBuf::from("/srv/alice/media")), ("/static".to_owned(), PathBuf::from("/srv/alice/static"))]
        );
        let text = GOOD.replace("group = \"alice\"\n", "group = \"alice\"\nstatic = { \"/\" = \"/srv/alice/static\", \"/media\" = \"media\" }\n");
        let text = errors(&text);
        assert!(text.contains("wasgi.toml:15: app.static.\"/\": \"/\" must be a path below \"/\", like \"/static\""), "{text}");
        assert!(text.contains("wasgi.toml:15: app.static.\"/media\": \"media\" is not an absolute path"), "{text}");
    }

    #[test]
    fn cache_unused_days_defaults_to_a_month_and_zero_is_never() {
        let day = std::time::Duration::from_secs(86400);
        assert_eq!(check(GOOD).unwrap().cache_unused, Some(30 * day));
        assert_eq!(check(&format!("cache_unused_days = 7\n{GOOD}")).unwrap().cache_unused, Some(7 * day));
        assert_eq!(check(&format!("cache_unused_days = 0\n{GOOD}")).unwrap().cache_unused, None);
        let text = errors(&format!("cache_unused_days = -1\n{GOOD}"));
        assert!(text.contains("wasgi.toml:1: cache_unused_days: must be a number of days (0: never prune), not -1"), "{text}");
    }

    #[test]
    fn logs_admin_and_tls_keys_are_checked() {
        let config = check(&format!("admin = \"127.0.0.1:9000\"\naccess_log = \"logs/access.log\"\naccess_log_format = \"%h %L\"\nlog_format = \"json\"\n{GOOD}")).unwrap();
        assert_eq!(config.admin, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(config.logging.access_log, crate::spec::logging::AccessLogTarget::File("/etc/wasgi/logs/access.log".into()), "relative to the file");
        assert_eq!(config.logging.format, crate::spec::logging::LogFormat::Json);
        let defaults = check(GOOD).unwrap();
        assert_eq!((defaults.admin, defaults.logging), (None, crate::spec::logging::Logging::default()));

        let text = errors(&format!("admin = \"127.0.0.1:8000\"\naccess_log_format = \"%h %Q\"\nlog_format = \"xml\"\n{GOOD}"));
        assert!(text.contains("wasgi.toml:1: admin: the admin listener needs an address of its own"), "{text}");
        assert!(text.contains("wasgi.toml:2: access_log_format: %Q is not a directive wasgi knows"), "{text}");
        assert!(text.contains("wasgi.toml:3: log_format: \"xml\" is not a log format: text or json"), "{text}");

        let text = errors(&GOOD.replace("address = \"127.0.0.1:8000\"", "address = \"127.0.0.1:8443\"\ntls_cert = \"/nonexistent/cert.pem\""));
        assert!(text.contains("wasgi.toml:4: listen[0]: tls_cert and tls_key go together"), "{text}");
        let text = errors(&GOOD.replace("address = \"127.0.0.1:8000\"", "address = \"127.0.0.1:8443\"\ntls_cert = \"/nonexistent/cert.pem\"\ntls_key = \"/nonexistent/key.pem\""));
        assert!(text.contains("wasgi.toml:4: listen[0].tls_cert: cannot read /nonexistent/cert.pem: No such file"), "{text}");
        assert!(text.contains("wasgi.toml:5: listen[0].tls_key: cannot read /nonexistent/key.pem"), "{text}");
    }

    #[test]
    fn unknown_keys_name_their_line() {
        let text = GOOD.replace("instances = 2", "instances = 2\nprocesses = 3");
        assert_eq!(errors(&text).lines().next().unwrap().split(": ").take(2).collect::<Vec<_>>(), ["wasgi.toml:8", "(unknown key)"]);
        assert!(errors(&text).contains("processes"), "{}", errors(&text));
    }

    #[test]
    fn wrong_types_name_their_line() {
        let text = GOOD.replace("instances = 2", "instances = \"two\"");
        assert!(errors(&text).starts_with("wasgi.toml:7: (wrong type): invalid type"), "{}", errors(&text));
    }

    #[test]
    fn every_validation_problem_is_reported_with_file_line_and_key() {
        let text = format!(
            "{GOOD}\n[[group]]\nname = \"alice\"\ninstances = 0\n\n[[app]]\nhost = \"alice.example\"\nmount = \"/blog\"\nscript = \"relative.wsgi\"\ngroup = \"bob\"\n"
        );
        let text = errors(&text);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.contains(&"wasgi.toml:17: group.name: group \"alice\" is already defined on line 6"), "{text}");
        assert!(lines.contains(&"wasgi.toml:18: group \"alice\": instances: must be at least 1, not 0"), "{text}");
        assert!(lines.contains(&"wasgi.toml:23: app.script: \"relative.wsgi\" is not an absolute path"), "{text}");
        assert!(lines.contains(&"wasgi.toml:24: app.group: no group named \"bob\" (defined: alice, alice)"), "{text}");
        assert!(
            lines.contains(&"wasgi.toml:23: app: host \"alice.example\" mount \"/blog\" is already served by the app on line 13"),
            "{text}"
        );
    }

    #[test]
    fn a_group_names_its_interpreter_with_the_flags_names() {
        let config = check(&GOOD.replace("instances = 2", "instances = 2\ninterpreter = \"cpython-3.13\"")).unwrap();
        assert_eq!(config.groups[0].interpreter, Some(Choice::Cpython313));
        let config = check(&GOOD.replace("instances = 2", "instances = 2\ninterpreter = \"cpython-3.12\"")).unwrap();
        assert_eq!(config.groups[0].interpreter, Some(Choice::Pinned));
        assert_eq!(check(GOOD).unwrap().groups[0].interpreter, None, "no key: the process's default");
        let text = errors(&GOOD.replace("instances = 2", "instances = 2\ninterpreter = \"cpython-3.14\""));
        assert_eq!(
            text,
            "wasgi.toml:8: group \"alice\": interpreter: \"cpython-3.14\" is not an interpreter wasgi knows: \
             use cpython-3.13 (built here, the default) or cpython-3.12 (the pinned prebuilt 3.12.0)"
        );
    }

    #[test]
    fn bad_addresses_mounts_and_hosts_are_refused() {
        let text = GOOD.replace("127.0.0.1:8000", "nowhere").replace("mount = \"/blog/\"", "mount = \"blog\"").replace("*.alice.example", "a b");
        let text = errors(&text);
        assert!(text.contains("wasgi.toml:3: listen[0].address"), "{text}");
        assert!(text.contains("wasgi.toml:12: app.mount"), "{text}");
        assert!(text.contains("wasgi.toml:11: app.host: \"a b\""), "{text}");
    }
}

/// Mutation fuzzing of this format (see `crate::fuzz`).
#[cfg(test)]
mod fuzz_target {
    use std::path::Path;

    use crate::fuzz::run;

    /// wasgi.toml, from the README's example and the tests' configs.
    #[test]
    fn fuzz_wasgi_toml() {
        let readme = include_str!("../../../README.md");
        let example = readme.split("```toml\n[[listen]]").nth(1).and_then(|s| s.split("```").next()).map(|s| format!("[[listen]]{s}")).unwrap();
        let small = "[[listen]]\naddress = \"127.0.0.1:0\"\n[http]\nmax_headers = 10\n[[group]]\nname = \"g\"\nwarmup = [\"/\"]\nreload_on_change = \"tree\"\n[[app]]\nscript = \"/srv/a/app.wsgi\"\ngroup = \"g\"\nhost = [\"*.a.example\"]\nmount = \"/x\"\nallow = [\"10.1\"]\n";
        run("wasgi-toml", &[example.as_bytes(), small.as_bytes()], |input| {
            let _ = crate::config::from_text(Path::new("/nonexistent/wasgi.toml"), &String::from_utf8_lossy(input));
        });
    }
}
