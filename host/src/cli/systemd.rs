//! Running under systemd: `Type=notify` readiness (READY=1 once every group
//! serves, RELOADING=1 around a SIGHUP, STOPPING=1 at shutdown, a STATUS=
//! line), the watchdog (WATCHDOG=1 from the runtime that serves, so a
//! wedged server is restarted), and socket activation: listening sockets
//! handed over by a `.socket` unit are served instead of binding, so a
//! restart loses no connection (they wait in the kernel's queue meanwhile).
//!
//! Outside systemd every call here does nothing.

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use anyhow::{bail, Result};
use sd_notify::NotifyState;

use crate::spec::listen::{Listen, ListenAddr};

/// What systemd handed over, read once at start (before any thread, as the
/// variables are removed from the environment).
pub struct Handover {
    /// Listening sockets from socket activation, with their addresses.
    sockets: Vec<(OwnedFd, ListenAddr)>,
    /// Half the watchdog interval, if systemd watches.
    pub watchdog: Option<Duration>,
}

impl Handover {
    /// Reads LISTEN_FDS/LISTEN_PID and WATCHDOG_USEC/WATCHDOG_PID.
    pub fn take() -> Result<Handover> {
        let mut sockets = Vec::new();
        for fd in sd_notify::listen_fds().map_err(|e| anyhow::anyhow!("socket activation: {e}"))? {
            // SAFETY: systemd passed these descriptors to this process for it to own.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            let addr = socket_addr(&owned).ok_or_else(|| anyhow::anyhow!("socket activation: descriptor {fd} is not a listening TCP or Unix socket"))?;
            sockets.push((owned, addr));
        }
        let mut usec = 0;
        let watchdog = sd_notify::watchdog_enabled(true, &mut usec).then(|| Duration::from_micros(usec / 2));
        Ok(Handover { sockets, watchdog })
    }

    /// The handed-over socket for `listen`, if there is one: the same
    /// address, or both a wildcard address on the same port (systemd's
    /// `ListenStream=8000` listens on `[::]:8000`, which `0.0.0.0:8000`
    /// matches). A wildcard socket never stands in for one address: that
    /// would serve on more interfaces than the configuration says.
    pub fn socket_for(&mut self, listen: &Listen) -> Option<OwnedFd> {
        let i = self.sockets.iter().position(|(_, addr)| same_listener(addr, &listen.addr))?;
        Some(self.sockets.remove(i).0)
    }

    /// After every listener took its socket: one that none took is an error
    /// (a .socket unit and wasgi's [[listen]] that disagree).
    pub fn check_all_taken(&self) -> Result<()> {
        if let Some((_, addr)) = self.sockets.first() {
            bail!("systemd handed over a socket on {addr} that no [[listen]] (or --listen) names: make the .socket unit's ListenStream= and wasgi's listeners the same");
        }
        Ok(())
    }
}

fn same_listener(inherited: &ListenAddr, configured: &ListenAddr) -> bool {
    match (inherited, configured) {
        (ListenAddr::Tcp(a), ListenAddr::Tcp(b)) => a == b || (a.port() == b.port() && a.ip().is_unspecified() && b.ip().is_unspecified()),
        (ListenAddr::Unix(a), ListenAddr::Unix(b)) => a == b,
        _ => false,
    }
}

/// A listening socket's address, or None for anything else.
fn socket_addr(fd: &OwnedFd) -> Option<ListenAddr> {
    if sockopt(fd, libc::SO_ACCEPTCONN)? == 0 {
        return None;
    }
    // Asked of a duplicate, which closes when dropped.
    let dup = fd.try_clone().ok()?;
    match sockopt(fd, libc::SO_DOMAIN)? {
        libc::AF_INET | libc::AF_INET6 => std::net::TcpListener::from(dup).local_addr().ok().map(ListenAddr::Tcp),
        libc::AF_UNIX => std::os::unix::net::UnixListener::from(dup).local_addr().ok()?.as_pathname().map(|p| ListenAddr::Unix(p.to_owned())),
        _ => None,
    }
}

fn sockopt(fd: &OwnedFd, name: libc::c_int) -> Option<libc::c_int> {
    use std::os::fd::AsRawFd;
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the int it is given.
    let ok = unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, name, (&mut value as *mut libc::c_int).cast(), &mut len) } == 0;
    ok.then_some(value)
}

/// READY=1 and a status line.
pub fn ready(status: &str) {
    let _ = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(status)]);
}

/// RELOADING=1 with the monotonic time systemd asks for (Type=notify-reload).
pub fn reloading() {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let usec = i128::from(now.tv_sec) * 1_000_000 + i128::from(now.tv_nsec) / 1000;
    let _ = sd_notify::notify(false, &[NotifyState::Reloading, NotifyState::MonotonicUsec(usec), NotifyState::Status("reloading")]);
}

pub fn stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping, NotifyState::Status("draining requests in flight")]);
}

/// Pings the watchdog every `every` from the runtime that serves requests:
/// a runtime that stops making progress stops the pings, and systemd
/// restarts the service.
pub async fn watchdog(every: Duration) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(100)));
    loop {
        ticks.tick().await;
        let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
    }
}
