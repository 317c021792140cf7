//! A group's lifecycle limits (mod_wsgi's daemon-process options), its
//! isolation and reload modes, warm-up paths, and the HTTP limits on what a
//! client may send: plain values read from a config or from flags.

use std::time::Duration;

/// A warm-up entry must be a path (with an optional query): what the bridge
/// puts in PATH_INFO and QUERY_STRING.
pub fn warmup_path(s: &str) -> Result<String, String> {
    if s.starts_with('/') {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?}: each entry is a path starting with /, such as \"/\" or \"/health?full=1\""))
    }
}

/// How often the bridge requests each warm-up path: the interpreter
/// specialises an instruction only after it ran more than once.
pub const WARMUP_ROUNDS: u32 = 4;

/// What one request may leave behind for the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Long-lived instances: module state lives across requests (mod_wsgi).
    #[default]
    Instance,
    /// A fresh instance per request, from the group's snapshot: nothing
    /// survives between requests.
    Request,
}

impl Isolation {
    /// The names a config file and `--isolation` use, as `Display` prints them.
    pub const NAMES: [&'static str; 2] = ["instance", "request"];
}

impl std::str::FromStr for Isolation {
    type Err = String;
    fn from_str(s: &str) -> Result<Isolation, String> {
        match s {
            "instance" => Ok(Isolation::Instance),
            "request" => Ok(Isolation::Request),
            other => Err(format!("{other:?}: use \"instance\" or \"request\"")),
        }
    }
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Isolation::Instance => "instance",
            Isolation::Request => "request",
        })
    }
}

/// mod_wsgi's WSGIScriptReloading, and more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    Off,
    /// The script file.
    Script,
    /// Any file under the script's directory.
    Tree,
}

/// The lifecycle limits of a group (mod_wsgi's daemon-process options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// A request running longer is interrupted: 504, the instance replaced.
    pub request_timeout: Option<Duration>,
    /// An instance still importing the app after this is abandoned.
    pub startup_timeout: Option<Duration>,
    /// A request waiting longer for a free instance gets 503 + Retry-After.
    pub queue_timeout: Option<Duration>,
    /// An instance is replaced after about this many requests (±10%).
    pub maximum_requests: Option<u64>,
    /// An instance idle this long is stopped; the group starts instances
    /// again when the next request arrives.
    pub inactivity_timeout: Option<Duration>,
    /// CPU time one request may use (wasm execution, not waiting).
    pub cpu_time_limit: Option<Duration>,
}

/// A limit as a flag shows it: seconds, 0 for none.
pub fn secs_or_off(limit: Option<Duration>) -> u64 {
    limit.map_or(0, |d| d.as_secs())
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_timeout: Some(Duration::from_secs(60)),
            startup_timeout: Some(Duration::from_secs(60)),
            queue_timeout: Some(Duration::from_secs(30)),
            maximum_requests: None,
            inactivity_timeout: None,
            cpu_time_limit: None,
        }
    }
}
/// Limits on what a client may send, checked before anything reaches an app.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// The request line and headers together (431 past it).
    pub max_header_bytes: usize,
    /// Header fields per request (431 past it).
    pub max_headers: usize,
    /// Request body (413 past it, before the app reads when Content-Length says so).
    pub max_body_bytes: u64,
    /// Time to receive a request's head, including an idle keep-alive wait (slowloris).
    pub header_read_timeout: Duration,
    /// Longest pause between two pieces of a request body.
    pub body_read_timeout: Duration,
    /// Longest time a response may make no progress to the client (a client
    /// that stops reading): past it the exchange ends as a disconnect, the
    /// instance is freed and the connection closed.
    pub body_write_timeout: Duration,
    /// Open connections; past it, new ones wait in the listen backlog.
    pub max_connections: usize,
    /// Connections the kernel queues for a listener before refusing more.
    pub listen_backlog: u32,
    /// After SIGTERM, how long the listeners keep serving while the readiness
    /// check answers 503, so a load balancer takes this server out before it
    /// stops accepting (closing at once races requests already on their way).
    pub shutdown_delay: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_body_bytes: 1 << 30,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            body_write_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            listen_backlog: 1024,
            shutdown_delay: Duration::ZERO,
        }
    }
}
