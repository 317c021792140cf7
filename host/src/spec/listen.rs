//! Where wasgi listens: TCP addresses and Unix sockets (with the socket
//! file's permission bits).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Where to listen: `HOST:PORT` or `unix:/path/to.sock`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::str::FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("a unix: address needs a path, as in unix:/run/wasgi.sock".into());
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        let addr = s.strip_prefix("http://").unwrap_or(s);
        use std::net::ToSocketAddrs;
        match addr.to_socket_addrs() {
            Ok(mut addrs) => addrs.next().map(ListenAddr::Tcp).ok_or_else(|| format!("{s} resolves to no address")),
            Err(_) => Err(format!("{s:?} is neither HOST:PORT nor unix:/path/to.sock")),
        }
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "http://{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A listener as configured: the address, for a Unix socket the
/// permission bits its file gets (so Apache's user can connect to it), and
/// the certificate and key if it speaks TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    pub addr: ListenAddr,
    /// For example 0o660; None keeps what the umask gives.
    pub socket_mode: Option<u32>,
    /// None: plain HTTP.
    pub tls: Option<TlsFiles>,
}

impl Listen {
    pub fn new(addr: ListenAddr) -> Listen {
        Listen { addr, socket_mode: None, tls: None }
    }

    /// The address as a client would write it: `https://` for a TLS listener.
    pub fn url(&self, bound: &ListenAddr) -> String {
        match (bound, &self.tls) {
            (ListenAddr::Tcp(a), Some(_)) => format!("https://{a}"),
            (ListenAddr::Unix(p), Some(_)) => format!("unix:{} (TLS)", p.display()),
            (addr, None) => addr.to_string(),
        }
    }
}

/// A TLS listener's PEM files: the certificate chain (the server's own
/// certificate first) and its private key. Read when the listener binds and
/// again on each SIGHUP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Parses permission bits written in octal ("660", "0660" or "0o660").
pub fn parse_socket_mode(text: &str) -> Result<u32, String> {
    let digits = text.trim_start_matches("0o");
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!("{text:?} is not permission bits in octal, as in \"0660\"")),
    }
}
