//! The HTTP front: hyper connections on the listeners' accepted streams,
//! the service that turns each request into an exchange with a group, and
//! graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::{mpsc, oneshot};

use crate::http::access_log::{AccessLog, AccessRecord};
use crate::http::environ::{self, Connection};
use crate::http::metrics::Metrics;
use crate::http::request_id::{self, RequestIds};
use crate::http::forwarded;
use crate::http::head_error::HeadError;
use crate::http::listener::{accept_loop, AcceptSettings, Accepted, Listener};
use crate::pool::exchange::{response_channel, BodyLimits, Head, Job, RequestInfo};
use crate::routing::router::Router;
use crate::spec::limits::HttpLimits;

/// This module's log target: its name before the folders, so log lines
/// and `WASGI_LOG` filters read as they did.
const LOG_TARGET: &str = "wasgi::server";


/// What every connection shares.
pub struct Server {
    /// Swapped whole by a configuration reload; each request reads it once.
    router: std::sync::RwLock<Arc<Router>>,
    pub limits: HttpLimits,
    ids: RequestIds,
    /// Set when shutdown begins: the readiness check answers 503 from then on.
    draining: std::sync::atomic::AtomicBool,
    pub access_log: Arc<AccessLog>,
    /// The per-request series of /metrics.
    pub metrics: Metrics,
}

/// The readiness check a load balancer polls (Apache's mod_proxy_hcheck
/// `hcuri`, a Kubernetes readinessProbe). wasgi answers it on every listener
/// before routing, so no app can shadow it.
pub const READY_PATH: &str = "/.wasgi/ready";

impl Server {
    pub fn new(router: Router, limits: HttpLimits, access_log: Arc<AccessLog>) -> Arc<Server> {
        Arc::new(Server {
            router: std::sync::RwLock::new(Arc::new(router)),
            limits,
            ids: RequestIds::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
            access_log,
            metrics: Metrics::new(),
        })
    }

    /// True once shutdown began (the readiness checks answer 503).
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The access record of a request, with what its head says.
    fn begin_record(&self, req: &Request<Incoming>) -> AccessRecord {
        let headers = req.headers();
        let text = |name: http::header::HeaderName| headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let format = &self.access_log.format;
        AccessRecord {
            time: Some(std::time::SystemTime::now()),
            method: req.method().as_str().to_owned(),
            target: req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| req.uri().to_string()),
            protocol: match req.version() {
                http::Version::HTTP_10 => "HTTP/1.0",
                http::Version::HTTP_2 => "HTTP/2.0",
                http::Version::HTTP_09 => "HTTP/0.9",
                _ => "HTTP/1.1",
            },
            host: text(http::header::HOST).or_else(|| req.uri().host().map(str::to_owned)),
            referer: text(http::header::REFERER),
            user_agent: text(http::header::USER_AGENT),
            request_headers: format
                .request_headers()
                .iter()
                .filter_map(|name| Some((name.clone(), String::from_utf8_lossy(headers.get(name.as_str())?.as_bytes()).into_owned())))
                .collect(),
            ..AccessRecord::default()
        }
    }

    /// A response's body is sent (or the client went away): its access log
    /// line and its count in the metrics.
    fn finish(&self, pending: Pending, sent: u64) {
        let Pending { mut record, received, started, picked } = pending;
        if record.skip {
            return;
        }
        record.bytes = sent;
        record.received = received.load(Ordering::Relaxed);
        record.duration = started.elapsed();
        self.access_log.write(&record);
        let waited = picked.and_then(|p| p.get().map(|at| at.saturating_duration_since(started)));
        self.metrics.record(&record, waited);
    }

    /// The readiness answer for the server (`None`) or one group, as the
    /// public listeners and the admin listener give it.
    pub fn readiness_answer(&self, group: Option<&str>) -> Response<Full<Bytes>> {
        let draining = self.draining();
        let (status, text) = match group {
            None if draining => (StatusCode::SERVICE_UNAVAILABLE, "draining: shutting down\n"),
            None => (StatusCode::OK, "ready\n"),
            Some(name) => {
                let router = self.router();
                match router.groups().into_iter().find(|g| &*g.spec.group == name) {
                    None => (StatusCode::NOT_FOUND, "no such group\n"),
                    Some(_) if draining => (StatusCode::SERVICE_UNAVAILABLE, "draining: shutting down\n"),
                    Some(g) if g.failing() => (StatusCode::SERVICE_UNAVAILABLE, "not ready: instances fail to start\n"),
                    Some(_) => (StatusCode::OK, "ready\n"),
                }
            }
        };
        let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
        headers.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
        response
    }

    pub fn router(&self) -> Arc<Router> {
        self.router.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Routes new requests by `router` from now on; returns the old one.
    pub fn replace_router(&self, router: Router) -> Arc<Router> {
        std::mem::replace(&mut *self.router.write().unwrap_or_else(|e| e.into_inner()), Arc::new(router))
    }
}

type ResponseBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

fn plain(status: StatusCode, text: impl Into<Bytes>) -> Response<ResponseBody> {
    let mut response = Response::new(Full::new(text.into()).map_err(|e: Infallible| match e {}).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// A 503 that tells the client when to try again.
fn unavailable(text: &'static str) -> Response<ResponseBody> {
    let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, text);
    response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("5"));
    response
}

/// The server's readiness: 200 while it listens and is not draining, 503
/// once shutdown began. One group whose instances fail to start does not
/// take the whole server out of a balancer (the other tenants still serve),
/// and the anonymous answer names no groups.
///
/// `/.wasgi/ready/GROUP` answers for one group: 503 with the reason while
/// its instances keep failing to start (asked for by name, so saying why is
/// no leak; the traceback stays in the log), 404 for a group that does not exist.
fn readiness(server: &Server, group: Option<&str>) -> Response<ResponseBody> {
    server.readiness_answer(group).map(|body| body.map_err(|e: Infallible| match e {}).boxed_unsync())
}

/// `Some(None)` for the server's readiness path, `Some(Some(group))` for a
/// group's, `None` for any other path (an app's).
fn readiness_path(path: &str) -> Option<Option<&str>> {
    let rest = path.strip_prefix(READY_PATH)?;
    match rest.strip_prefix('/') {
        None if rest.is_empty() => Some(None),
        Some(group) if !group.is_empty() && !group.contains('/') => Some(Some(group)),
        _ => None,
    }
}

fn info_target(parts: &http::request::Parts) -> &str {
    parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("")
}

/// A refusal that also ends the connection: after a request we refuse
/// unread, nothing later on the same connection can be trusted to be framed
/// right.
fn refuse_and_close(status: StatusCode, text: &'static str) -> Response<ResponseBody> {
    let mut response = plain(status, text);
    response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    response
}

/// A request refused for what its head says: logged with the problem, and
/// answered (see [`HeadError::status`]) on a connection that then closes.
fn refuse_head(info: &RequestInfo, problem: HeadError) -> Response<ResponseBody> {
    let status = problem.status();
    tracing::warn!(target: "wasgi::access", request = %info.id, status = status.as_u16(), "{} {}: {problem}", info.method, info.target);
    refuse_and_close(status, problem.answer())
}

/// Answers one request; fills in what its access line needs beyond the head
/// (`record`: its id, the client, the group, or that it is not logged).
async fn handle(server: &Arc<Server>, conn: Connection, req: Request<Incoming>, pending: &mut Pending) -> Response<ResponseBody> {
    let record = &mut pending.record;
    let ambiguous = conn.next_request_ambiguous();
    let (mut parts, body) = req.into_parts();
    let router = server.router();
    let from_proxy = router.trusted.trusts(conn.peer.map(|p| p.ip()));
    let id: Arc<str> = match parts.headers.get(request_id::HEADER).and_then(request_id::acceptable).filter(|_| from_proxy) {
        Some(kept) => kept.into(),
        None => server.ids.make(),
    };
    // The app sees the id as its middleware looks for it, whatever an
    // untrusted client claimed.
    parts.headers.insert(request_id::HEADER, http::HeaderValue::from_str(&id).expect("an id is a valid header value"));
    record.request_id = id.to_string();
    record.client = conn.peer.map(|p| p.ip());
    let info = RequestInfo {
        id,
        method: parts.method.clone(),
        target: parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| parts.uri.to_string()),
        started: Instant::now(),
    };
    if ambiguous {
        return refuse_head(&info, HeadError::AmbiguousLength);
    }
    if let Some(problem) = crate::http::framing::head_problem(&parts, from_proxy) {
        return refuse_head(&info, problem);
    }
    if let Some(group) = readiness_path(parts.uri.path()).filter(|_| parts.method == http::Method::GET || parts.method == http::Method::HEAD) {
        // A balancer's poll every few seconds is not an access.
        record.skip = true;
        return readiness(server, group);
    }
    let trusted = &router.trusted;
    let forwarded = from_proxy.then(|| forwarded::read(&parts.headers, trusted));
    let host = environ::request_host(&parts, forwarded.as_ref());
    if let Some((client, _)) = forwarded.as_ref().and_then(|f| f.client) {
        record.client = Some(client);
    }
    let path = match environ::decode_path(parts.uri.path()) {
        Ok(path) => path,
        Err(problem) => return refuse_head(&info, problem),
    };
    let Some(route) = router.route(host, &path) else {
        tracing::info!(target: "wasgi::access", request = %info.id, status = 404, "{} {}: no app is mounted there", info.method, info.target);
        return plain(StatusCode::NOT_FOUND, "Not Found\n");
    };
    record.group = Some(route.group.spec.group.clone());
    record.app = Some(route.group.app().to_owned());
    let client = forwarded.as_ref().and_then(|f| f.client).map(|(ip, _)| ip).or(conn.peer.map(|p| p.ip()));
    if !route.access.permits(client) {
        tracing::warn!(target: "wasgi::access", group = %route.group.name, request = %info.id, status = 403,
            "{} {}: client {} is not allowed by the app's allow/deny lists", info.method, info.target,
            client.map_or("(unknown address: a Unix-socket peer)".to_owned(), |ip| ip.to_string()));
        return plain(StatusCode::FORBIDDEN, "Forbidden\n");
    }
    let declared = parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|n| *n > server.limits.max_body_bytes) {
        route.group.accounting.limit_hit("max_body_bytes");
        return refuse_head(&info, HeadError::BodyTooLarge { declared, max: server.limits.max_body_bytes });
    }
    let target = environ::Target {
        mount: &route.mount,
        script: &route.group.spec.script,
        pass_authorization: route.pass_authorization,
    };
    let environ = match environ::build(&parts, &path, &conn, &target, &info.id, forwarded.as_ref()) {
        Ok(e) => e,
        Err(problem) => return refuse_head(&info, problem),
    };
    let group = &route.group;
    let (head_tx, mut head_rx) = oneshot::channel();
    let (body_tx, body_rx) = response_channel(server.limits.body_write_timeout, conn.write_stalled.clone());
    let picked = Arc::new(std::sync::OnceLock::new());
    pending.picked = Some(picked.clone());
    let limits = BodyLimits { max_bytes: server.limits.max_body_bytes, read_timeout: server.limits.body_read_timeout };
    let body = limits.wrap(body, pending.received.clone());
    let id = info.id.clone();
    let job = Job { info, environ, body, head_tx, body_tx, picked: picked.clone() };
    if let Err(job) = group.submit(job) {
        tracing::warn!(target: "wasgi::access", group = %group.name, request = %job.info.id, status = 503,
            "{} {}: the request queue is full ({} waiting)", job.info.method, job.info.target, group.queued());
        group.accounting.limit_hit("max_queue");
        return unavailable("Service Unavailable: the server is overloaded\n");
    }
    let head = match group.spec.limits.queue_timeout {
        Some(limit) => tokio::select! {
            head = &mut head_rx => head,
            _ = tokio::time::sleep(limit) => {
                if picked.get().is_some() {
                    head_rx.await
                } else {
                    tracing::warn!(target: "wasgi::access", group = %group.name, request = %id, status = 503,
                        "{} {}: no instance was free within queue_timeout ({}s)", parts.method, info_target(&parts), limit.as_secs());
                    group.accounting.limit_hit("queue_timeout");
                    return unavailable("Service Unavailable: no application instance was free in time\n");
                }
            }
        },
        None => head_rx.await,
    };
    match head {
        Ok(Head::Response(status, headers)) => {
            let mut response = Response::new(body_rx.boxed_unsync());
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            response
        }
        Ok(Head::Error(status, text)) => plain(status, text),
        Ok(Head::ClientError(status, text)) => refuse_and_close(status, text),
        Err(_) => plain(StatusCode::BAD_GATEWAY, "Bad Gateway\n"),
    }
}

/// HTTP/2 streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
pub const H2_MAX_STREAMS: u32 = 100;
/// HTTP/2 keep-alive: a PING after this long without a frame from the client...
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
/// ...and the connection closes if its answer takes longer than this.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The requests a connection has in flight (a response counts until its
/// body is dropped), and when the last one ended: what its idle timeout
/// looks at.
struct Activity {
    busy: std::sync::atomic::AtomicUsize,
    since: std::sync::Mutex<tokio::time::Instant>,
}

impl Activity {
    fn new() -> Activity {
        Activity { busy: 0.into(), since: std::sync::Mutex::new(tokio::time::Instant::now()) }
    }

    /// Resolves once the connection has had nothing in flight for `timeout`.
    async fn idle(&self, timeout: Duration) {
        loop {
            let since = *self.since.lock().unwrap_or_else(|e| e.into_inner());
            let busy = self.busy.load(Ordering::Acquire) > 0;
            if !busy && since.elapsed() >= timeout {
                return;
            }
            tokio::time::sleep_until(if busy { tokio::time::Instant::now() + timeout } else { since + timeout }).await;
        }
    }
}

/// One request in flight on a connection, until dropped.
struct Busy(Arc<Activity>);

impl Busy {
    fn begin(activity: &Arc<Activity>) -> Busy {
        activity.busy.fetch_add(1, Ordering::AcqRel);
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.since.lock().unwrap_or_else(|e| e.into_inner()) = tokio::time::Instant::now();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request on its way: its access record, the request body bytes its
/// app read, and when it arrived.
struct Pending {
    record: AccessRecord,
    received: Arc<AtomicU64>,
    started: Instant,
    /// When an instance took the request, once one did.
    picked: Option<Arc<std::sync::OnceLock<Instant>>>,
}

/// A response body that keeps its request counted as in flight while hyper
/// sends it, counts what it sends, and ends the request's account when
/// hyper drops it (sent whole, or the client went away).
struct Tracked {
    body: ResponseBody,
    _busy: Busy,
    server: Arc<Server>,
    pending: Option<Pending>,
    sent: u64,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            self.server.finish(pending, self.sent);
        }
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled {
            self.sent += frame.data_ref().map_or(0, |d| d.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Serves connections on `listeners` until `shutdown` resolves, then stops
/// accepting and lets in-flight requests finish for up to `drain`.
pub async fn serve(server: Arc<Server>, listeners: Vec<Listener>, shutdown: impl Future<Output = ()>, drain: Duration) -> Result<()> {
    // Every connection task watches this: true once shutdown begins.
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let (conn_tx, mut conn_rx) = mpsc::channel::<Accepted>(64);
    let connections = Arc::new(tokio::sync::Semaphore::new(server.limits.max_connections));
    let mut accept_tasks = Vec::new();
    for listener in listeners {
        let conn_tx = conn_tx.clone();
        let settings = AcceptSettings { write_timeout: server.limits.body_write_timeout, handshake_timeout: server.limits.header_read_timeout };
        accept_tasks.push(tokio::spawn(accept_loop(listener, conn_tx, connections.clone(), settings)));
    }
    drop(conn_tx);

    let mut builder = auto::Builder::new(TokioExecutor::new());
    let limits = &server.limits;
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(H2_MAX_STREAMS)
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    // hyper bounds an idle HTTP/1 keep-alive wait with header_read_timeout;
    // the same bound closes any connection with no request for that long
    // (HTTP/2 has no head to wait for).
    let idle_timeout = limits.header_read_timeout;

    tokio::pin!(shutdown);
    let mut signalled = false;
    let stop_serving = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(stop_serving);
    loop {
        tokio::select! {
            accepted = conn_rx.recv() => {
                let Some((io, conn, slot)) = accepted else { break };
                let server = server.clone();
                let activity = Arc::new(Activity::new());
                let busy = activity.clone();
                let service = hyper::service::service_fn(move |req| {
                    let server = server.clone();
                    let conn = conn.clone();
                    let busy = Busy::begin(&busy);
                    async move {
                        let mut pending = Pending { record: server.begin_record(&req), received: Arc::default(), started: Instant::now(), picked: None };
                        let mut response = handle(&server, conn, req, &mut pending).await;
                        pending.record.status = response.status().as_u16();
                        if let Ok(id) = http::HeaderValue::from_str(&pending.record.request_id) {
                            response.headers_mut().entry(request_id::HEADER).or_insert(id);
                        }
                        for name in server.access_log.format.response_headers() {
                            if let Some(value) = response.headers().get(name.as_str()) {
                                pending.record.response_headers.push((name.clone(), String::from_utf8_lossy(value.as_bytes()).into_owned()));
                            }
                        }
                        let server = server.clone();
                        Ok::<_, Infallible>(response.map(|body| Tracked { body, _busy: busy, server, pending: Some(pending), sent: 0 }.boxed_unsync()))
                    }
                });
                let mut closing = closing_rx.clone();
                let connection = builder.serve_connection(TokioIo::new(io), service).into_owned();
                tokio::spawn(async move {
                    let mut connection = std::pin::pin!(connection);
                    let mut ending = false;
                    loop {
                        tokio::select! {
                            ended = connection.as_mut() => {
                                if let Err(e) = ended {
                                    tracing::debug!(target: LOG_TARGET, "connection ended with an error: {e}");
                                }
                                break;
                            }
                            _ = closing.wait_for(|c| *c), if !ending => {
                                connection.as_mut().graceful_shutdown();
                                ending = true;
                            }
                            _ = activity.idle(idle_timeout), if !ending => {
                                tracing::debug!(target: LOG_TARGET, "closing a connection idle for {}s", idle_timeout.as_secs());
                                connection.as_mut().graceful_shutdown();
                                ending = true;
                            }
                        }
                    }
                    drop(slot);
                });
            }
            _ = &mut shutdown, if !signalled => {
                signalled = true;
                server.draining.store(true, Ordering::Release);
                let delay = server.limits.shutdown_delay;
                if !delay.is_zero() {
                    tracing::info!(target: LOG_TARGET, "shutting down: the readiness check answers 503; still serving for {}s (shutdown_delay)", delay.as_secs());
                    stop_serving.as_mut().reset(tokio::time::Instant::now() + delay);
                    continue;
                }
                tracing::info!(target: LOG_TARGET, "shutting down: no new connections; waiting up to {}s for requests in flight", drain.as_secs());
                break;
            }
            _ = &mut stop_serving => {
                tracing::info!(target: LOG_TARGET, "shutting down: no new connections; waiting up to {}s for requests in flight", drain.as_secs());
                break;
            }
        }
    }
    for task in accept_tasks {
        task.abort();
        let _ = task.await; // drops the listener (and removes a Unix socket file)
    }
    // Connections still waiting to be served are closed; the others finish
    // their requests and close, each giving back its place under max_connections.
    drop(conn_rx);
    let _ = closing_tx.send(true);
    let all = u32::try_from(server.limits.max_connections).unwrap_or(u32::MAX);
    match tokio::time::timeout(drain, connections.acquire_many(all)).await {
        Ok(_) => tracing::info!(target: LOG_TARGET, "all connections closed"),
        Err(_) => tracing::warn!(target: LOG_TARGET, "gave up waiting for connections after {}s", drain.as_secs()),
    }
    Ok(())
}
