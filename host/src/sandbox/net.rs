//! Outbound connections, made by the host for a guest (issue 17).
//!
//! WASI preview 1 has no `connect`, and a guest must not have one: every
//! connection is made here, on the runtime, after the group's `[[connect]]`
//! grants ([`crate::spec::connect`]) allowed it. The guest's `socket` module
//! (guest/bridge/netsock.py) holds only handles into this instance's table
//! of connections; `_wasgi`'s `net_*` functions (python-wasm/wasgi/_wasgimodule.c)
//! are the imports of [`crate::sandbox::abi::NET_CALLS`].
//!
//! - Names: only a name some grant names is looked up, and the addresses it
//!   resolved to are remembered for this instance (the latest answer only),
//!   so a later connect to one of them is checked against that name's grant.
//!   Link-local and metadata addresses are never reached through a name.
//! - Every connection counts against the group's `max_connections`, and
//!   closes when the guest closes it or its instance ends (under
//!   `isolation = "request"`, when the request does): nothing outlives the
//!   store that owns the table.
//! - No call blocks a thread: waiting for a connect, for data or for room is
//!   a parked future, like the frame calls (and the request's deadline still
//!   ends it).
//! - A refusal is `EACCES` in the guest and a log line that names the address
//!   (and the name asked for), the group, its policies and the `[[connect]]`
//!   line that would allow it.
//!
//! Results are WASI errno values, negated ([`Errno`]), which wasi-libc's
//! `E*` constants equal, so the guest raises the usual OSError subclasses.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use wasmtime::{Caller, Linker};

use crate::sandbox::abi::{guest_bytes, memory, MemorySlot, MODULE, NET_CLOSE, NET_CONNECT, NET_NAME, NET_POLL, NET_RECV, NET_RESOLVE, NET_SEND};
use crate::sandbox::stdio::LogTag;
use crate::spec::connect::{canonical, guarded, ConnectRule, NetCounters, Network};
use crate::spec::guest::RUN_FLAGS_POLICY;

const LOG_TARGET: &str = "wasgi::net";

/// WASI errno values (wasi-libc's `E*` constants), as the calls return them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Errno {
    Acces = 2,
    AddrNotAvail = 4,
    Again = 6,
    BadF = 8,
    ConnAborted = 13,
    ConnRefused = 14,
    ConnReset = 15,
    HostUnreach = 23,
    InProgress = 26,
    Inval = 28,
    Io = 29,
    MFile = 33,
    NetDown = 38,
    NetUnreach = 40,
    NoEnt = 44,
    NotConn = 53,
    Pipe = 64,
    TimedOut = 73,
}

impl Errno {
    /// The host's error as the guest should see it.
    fn of(e: &io::Error) -> Errno {
        match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => return Errno::ConnRefused,
            Some(libc::ECONNRESET) => return Errno::ConnReset,
            Some(libc::ECONNABORTED) => return Errno::ConnAborted,
            Some(libc::ETIMEDOUT) => return Errno::TimedOut,
            Some(libc::EHOSTUNREACH) => return Errno::HostUnreach,
            Some(libc::ENETUNREACH) => return Errno::NetUnreach,
            Some(libc::ENETDOWN) => return Errno::NetDown,
            Some(libc::EPIPE) => return Errno::Pipe,
            Some(libc::ENOENT) => return Errno::NoEnt,
            Some(libc::EACCES) => return Errno::Acces,
            Some(libc::EADDRNOTAVAIL) => return Errno::AddrNotAvail,
            Some(libc::ENOTCONN) => return Errno::NotConn,
            _ => {}
        }
        match e.kind() {
            io::ErrorKind::ConnectionRefused => Errno::ConnRefused,
            io::ErrorKind::ConnectionReset => Errno::ConnReset,
            io::ErrorKind::ConnectionAborted => Errno::ConnAborted,
            io::ErrorKind::TimedOut => Errno::TimedOut,
            io::ErrorKind::BrokenPipe => Errno::Pipe,
            io::ErrorKind::NotFound => Errno::NoEnt,
            io::ErrorKind::PermissionDenied => Errno::Acces,
            io::ErrorKind::WouldBlock => Errno::Again,
            _ => Errno::Io,
        }
    }

    /// As a call's result.
    fn ret(self) -> i32 {
        -(self as i32)
    }
}

/// The poll bits of [`NET_POLL`].
const READABLE: u16 = 1;
const WRITABLE: u16 = 2;
const ERROR: u16 = 4;
const HANGUP: u16 = 8;
const NO_HANDLE: u16 = 16;
/// `net_recv`'s peek flag.
const PEEK: u32 = 1;
/// What one call moves at most (a guest asking for more gets less, as from a socket).
const MAX_IO: usize = 256 * 1024;
/// A read takes up to this much from the connection at once (the rest of
/// what the guest did not ask for waits in `Conn::ahead`), so a small read
/// or a peek costs one host call, not one per fragment.
const READ_AHEAD: usize = 64 * 1024;
/// Entries one `net_poll` may name.
const MAX_POLL: usize = 4096;
/// Refusals logged per instance; past them, counted only.
const MAX_DENIALS_LOGGED: usize = 50;

/// A connected stream, TCP or Unix.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<Stream>> + Send>>;

enum State {
    Connecting(Connecting),
    Open(Stream),
    /// The connect failed; the guest learns why at its next use.
    Failed(Errno),
}

/// One of the guest's connections.
struct Conn {
    state: State,
    /// What the guest asked for, for names and messages: `ip port` or `unix:/path`.
    peer: String,
    /// Bytes read but not yet taken by the guest (a peek, or more than it
    /// asked for), served before the stream's.
    ahead: BytesMut,
    read_shut: bool,
    _counted: Counted,
    bytes_in: u64,
    bytes_out: u64,
}

/// One open connection of the group, for as long as this lives.
struct Counted(Arc<NetCounters>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An instance's side of the network: its connections and what it may reach.
pub struct NetEnd {
    network: Network,
    /// For refusals: who asked, under which policies.
    group: String,
    policies: Vec<String>,
    tag: LogTag,
    conns: Vec<Option<Conn>>,
    /// Each granted name looked up, and the addresses of its latest answer.
    resolved: HashMap<String, Vec<IpAddr>>,
    denials_logged: usize,
}

impl NetEnd {
    pub fn new(network: Network, group: String, policies: Vec<String>, tag: LogTag) -> NetEnd {
        NetEnd { network, group, policies, tag, conns: Vec::new(), resolved: HashMap::new(), denials_logged: 0 }
    }

    fn conn(&mut self, handle: i32) -> Result<&mut Conn, Errno> {
        usize::try_from(handle).ok().and_then(|h| self.conns.get_mut(h)).and_then(Option::as_mut).ok_or(Errno::BadF)
    }

    /// Stores a connection in the lowest free slot; its handle.
    fn insert(&mut self, conn: Conn) -> i32 {
        let slot = match self.conns.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        self.conns[slot] = Some(conn);
        slot as i32
    }

    /// The rule that allows connecting to `addr`:`port`, asked for by
    /// address or through a name this instance looked up.
    fn rule_for(&self, addr: IpAddr, port: u16) -> Option<(&ConnectRule, Option<&str>)> {
        if let Some(rule) = self.network.rule_for_addr(addr, port) {
            return Some((rule, None));
        }
        let addr = canonical(addr);
        self.resolved
            .iter()
            .filter(|(_, addrs)| addrs.contains(&addr))
            .find_map(|(name, _)| self.network.rule_for_resolved(name, addr, port).map(|r| (r, Some(name.as_str()))))
    }

    /// `name`'s latest answer: only these addresses are reached through it
    /// from now on (an address it no longer resolves to is not).
    fn remember(&mut self, name: &str, addrs: &[IpAddr]) {
        if addrs.is_empty() {
            self.resolved.remove(name);
        } else {
            self.resolved.insert(name.to_owned(), addrs.to_vec());
        }
    }

    /// The names this instance looked up that answered `addr`.
    fn names_of(&self, addr: IpAddr) -> Vec<&str> {
        let addr = canonical(addr);
        let mut names: Vec<&str> = self.resolved.iter().filter(|(_, a)| a.contains(&addr)).map(|(n, _)| n.as_str()).collect();
        names.sort();
        names
    }

    /// Logs a refusal as file denials are logged: what was asked, the
    /// group, its policies and grants, and the line that would allow it.
    fn deny(&mut self, what: &str, reason: &str, would_allow: &str) {
        self.network.counters.denied.fetch_add(1, Ordering::Relaxed);
        if self.denials_logged >= MAX_DENIALS_LOGGED {
            return;
        }
        self.denials_logged += 1;
        let grants = if self.network.rules.is_empty() {
            "none".to_owned()
        } else {
            self.network.rules.iter().map(|r| format!("{} ({})", r.grant, r.origin)).collect::<Vec<_>>().join(", ")
        };
        let fix = if self.policies.iter().any(|p| p == RUN_FLAGS_POLICY) {
            format!("wasgi run --connect {would_allow}")
        } else {
            format!("[[connect]]\nto = \"{would_allow}\"")
        };
        let request = self.tag.request.get();
        tracing::warn!(
            target: LOG_TARGET, app = %self.tag.app, instance = self.tag.instance, request = %request,
            "denied: {what}: {reason}. Group {:?}; policies in force: {}; connect grants: {grants}. A grant that would allow it:\n{fix}",
            self.group,
            if self.policies.is_empty() { "none".to_owned() } else { self.policies.join(", ") },
        );
    }
}

/// A store's data that holds an instance's [`NetEnd`] (the sandbox's `GuestState`).
pub trait NetCalls: MemorySlot + Send + 'static {
    fn net_end(&mut self) -> Option<&mut NetEnd>;
}

fn net_end<'a, T: NetCalls>(caller: &'a mut Caller<'_, T>) -> wasmtime::Result<&'a mut NetEnd> {
    caller.data_mut().net_end().ok_or_else(|| wasmtime::format_err!("the wasgi network calls are not connected for this instance"))
}

/// `timeout_ms` as the calls take it: negative waits without limit.
fn wait_of(timeout_ms: i32) -> Option<Duration> {
    u64::try_from(timeout_ms).ok().map(Duration::from_millis)
}

/// Runs `fut` for at most `wait` (`None`: no limit; zero: one poll).
async fn within<F: Future>(wait: Option<Duration>, fut: F) -> Result<F::Output, Errno> {
    match wait {
        None => Ok(fut.await),
        Some(d) if d.is_zero() => {
            let mut fut = std::pin::pin!(fut);
            match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(out) => Ok(out),
                Poll::Pending => Err(Errno::Again),
            }
        }
        Some(d) => tokio::time::timeout(d, fut).await.map_err(|_| Errno::TimedOut),
    }
}

/// Waits until the connection is open (within `wait`); its stream.
async fn settle(state: &mut State, wait: Option<Duration>) -> Result<&mut Stream, Errno> {
    if let State::Connecting(connecting) = state {
        let done = within(wait, connecting.as_mut()).await?;
        *state = match done {
            Ok(stream) => State::Open(stream),
            Err(e) => State::Failed(Errno::of(&e)),
        };
    }
    match state {
        State::Open(stream) => Ok(stream),
        State::Failed(errno) => Err(*errno),
        State::Connecting(_) => unreachable!("settled above"),
    }
}

impl Stream {
    async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read_buf(buf).await,
            Stream::Unix(s) => s.read_buf(buf).await,
        }
    }

    async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf).await,
            Stream::Unix(s) => s.write(buf).await,
        }
    }

    async fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown().await,
            Stream::Unix(s) => s.shutdown().await,
        }
    }

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_read_ready(cx),
            Stream::Unix(s) => s.poll_read_ready(cx),
        }
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_write_ready(cx),
            Stream::Unix(s) => s.poll_write_ready(cx),
        }
    }

    fn local_name(&self) -> String {
        match self {
            Stream::Tcp(s) => s.local_addr().map(|a| format!("{} {}", a.ip(), a.port())).unwrap_or_default(),
            Stream::Unix(_) => "unix:".to_owned(),
        }
    }
}

/// The readiness of one connection for `net_poll`, polling its connect.
fn readiness(conn: &mut Conn, events: u16, cx: &mut Context<'_>) -> u16 {
    if let State::Connecting(connecting) = &mut conn.state {
        match connecting.as_mut().poll(cx) {
            Poll::Pending => return 0,
            Poll::Ready(Ok(stream)) => conn.state = State::Open(stream),
            Poll::Ready(Err(e)) => conn.state = State::Failed(Errno::of(&e)),
        }
    }
    match &conn.state {
        State::Failed(_) => WRITABLE | ERROR | HANGUP,
        State::Connecting(_) => 0,
        State::Open(stream) => {
            let mut ready = 0;
            if events & READABLE != 0 {
                if !conn.ahead.is_empty() || conn.read_shut {
                    ready |= READABLE;
                } else {
                    match stream.poll_read_ready(cx) {
                        Poll::Ready(Ok(())) => ready |= READABLE,
                        Poll::Ready(Err(_)) => ready |= ERROR,
                        Poll::Pending => {}
                    }
                }
            }
            if events & WRITABLE != 0 {
                match stream.poll_write_ready(cx) {
                    Poll::Ready(Ok(())) => ready |= WRITABLE,
                    Poll::Ready(Err(_)) => ready |= ERROR,
                    Poll::Pending => {}
                }
            }
            ready
        }
    }
}

/// Defines the calls of [`NET_CALLS`](crate::sandbox::abi::NET_CALLS) in `linker`.
pub fn add_to_linker<T: NetCalls>(linker: &mut Linker<T>) -> anyhow::Result<()> {
    linker.func_wrap_async(MODULE, NET_RESOLVE.name, |mut caller: Caller<'_, T>, (ptr, len, out, cap): (u32, u32, u32, u32)| {
        Box::new(async move {
            let memory = memory(&mut caller)?;
            let name = String::from_utf8_lossy(guest_bytes(memory.data(&caller), ptr, len.min(1024), "net_resolve")?).to_ascii_lowercase();
            let name = name.trim_end_matches('.').to_owned();
            let answer = resolve(net_end(&mut caller)?, &name).await;
            let text = match answer {
                Ok(addrs) => addrs,
                Err(errno) => return Ok(errno.ret()),
            };
            let mut written = String::new();
            for addr in text {
                let line = format!("{addr}\n");
                if written.len() + line.len() > cap as usize {
                    break;
                }
                written.push_str(&line);
            }
            memory
                .write(&mut caller, out as usize, written.as_bytes())
                .map_err(|_| wasmtime::format_err!("wasgi.net_resolve: [{out}, +{cap}) is outside the guest's memory"))?;
            Ok(written.len() as i32)
        })
    })?;
    linker.func_wrap_async(MODULE, NET_CONNECT.name, |mut caller: Caller<'_, T>, (ptr, len, port, timeout_ms): (u32, u32, u32, i32)| {
        Box::new(async move {
            let memory = memory(&mut caller)?;
            let addr = String::from_utf8_lossy(guest_bytes(memory.data(&caller), ptr, len.min(4096), "net_connect")?).into_owned();
            let end = net_end(&mut caller)?;
            Ok(match connect(end, &addr, port, wait_of(timeout_ms)).await {
                Ok(handle) => handle,
                Err(errno) => errno.ret(),
            })
        })
    })?;
    linker.func_wrap_async(MODULE, NET_SEND.name, |mut caller: Caller<'_, T>, (handle, ptr, len, timeout_ms): (i32, u32, u32, i32)| {
        Box::new(async move {
            let memory = memory(&mut caller)?;
            let data = guest_bytes(memory.data(&caller), ptr, len.min(MAX_IO as u32), "net_send")?.to_vec();
            let end = net_end(&mut caller)?;
            let counters = end.network.counters.clone();
            let sent = async {
                let conn = end.conn(handle)?;
                let wait = wait_of(timeout_ms);
                let stream = settle(&mut conn.state, wait).await?;
                let n = within(wait, stream.write(&data)).await?.map_err(|e| Errno::of(&e))?;
                conn.bytes_out += n as u64;
                counters.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                Ok::<_, Errno>(n as i32)
            };
            Ok(sent.await.unwrap_or_else(Errno::ret))
        })
    })?;
    linker.func_wrap_async(MODULE, NET_RECV.name, |mut caller: Caller<'_, T>, (handle, ptr, len, flags, timeout_ms): (i32, u32, u32, u32, i32)| {
        Box::new(async move {
            let memory = memory(&mut caller)?;
            // The buffer is checked before anything is read into it.
            guest_bytes(memory.data(&caller), ptr, len, "net_recv")?;
            let end = net_end(&mut caller)?;
            let counters = end.network.counters.clone();
            let received = async {
                let conn = end.conn(handle)?;
                let wait = wait_of(timeout_ms);
                if len == 0 {
                    settle(&mut conn.state, wait).await?;
                    return Ok(BytesMut::new());
                }
                let want = (len as usize).min(MAX_IO);
                if conn.ahead.len() < want && !conn.read_shut {
                    // Waits only when nothing is buffered; otherwise takes
                    // what has arrived, as a socket's recv returns what it has.
                    let wait = if conn.ahead.is_empty() { wait } else { Some(Duration::ZERO) };
                    let Conn { state, ahead, .. } = &mut *conn;
                    let stream = settle(state, wait).await?;
                    // Into the buffer's spare room, never zeroed first.
                    ahead.reserve(want.max(READ_AHEAD));
                    match within(wait, stream.read_buf(ahead)).await {
                        Ok(Ok(n)) => {
                            conn.bytes_in += n as u64;
                            counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Ok(Err(e)) if conn.ahead.is_empty() => return Err(Errno::of(&e)),
                        Err(errno) if conn.ahead.is_empty() => return Err(errno),
                        // What is buffered goes first; the error comes back at the next read.
                        Ok(Err(_)) | Err(_) => {}
                    }
                }
                let n = want.min(conn.ahead.len());
                Ok::<_, Errno>(if flags & PEEK != 0 { BytesMut::from(&conn.ahead[..n]) } else { conn.ahead.split_to(n) })
            };
            match received.await {
                Ok(data) => {
                    memory.write(&mut caller, ptr as usize, &data).map_err(|_| wasmtime::format_err!("wasgi.net_recv: outside the guest's memory"))?;
                    Ok(data.len() as i32)
                }
                Err(errno) => Ok(errno.ret()),
            }
        })
    })?;
    linker.func_wrap_async(MODULE, NET_POLL.name, |mut caller: Caller<'_, T>, (ptr, count, timeout_ms): (u32, u32, i32)| {
        Box::new(async move {
            if count as usize > MAX_POLL {
                return Ok(Errno::Inval.ret());
            }
            let memory = memory(&mut caller)?;
            let raw = guest_bytes(memory.data(&caller), ptr, count * 8, "net_poll")?;
            let mut entries: Vec<(i32, u16, u16)> = raw
                .chunks_exact(8)
                .map(|e| (i32::from_le_bytes([e[0], e[1], e[2], e[3]]), u16::from_le_bytes([e[4], e[5]]), 0))
                .collect();
            let end = net_end(&mut caller)?;
            let mut scan = |cx: &mut Context<'_>| {
                let mut ready = 0;
                for (handle, events, revents) in entries.iter_mut() {
                    *revents = match end.conn(*handle) {
                        Err(_) => NO_HANDLE,
                        Ok(conn) => readiness(conn, *events, cx),
                    } & (*events | ERROR | HANGUP | NO_HANDLE);
                    ready += (*revents != 0) as i32;
                }
                ready
            };
            let waited = within(wait_of(timeout_ms), std::future::poll_fn(|cx| match scan(cx) {
                0 => Poll::Pending,
                n => Poll::Ready(n),
            }))
            .await;
            let ready = match waited {
                Ok(n) => n,
                // Nothing became ready in time: every revents is 0.
                Err(_) => {
                    scan(&mut Context::from_waker(Waker::noop()));
                    0
                }
            };
            let mut out = Vec::with_capacity(entries.len() * 8);
            for (handle, events, revents) in &entries {
                out.extend_from_slice(&handle.to_le_bytes());
                out.extend_from_slice(&events.to_le_bytes());
                out.extend_from_slice(&revents.to_le_bytes());
            }
            memory.write(&mut caller, ptr as usize, &out).map_err(|_| wasmtime::format_err!("wasgi.net_poll: outside the guest's memory"))?;
            Ok(ready)
        })
    })?;
    linker.func_wrap_async(MODULE, NET_CLOSE.name, |mut caller: Caller<'_, T>, (handle, how): (i32, u32)| {
        Box::new(async move {
            let end = net_end(&mut caller)?;
            let Ok(conn) = end.conn(handle) else { return Ok(Errno::BadF.ret()) };
            if how == 3 {
                let conn = end.conns[handle as usize].take().expect("looked up above");
                tracing::debug!(
                    target: LOG_TARGET, app = %end.tag.app, instance = end.tag.instance,
                    "connection to {} closed: {} bytes in, {} out", conn.peer, conn.bytes_in, conn.bytes_out
                );
                return Ok(0);
            }
            if how == 0 || how == 2 {
                conn.read_shut = true;
                conn.ahead.clear();
            }
            if how == 1 || how == 2 {
                if let State::Open(stream) = &mut conn.state {
                    if let Err(e) = stream.shutdown_write().await {
                        return Ok(Errno::of(&e).ret());
                    }
                }
            }
            Ok(0)
        })
    })?;
    linker.func_wrap(MODULE, NET_NAME.name, |mut caller: Caller<'_, T>, handle: i32, peer: u32, out: u32, cap: u32| -> wasmtime::Result<i32> {
        let memory = memory(&mut caller)?;
        let end = net_end(&mut caller)?;
        let name = match end.conn(handle) {
            Err(errno) => return Ok(errno.ret()),
            Ok(conn) if peer != 0 => conn.peer.clone(),
            Ok(conn) => match &conn.state {
                State::Open(stream) => stream.local_name(),
                State::Connecting(_) => return Ok(Errno::NotConn.ret()),
                State::Failed(errno) => return Ok(errno.ret()),
            },
        };
        let bytes = &name.as_bytes()[..name.len().min(cap as usize)];
        memory.write(&mut caller, out as usize, bytes).map_err(|_| wasmtime::format_err!("wasgi.net_name: outside the guest's memory"))?;
        Ok(bytes.len() as i32)
    })?;
    Ok(())
}

/// Looks up `name` if a grant names it; remembers and returns the answer,
/// without the addresses a name may never lead to.
async fn resolve(end: &mut NetEnd, name: &str) -> Result<Vec<IpAddr>, Errno> {
    if let Ok(addr) = name.parse::<IpAddr>() {
        return Ok(vec![addr]);
    }
    if !end.network.names(name) {
        let what = format!("looking up {name:?}");
        end.deny(&what, "no [[connect]] grant names it", &format!("{name}:PORT"));
        return Err(Errno::Acces);
    }
    let lookup = tokio::net::lookup_host((name, 0));
    let found = match tokio::time::timeout(end.network.connect_timeout, lookup).await {
        Err(_) => return Err(Errno::Again),
        Ok(Err(_)) => {
            end.remember(name, &[]);
            return Err(Errno::NoEnt);
        }
        Ok(Ok(addrs)) => addrs,
    };
    let (addrs, guarded_addrs) = usable_answer(found.map(|a| a.ip()));
    if !guarded_addrs.is_empty() {
        let list = guarded_addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ");
        end.deny(
            &format!("{name:?} resolved to {list}"),
            "a name never leads to a link-local, metadata, unspecified or multicast address (those answers were dropped)",
            &format!("{}:PORT", guarded_addrs[0]),
        );
    }
    end.remember(name, &addrs);
    if addrs.is_empty() {
        return Err(if guarded_addrs.is_empty() { Errno::NoEnt } else { Errno::Acces });
    }
    Ok(addrs)
}

/// A DNS answer split into the addresses a name may lead to (each once, in
/// order) and those it may never (link-local, metadata and the like).
fn usable_answer(answer: impl Iterator<Item = IpAddr>) -> (Vec<IpAddr>, Vec<IpAddr>) {
    let (mut usable, mut refused) = (Vec::new(), Vec::new());
    for addr in answer.map(canonical) {
        let list = if guarded(addr).is_some() { &mut refused } else { &mut usable };
        if !list.contains(&addr) {
            list.push(addr);
        }
    }
    (usable, refused)
}

/// Checks and starts a connection; waits for it within `wait`.
async fn connect(end: &mut NetEnd, addr: &str, port: u32, wait: Option<Duration>) -> Result<i32, Errno> {
    let (connecting, peer): (Connecting, String) = if let Some(path) = addr.strip_prefix("unix:") {
        let path = PathBuf::from(path);
        if end.network.rule_for_unix(&path).is_none() {
            end.deny(&format!("connecting to unix:{}", path.display()), "no [[connect]] grant allows this socket", &format!("unix:{}", path.display()));
            return Err(Errno::Acces);
        }
        let connect_path = path.clone();
        (Box::pin(async move { UnixStream::connect(connect_path).await.map(Stream::Unix) }), format!("unix:{}", path.display()))
    } else {
        let Ok(ip) = addr.parse::<IpAddr>() else { return Err(Errno::Inval) };
        let Ok(port) = u16::try_from(port) else { return Err(Errno::Inval) };
        if end.rule_for(ip, port).is_none() {
            let names = end.names_of(ip);
            let shown = match ip {
                IpAddr::V6(_) => format!("[{ip}]:{port}"),
                IpAddr::V4(_) => format!("{ip}:{port}"),
            };
            let (what, would_allow) = match names.first() {
                Some(name) => (format!("connecting to {shown} (the address of {})", names.join(", ")), format!("{name}:{port}")),
                None => (format!("connecting to {shown}"), shown.clone()),
            };
            let reason = match guarded(ip) {
                Some(crate::spec::connect::Guarded::Never) => "an unspecified, multicast or broadcast address is never reachable",
                Some(crate::spec::connect::Guarded::LiteralOnly) => "a link-local or metadata address is reachable only through a grant of that literal address",
                None => "no [[connect]] grant allows it",
            };
            end.deny(&what, reason, &would_allow);
            return Err(Errno::Acces);
        }
        let target = SocketAddr::new(ip, port);
        (
            Box::pin(async move {
                let stream = TcpStream::connect(target).await?;
                // Drivers write whole requests; the guest's own buffering batches them.
                let _ = stream.set_nodelay(true);
                Ok(Stream::Tcp(stream))
            }),
            format!("{ip} {port}"),
        )
    };
    let counters = end.network.counters.clone();
    let open = counters.open.fetch_add(1, Ordering::Relaxed);
    let counted = Counted(counters.clone());
    if open >= end.network.max_connections {
        let request = end.tag.request.get();
        tracing::warn!(
            target: LOG_TARGET, app = %end.tag.app, instance = end.tag.instance, request = %request,
            "refused: connecting to {peer}: group {:?} already holds {open} open connection(s), its max_connections",
            end.group
        );
        return Err(Errno::MFile);
    }
    counters.opened.fetch_add(1, Ordering::Relaxed);
    let limit = end.network.connect_timeout;
    let connecting: Connecting = Box::pin(async move {
        tokio::time::timeout(limit, connecting).await.unwrap_or_else(|_| Err(io::Error::from(io::ErrorKind::TimedOut)))
    });
    let mut conn = Conn { state: State::Connecting(connecting), peer, ahead: BytesMut::new(), read_shut: false, _counted: counted, bytes_in: 0, bytes_out: 0 };
    match wait {
        Some(d) if d.is_zero() => {
            // Start it (the first poll issues the connect), and hand it over in progress.
            let _ = settle(&mut conn.state, Some(Duration::ZERO)).await;
        }
        wait => {
            settle(&mut conn.state, wait).await?;
        }
    }
    Ok(end.insert(conn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::abi::{all_imports, WasmType};
    use crate::sandbox::hostcalls::{self, HostCalls, HostEnd};

    fn end_with(grants: &[&str]) -> NetEnd {
        let rules = grants.iter().map(|g| ConnectRule { grant: g.parse().unwrap(), origin: "test".into() }).collect();
        let network = Network { rules, max_connections: 10, ..Network::default() };
        NetEnd::new(network, "g".into(), Vec::new(), LogTag::new(Arc::from("app"), 1))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// A name's addresses are reachable through its grant only while they
    /// are its latest answer: when its DNS answer changes, the old address
    /// is refused and the new one allowed; an address grant is unaffected.
    #[test]
    fn a_changed_dns_answer_moves_what_the_name_reaches() {
        let mut end = end_with(&["db.example:5432", "10.9.9.9:5432"]);
        assert!(end.rule_for(ip("10.0.0.5"), 5432).is_none(), "nothing is reached through a name before it is looked up");
        end.remember("db.example", &[ip("10.0.0.5")]);
        let (rule, name) = end.rule_for(ip("10.0.0.5"), 5432).expect("the name's answer is reachable");
        assert_eq!((rule.grant.to_string().as_str(), name), ("db.example:5432", Some("db.example")));
        assert!(end.rule_for(ip("10.0.0.5"), 5433).is_none(), "only on the grant's ports");
        end.remember("db.example", &[ip("10.0.0.6")]);
        assert!(end.rule_for(ip("10.0.0.5"), 5432).is_none(), "the old answer is no longer the name's");
        assert!(end.rule_for(ip("10.0.0.6"), 5432).is_some());
        end.remember("db.example", &[]);
        assert!(end.rule_for(ip("10.0.0.6"), 5432).is_none(), "a name that stopped resolving reaches nothing");
        assert!(end.rule_for(ip("10.9.9.9"), 5432).is_some(), "an address grant needs no name");
        // An IPv4-mapped form is the same address.
        end.remember("db.example", &[ip("10.0.0.7")]);
        assert!(end.rule_for(ip("::ffff:10.0.0.7"), 5432).is_some());
    }

    /// A DNS answer pointing a granted name at a metadata or link-local
    /// address loses those addresses; the rest stay, once each.
    #[test]
    fn a_name_never_leads_to_a_guarded_address() {
        let answer = ["10.0.0.5", "169.254.169.254", "10.0.0.5", "fd00:ec2::254", "::ffff:169.254.1.1", "2001:db8::1"].map(ip);
        let (usable, refused) = usable_answer(answer.into_iter());
        assert_eq!(usable, vec![ip("10.0.0.5"), ip("2001:db8::1")]);
        assert_eq!(refused, vec![ip("169.254.169.254"), ip("fd00:ec2::254"), ip("169.254.1.1")]);
    }

    #[test]
    fn errors_become_the_guest_s_errno() {
        assert_eq!(Errno::of(&io::Error::from_raw_os_error(libc::ECONNREFUSED)), Errno::ConnRefused);
        assert_eq!(Errno::of(&io::Error::from_raw_os_error(libc::ETIMEDOUT)), Errno::TimedOut);
        assert_eq!(Errno::of(&io::Error::from(io::ErrorKind::BrokenPipe)), Errno::Pipe);
        assert_eq!(Errno::ConnRefused.ret(), -14);
    }

    /// A store's data for linking only: no channels.
    struct Unconnected;

    impl HostCalls for Unconnected {
        fn host_end(&mut self) -> Option<&mut HostEnd> {
            None
        }
    }

    impl NetCalls for Unconnected {
        fn net_end(&mut self) -> Option<&mut NetEnd> {
            None
        }
    }

    impl MemorySlot for Unconnected {
        fn memory_slot(&mut self) -> &mut Option<wasmtime::Memory> {
            unreachable!("no call is made")
        }
    }

    #[test]
    /// The linker's definitions are the ABI tables' (`sandbox::abi`).
    fn the_linker_defines_exactly_the_host_calls() {
        let engine = wasmtime::Engine::default();
        let mut linker = Linker::<Unconnected>::new(&engine);
        hostcalls::add_to_linker(&mut linker).unwrap();
        add_to_linker(&mut linker).unwrap();
        let mut store = wasmtime::Store::new(&engine, Unconnected);
        let defined: Vec<(String, String, wasmtime::Extern)> =
            linker.iter(&mut store).map(|(module, name, item)| (module.to_owned(), name.to_owned(), item)).collect();
        assert_eq!(defined.len(), all_imports().count(), "{:?}", defined.iter().map(|d| (&d.0, &d.1)).collect::<Vec<_>>());
        let wasm = |t: &wasmtime::ValType| match t {
            wasmtime::ValType::I32 => WasmType::I32,
            wasmtime::ValType::I64 => WasmType::I64,
            other => panic!("a host call takes or returns {other:?}, outside the ABI"),
        };
        for (module, name, item) in defined {
            assert_eq!(module, MODULE);
            let call = all_imports().find(|c| c.name == name).unwrap_or_else(|| panic!("{name} is defined but not in HOST_CALLS or NET_CALLS"));
            let ty = item.into_func().expect("a host call is a function").ty(&store);
            let params: Vec<WasmType> = ty.params().map(|t| wasm(&t)).collect();
            let results: Vec<WasmType> = ty.results().map(|t| wasm(&t)).collect();
            assert_eq!((params.as_slice(), results.as_slice()), (call.params, call.results), "{name}");
        }
    }
}
