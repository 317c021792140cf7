//! Where connections come from: bound listeners (TCP and Unix sockets, or
//! sockets handed over by systemd), their accept loops, and for a TLS
//! listener the handshake, done on the connection's own task so a slow
//! client never holds up the others.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;

use crate::http::environ::Connection;
use crate::http::framing::{Verdicts, WatchedIo};
use crate::http::tls::CertStore;
use crate::spec::listen::{Listen, ListenAddr};

/// This module's log target: the server's, as before the module was split.
const LOG_TARGET: &str = "wasgi::server";

/// The socket a listener accepts on.
enum Socket {
    Tcp(TcpListener),
    /// With the path to remove when the listener closes (None: a socket
    /// systemd made, whose file is systemd's).
    Unix(UnixListener, Option<PathBuf>),
}

/// A bound listener, and its TLS certificate store if it speaks TLS.
pub struct Listener {
    socket: Socket,
    tls: Option<(Arc<CertStore>, tokio_rustls::TlsAcceptor)>,
    /// As configured (for the address clients use, and its TLS files).
    pub listen: Listen,
}

impl Listener {
    /// Binds `listen`; TCP listeners get a listen queue of `backlog`
    /// connections. A TLS listener reads its certificate and key first.
    pub async fn bind(listen: &Listen, backlog: u32) -> Result<Listener> {
        let tls = tls_for(listen)?;
        let socket = match &listen.addr {
            ListenAddr::Tcp(a) => {
                let bind = || -> std::io::Result<TcpListener> {
                    let socket = if a.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
                    socket.set_reuseaddr(true)?;
                    socket.bind(*a)?;
                    socket.listen(backlog)
                };
                Socket::Tcp(bind().with_context(|| format!("cannot listen on {a}"))?)
            }
            ListenAddr::Unix(path) => {
                remove_stale_socket(path)?;
                let l = UnixListener::bind(path).with_context(|| format!("cannot listen on unix:{}", path.display()))?;
                // tokio listens with the system's maximum queue; listening
                // again on a listening socket sets the queue we were asked for.
                use std::os::fd::AsRawFd;
                if unsafe { libc::listen(l.as_raw_fd(), backlog.min(i32::MAX as u32) as i32) } != 0 {
                    let e = std::io::Error::last_os_error();
                    bail!("cannot set the listen backlog of unix:{}: {e}", path.display());
                }
                let socket = Socket::Unix(l, Some(path.clone()));
                if let Some(mode) = listen.socket_mode {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                        .with_context(|| format!("cannot set mode {mode:o} on unix:{}", path.display()))?;
                }
                socket
            }
        };
        Ok(Listener { socket, tls, listen: listen.clone() })
    }

    /// A listening socket inherited from the process that started us
    /// (systemd's socket activation), serving as `listen` says; its address
    /// must be the one configured.
    pub fn inherit(fd: std::os::fd::OwnedFd, listen: &Listen) -> Result<Listener> {
        let tls = tls_for(listen)?;
        let socket = match &listen.addr {
            ListenAddr::Tcp(_) => {
                let std = std::net::TcpListener::from(fd);
                std.set_nonblocking(true)?;
                Socket::Tcp(TcpListener::from_std(std)?)
            }
            ListenAddr::Unix(_) => {
                let std = std::os::unix::net::UnixListener::from(fd);
                std.set_nonblocking(true)?;
                Socket::Unix(UnixListener::from_std(std)?, None)
            }
        };
        Ok(Listener { socket, tls, listen: listen.clone() })
    }

    /// The address actually bound (a TCP port 0 becomes the real port).
    pub fn local_addr(&self) -> ListenAddr {
        match &self.socket {
            Socket::Tcp(l) => ListenAddr::Tcp(l.local_addr().expect("a bound socket has an address")),
            Socket::Unix(l, path) => ListenAddr::Unix(
                path.clone().or_else(|| l.local_addr().ok()?.as_pathname().map(Into::into)).unwrap_or_default(),
            ),
        }
    }

    /// How a client reaches it: `http://`, `https://` or `unix:` and the address.
    pub fn url(&self) -> String {
        self.listen.url(&self.local_addr())
    }

    /// The certificate store SIGHUP reloads, for a TLS listener.
    pub fn cert_store(&self) -> Option<Arc<CertStore>> {
        self.tls.as_ref().map(|(store, _)| store.clone())
    }
}

fn tls_for(listen: &Listen) -> Result<Option<(Arc<CertStore>, tokio_rustls::TlsAcceptor)>> {
    let Some(files) = &listen.tls else { return Ok(None) };
    let store = CertStore::load(files).with_context(|| format!("cannot serve TLS on {}", listen.addr))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(store.server_config());
    Ok(Some((store, acceptor)))
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Socket::Unix(_, Some(path)) = &self.socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A socket file left by a server that is gone is removed; one that still
/// answers is refused, so two servers never share a path by accident.
fn remove_stale_socket(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    if !meta.file_type().is_socket() {
        bail!("cannot listen on unix:{}: the path exists and is not a socket", path.display());
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!("cannot listen on unix:{}: another server is listening there", path.display());
    }
    std::fs::remove_file(path).with_context(|| format!("cannot remove the stale socket {}", path.display()))
}

pub trait IoStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> IoStream for T {}

/// An accepted connection and its place under max_connections.
pub type Accepted = (Box<dyn IoStream>, Connection, tokio::sync::OwnedSemaphorePermit);

/// What an accept loop needs besides its listener.
#[derive(Clone)]
pub struct AcceptSettings {
    /// A response write that makes no progress this long counts as stalled.
    pub write_timeout: Duration,
    /// How long a TLS handshake may take (the server's header_read_timeout).
    pub handshake_timeout: Duration,
}

/// The connection's stream with the framing watcher on the bytes of HTTP
/// (inside TLS, so the watcher reads the requests, not the records).
fn watched<S: IoStream>(stream: S, mut conn: Connection, write_timeout: Duration) -> (Box<dyn IoStream>, Connection) {
    let (verdicts, stalled) = (Verdicts::default(), Arc::new(AtomicBool::new(false)));
    conn.ambiguous = Some(verdicts.clone());
    conn.write_stalled = stalled.clone();
    (Box::new(WatchedIo::new(stream, verdicts, write_timeout, stalled)), conn)
}

/// Accepts connections on `listener` and sends them on `conns`, each with
/// a place under max_connections (`slots`): past it, new clients wait in
/// the kernel's listen backlog.
pub async fn accept_loop(listener: Listener, conns: mpsc::Sender<Accepted>, slots: Arc<tokio::sync::Semaphore>, settings: AcceptSettings) {
    let scheme = if listener.tls.is_some() { "https" } else { "http" };
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let accepted: std::io::Result<(Box<dyn IoStream>, Connection)> = match &listener.socket {
            Socket::Tcp(l) => l.accept().await.map(|(stream, peer)| {
                let _ = stream.set_nodelay(true);
                // An IPv4 client of a dual-stack [::] socket (systemd's
                // ListenStream=80) is its IPv4 address, for access lists and logs.
                let canonical = |a: std::net::SocketAddr| std::net::SocketAddr::new(a.ip().to_canonical(), a.port());
                let local = stream.local_addr().ok().map(canonical);
                let conn = Connection { peer: Some(canonical(peer)), local, scheme, ambiguous: None, write_stalled: Default::default() };
                (Box::new(stream) as Box<dyn IoStream>, conn)
            }),
            Socket::Unix(l, _) => l.accept().await.map(|(stream, _)| {
                let conn = Connection { peer: None, local: None, scheme, ambiguous: None, write_stalled: Default::default() };
                (Box::new(stream) as Box<dyn IoStream>, conn)
            }),
        };
        let (stream, conn) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::error!(target: LOG_TARGET, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match &listener.tls {
            None => {
                let (io, conn) = watched(stream, conn, settings.write_timeout);
                if conns.send((io, conn, slot)).await.is_err() {
                    return;
                }
            }
            Some((_, acceptor)) => {
                let (acceptor, conns, settings) = (acceptor.clone(), conns.clone(), settings.clone());
                tokio::spawn(async move {
                    let peer = conn.peer.map_or_else(|| "a Unix-socket peer".to_owned(), |p| p.to_string());
                    match tokio::time::timeout(settings.handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let (io, conn) = watched(tls, conn, settings.write_timeout);
                            let _ = conns.send((io, conn, slot)).await;
                        }
                        // Scanners and plain-HTTP clients on a TLS port: worth a
                        // look when debugging, not a line per attempt.
                        Ok(Err(e)) => tracing::debug!(target: LOG_TARGET, "TLS handshake with {peer} failed: {e}"),
                        Err(_) => tracing::debug!(target: LOG_TARGET, "TLS handshake with {peer} took over {}s: closed", settings.handshake_timeout.as_secs()),
                    }
                });
            }
        }
    }
}
