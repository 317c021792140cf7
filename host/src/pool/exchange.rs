//! One request's trip through an instance: the host side of the bridge protocol.
//!
//! The exchange runs in the instance's task, apart from the HTTP handler, so
//! a client that disconnects mid-response cannot leave the guest out of step:
//! the task keeps reading the guest's frames until `End`, tells it `Cancel`
//! at the next flow-control point so it stops and calls `close()`, and only
//! then takes the next request.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{mpsc, oneshot};

use crate::protocol::frames::{self, Kind, ACK_BYTES, ACK_FRAMES};
use crate::sandbox::gone::Gone;
use crate::sandbox::instance::{GuestIo, Instance};
use crate::spec::limits::Limits;

/// This module's log target: its name before the folders, so log lines
/// and `WASGI_LOG` filters read as they did.
const LOG_TARGET: &str = "wasgi::request";

/// What the HTTP handler gets back first: the response head, or an error the
/// handler turns into a plain response.
pub enum Head {
    Response(StatusCode, HeaderMap),
    Error(StatusCode, &'static str),
    /// The client broke the request (a malformed chunked body): a 4xx that
    /// also closes the connection.
    ClientError(StatusCode, &'static str),
}

/// The response body, fed by the exchange task through a [`ResponseSender`].
/// It ends cleanly only when the exchange said the body is complete: a
/// sender dropped before (an instance lost, a client that stopped reading)
/// makes it end in an error, so hyper cuts the response short (an HTTP/1
/// connection closed, an HTTP/2 stream reset) rather than pass a truncated
/// body off as whole.
pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    complete: Arc<AtomicBool>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match std::task::ready!(self.rx.poll_recv(cx)) {
            Some(piece) => Poll::Ready(Some(piece.map(Frame::data))),
            None if self.complete.load(Ordering::Acquire) => Poll::Ready(None),
            None => Poll::Ready(Some(Err(std::io::Error::other("the response was cut short")))),
        }
    }
}

/// The exchange's end of a response body.
pub struct ResponseSender {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    complete: Arc<AtomicBool>,
    /// How long one piece may wait for the client to take it (body_write_timeout).
    write_timeout: Duration,
    /// Set by the connection when its writes made no progress for
    /// write_timeout (see [`crate::http::framing::WatchedIo`]).
    stalled: Arc<AtomicBool>,
}

/// What became of a piece of response body.
#[derive(PartialEq, Eq)]
enum Sent {
    Taken,
    /// The client went away.
    Gone,
    /// The client took nothing for body_write_timeout.
    Stalled,
}

/// A response body channel; `stalled` is the connection's flag for writes
/// that made no progress (see [`ResponseSender`]).
pub fn response_channel(write_timeout: Duration, stalled: Arc<AtomicBool>) -> (ResponseSender, ChannelBody) {
    // A few pieces in flight: the guest runs ahead of the socket by no more.
    let (tx, rx) = mpsc::channel(4);
    let complete = Arc::new(AtomicBool::new(false));
    (ResponseSender { tx, complete: complete.clone(), write_timeout, stalled }, ChannelBody { rx, complete })
}

impl ResponseSender {
    async fn send(&self, data: Bytes) -> Sent {
        match tokio::time::timeout(self.write_timeout, self.tx.send(Ok(data))).await {
            Ok(Ok(())) => Sent::Taken,
            Ok(Err(_)) if self.stalled.load(Ordering::Acquire) => Sent::Stalled,
            Ok(Err(_)) => Sent::Gone,
            Err(_) => Sent::Stalled,
        }
    }

    /// Cuts the response short with `why` (hyper logs it); the body ends in
    /// an error even if the client is too slow to take this one.
    fn fail(&self, why: String) {
        let _ = self.tx.try_send(Err(std::io::Error::other(why)));
    }

    /// The body is whole: end it cleanly once the pieces sent are taken.
    fn complete(&self) {
        self.complete.store(true, Ordering::Release);
    }
}

/// Per-request facts for the access log.
pub struct RequestInfo {
    /// The request id: a trusted proxy's X-Request-Id, or one wasgi made.
    pub id: std::sync::Arc<str>,
    pub method: http::Method,
    pub target: String,
    pub started: Instant,
}

/// The request body with the server's limits on it.
pub struct LimitedBody {
    body: Incoming,
    limits: BodyLimits,
    received: u64,
    /// The same count, for the access log and the group's accounting.
    counted: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// How much body a client may send, and how slowly.
#[derive(Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: u64,
    pub read_timeout: std::time::Duration,
}

impl BodyLimits {
    pub fn wrap(self, body: Incoming, counted: std::sync::Arc<std::sync::atomic::AtomicU64>) -> LimitedBody {
        LimitedBody { body, limits: self, received: 0, counted }
    }
}

/// The request body, handed out in the slices the guest asks for.
struct BodyReader {
    body: LimitedBody,
    leftover: Bytes,
    ended: bool,
    /// Set when the client's body framing turned out broken (a bad chunk
    /// size, a missing CRLF...): the client's error, answered with 400.
    malformed: Option<String>,
}

/// True for hyper's errors about the body's framing (its chunked decoder
/// reports them as InvalidInput / InvalidData), as opposed to a client that
/// went away mid-body (UnexpectedEof) or a reset HTTP/2 stream.
fn framing_error(e: &hyper::Error) -> bool {
    let io = std::error::Error::source(e).and_then(|s| s.downcast_ref::<std::io::Error>());
    io.is_some_and(|io| matches!(io.kind(), std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData))
}

impl BodyReader {
    /// Up to `max` bytes; empty at the end of the body.
    async fn read(&mut self, max: usize) -> Result<Bytes, String> {
        while self.leftover.is_empty() && !self.ended {
            let limits = self.body.limits;
            let frame = match tokio::time::timeout(limits.read_timeout, self.body.body.frame()).await {
                Ok(frame) => frame,
                Err(_) => {
                    self.ended = true;
                    return Err(format!("the client sent no body data for {}s (body_read_timeout)", limits.read_timeout.as_secs()));
                }
            };
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.body.received += data.len() as u64;
                        self.body.counted.fetch_add(data.len() as u64, Ordering::Relaxed);
                        if self.body.received > limits.max_bytes {
                            self.ended = true;
                            return Err(format!("the request body is over max_body_bytes ({})", limits.max_bytes));
                        }
                        self.leftover = data;
                    }
                }
                Some(Err(e)) => {
                    self.ended = true;
                    let why = match std::error::Error::source(&e) {
                        Some(cause) => format!("{e}: {cause}"),
                        None => format!("{e}"),
                    };
                    if framing_error(&e) {
                        self.malformed = Some(why.clone());
                    }
                    return Err(why);
                }
                None => self.ended = true,
            }
        }
        let n = max.min(self.leftover.len());
        Ok(self.leftover.split_to(n))
    }
}

/// Hop-by-hop headers belong to one connection, not to the app's response;
/// PEP 3333 forbids them, and HTTP/2 refuses them outright.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade" | "te" | "trailer"
    )
}

/// The most response headers an app may send, and their most bytes (names
/// and values): the request-side defaults of `[http]` (max_headers,
/// max_header_bytes). A larger head is the app's error, a 500; without a cap
/// `HeaderMap` would panic past 32,768 entries.
pub const MAX_RESPONSE_HEADERS: usize = 100;
pub const MAX_RESPONSE_HEADER_BYTES: usize = 64 * 1024;

/// Parses the `Start` frame: `status\0name\0value\0…`.
fn parse_head(payload: &[u8]) -> Result<(StatusCode, HeaderMap), String> {
    let mut fields = frames::fields(payload);
    let status_line = fields.next().unwrap_or_default();
    let code = status_line.get(..3).ok_or("empty status")?;
    let status = StatusCode::from_bytes(code).map_err(|_| format!("bad status {:?}", String::from_utf8_lossy(status_line)))?;
    let count = payload.iter().filter(|b| **b == 0).count().div_ceil(2);
    if count > MAX_RESPONSE_HEADERS {
        return Err(format!("it has {count} headers, over the limit of {MAX_RESPONSE_HEADERS}"));
    }
    let head_bytes = payload.len() - status_line.len();
    if head_bytes > MAX_RESPONSE_HEADER_BYTES {
        return Err(format!("its headers take {head_bytes} bytes, over the limit of {MAX_RESPONSE_HEADER_BYTES}"));
    }
    let mut headers = HeaderMap::with_capacity(count);
    while let Some(name) = fields.next() {
        let value = fields.next().ok_or("a header without a value")?;
        let name = HeaderName::from_bytes(name).map_err(|_| format!("bad header name {:?}", String::from_utf8_lossy(name)))?;
        if hop_by_hop(&name) {
            tracing::debug!(target: LOG_TARGET, "dropped hop-by-hop response header {name}");
            continue;
        }
        let value = HeaderValue::from_bytes(value).map_err(|_| format!("bad value for header {name}"))?;
        headers.append(name, value);
    }
    Ok((status, headers))
}

/// The 504's body, for a request stopped by request_timeout or cpu_time_limit.
const TOOK_TOO_LONG: &str = "Gateway Timeout: the application took too long\n";

/// How an exchange ended, for the access log.
struct Outcome {
    status: Option<StatusCode>,
    bytes: u64,
    note: &'static str,
}

/// A request waiting for an instance, with the channels its answer goes to.
pub struct Job {
    pub info: RequestInfo,
    /// The environ payload of the `Request` frame.
    pub environ: Bytes,
    pub body: LimitedBody,
    pub head_tx: oneshot::Sender<Head>,
    pub body_tx: ResponseSender,
    /// Set when an instance takes the job, so queue_timeout only answers
    /// for requests that are still waiting (and the metrics see the wait).
    pub picked: std::sync::Arc<std::sync::OnceLock<Instant>>,
}

/// Serves one request of `group` on `instance`, under the group's `limits`:
/// runs the exchange, reports the head through `head_tx` and streams the
/// body into `body_tx`. An `Err` means the instance is lost and must be
/// discarded.
pub async fn serve(group: &str, limits: &Limits, instance: &mut Instance, job: Job) -> Result<(), Gone> {
    let Job { info, environ, body, head_tx, body_tx, picked } = job;
    let _ = picked.set(Instant::now());
    if head_tx.is_closed() {
        // The client gave up, or queue_timeout answered, while it waited:
        // it costs no instance time.
        tracing::debug!(target: LOG_TARGET, group = %group, request = %info.id, "dropped from the queue: already answered or abandoned");
        return Ok(());
    }
    instance.io.set_request(Some(info.id.clone()));
    let mut head_tx = Some(head_tx);
    let mut reader = BodyReader { body, leftover: Bytes::new(), ended: false, malformed: None };
    let mut outcome = Outcome { status: None, bytes: 0, note: "" };
    let limit = limits.request_timeout;
    instance.cpu.start(limits.cpu_time_limit);
    let result = instance.drive(limit, async |io| exchange(io, &environ, &mut reader, &mut head_tx, &body_tx, &mut outcome).await).await;
    instance.cpu.start(None);
    instance.io.set_request(None);
    match result {
        Ok(()) => {
            instance.served += 1;
            if outcome.note == "body_write_timeout" {
                tracing::warn!(target: "wasgi::access", group = %group, request = %info.id,
                    "{} {}: the client took no response data for {}s (body_write_timeout): the response was cut short, the app saw a disconnect, the instance is free",
                    info.method, info.target, body_tx.write_timeout.as_secs());
            }
            if let Some(why) = &reader.malformed {
                tracing::warn!(target: "wasgi::access", group = %group, request = %info.id, status = 400,
                    "{} {}: the client sent a malformed request body ({why}): 400 and the connection closed, whatever the app answered",
                    info.method, info.target);
            }
            Ok(())
        }
        Err(gone) => {
            // A limit the request ran into is the app's slowness (504); any
            // other end is an instance lost under it (502).
            let (code, text, note) = match &gone {
                Gone::CpuLimit(_) => {
                    tracing::error!(
                        target: LOG_TARGET,
                        group = %group, instance = instance.io.id, request = %info.id,
                        "{} {} exceeded cpu_time_limit ({:.0}s): the instance was interrupted and will be replaced",
                        info.method, info.target, limits.cpu_time_limit.unwrap_or_default().as_secs_f64()
                    );
                    (StatusCode::GATEWAY_TIMEOUT, TOOK_TOO_LONG, "cpu_time_limit")
                }
                Gone::Deadline(_) => {
                    tracing::error!(
                        target: LOG_TARGET,
                        group = %group, instance = instance.io.id, request = %info.id,
                        "{} {} exceeded request_timeout ({:.0}s): the instance was interrupted and will be replaced",
                        info.method, info.target, limit.unwrap_or_default().as_secs_f64()
                    );
                    (StatusCode::GATEWAY_TIMEOUT, TOOK_TOO_LONG, "request_timeout")
                }
                _ => {
                    tracing::error!(target: LOG_TARGET, group = %group, instance = instance.io.id, request = %info.id, "instance lost during {} {}: {gone}", info.method, info.target);
                    (StatusCode::BAD_GATEWAY, "Bad Gateway: the application instance stopped\n", "instance lost")
                }
            };
            match head_tx.take() {
                Some(tx) => {
                    let _ = tx.send(Head::Error(code, text));
                }
                None => {
                    // The head went out already: cut the body short so the
                    // client sees a broken response, not a complete one.
                    body_tx.fail("the application instance stopped".into());
                }
            }
            let _ = note;
            Err(gone)
        }
    }
}

async fn exchange(
    io: &mut GuestIo,
    environ: &[u8],
    body: &mut BodyReader,
    head_tx: &mut Option<oneshot::Sender<Head>>,
    body_tx: &ResponseSender,
    outcome: &mut Outcome,
) -> Result<(), Gone> {
    let mut client_gone = false;
    // The client took no response data for body_write_timeout.
    let mut stalled = false;
    // The app's head was unusable: the client got a 500, drop its body.
    let mut discard = false;
    let (mut unacked_bytes, mut unacked_frames) = (0usize, 0usize);


    io.send(frames::encode(Kind::Request, environ)).await?;
    loop {
        let (kind, payload) = io.recv().await?;
        match kind {
            Kind::Read => {
                let max = payload.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0);
                match body.read(max as usize).await {
                    Ok(data) => io.send(frames::encode(Kind::Body, &data)).await?,
                    Err(e) => {
                        if let Some(why) = &body.malformed {
                            client_error(io.id, why, head_tx, body_tx, outcome);
                            discard = true;
                        }
                        io.send(frames::encode(Kind::BodyError, e.as_bytes())).await?
                    }
                }
            }
            // Only the first head counts; a guest that sends another (around
            // the bridge), or one after the client's 400 for a malformed body,
            // changes neither the response nor its access log line.
            Kind::Start if head_tx.is_none() => tracing::debug!(target: LOG_TARGET, instance = io.id, "ignored a second response head"),
            Kind::Start => match parse_head(&payload) {
                Ok((status, headers)) => {
                    outcome.status = Some(status);
                    if let Some(tx) = head_tx.take() {
                        client_gone |= tx.send(Head::Response(status, headers)).is_err();
                    }
                }
                Err(why) => {
                    tracing::error!(target: LOG_TARGET, instance = io.id, "the application sent an invalid response head: {why}");
                    outcome.status = Some(StatusCode::INTERNAL_SERVER_ERROR);
                    discard = true;
                    if let Some(tx) = head_tx.take() {
                        let _ = tx.send(Head::Error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n"));
                    }
                }
            },
            Kind::Data => {
                unacked_bytes += payload.len();
                unacked_frames += 1;
                if !client_gone && !discard {
                    outcome.bytes += payload.len() as u64;
                    match body_tx.send(payload).await {
                        Sent::Taken => {}
                        Sent::Gone => client_gone = true,
                        Sent::Stalled => {
                            client_gone = true;
                            stalled = true;
                        }
                    }
                }
                if unacked_bytes >= ACK_BYTES || unacked_frames >= ACK_FRAMES {
                    unacked_bytes = 0;
                    unacked_frames = 0;
                    io.send(frames::encode(if client_gone { Kind::Cancel } else { Kind::Continue }, b"")).await?;
                }
            }
            Kind::End => {
                if stalled {
                    outcome.note = "body_write_timeout";
                } else if client_gone {
                    outcome.note = "client gone";
                } else if !discard {
                    body_tx.complete();
                }
                return Ok(());
            }
            Kind::Failed if discard => return Ok(()),
            Kind::Failed => {
                body_tx.fail(String::from_utf8_lossy(&payload).into_owned());
                outcome.note = "app failed mid-response";
                return Ok(());
            }
            other => return Err(Gone::UnexpectedFrame(other)),
        }
    }
}

/// The client's request body is malformed: the client gets a 400 and its
/// connection closes (hyper reads nothing more from it) whatever the app
/// answers, which the caller then discards; a response already under way is
/// cut short instead.
fn client_error(
    instance: u64,
    why: &str,
    head_tx: &mut Option<oneshot::Sender<Head>>,
    body_tx: &ResponseSender,
    outcome: &mut Outcome,
) {
    tracing::debug!(target: LOG_TARGET, instance, "the client's request body is malformed: {why}");
    outcome.note = "malformed request body (client error)";
    match head_tx.take() {
        Some(tx) => {
            outcome.status = Some(StatusCode::BAD_REQUEST);
            let _ = tx.send(Head::ClientError(StatusCode::BAD_REQUEST, "Bad Request: malformed request body\n"));
        }
        None => body_tx.fail("the request body was malformed".into()),
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    /// A `Start` payload: the status line, then each name and value.
    fn start(status: &str, headers: &[(&str, &[u8])]) -> Vec<u8> {
        let mut payload = status.as_bytes().to_vec();
        for (name, value) in headers {
            payload.push(0);
            payload.extend_from_slice(name.as_bytes());
            payload.push(0);
            payload.extend_from_slice(value);
        }
        payload
    }

    #[test]
    fn a_head_keeps_its_status_and_headers_in_order_repeats_included() {
        let payload = start("404 Not Found", &[("Content-Type", b"text/plain"), ("Set-Cookie", b"a=1"), ("set-cookie", b"b=2"), ("X-Empty", b"")]);
        let (status, headers) = parse_head(&payload).unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(headers.len(), 4);
        assert_eq!(headers["content-type"], "text/plain");
        let cookies: Vec<_> = headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(headers["x-empty"], "");
        // A status line is its code; the reason phrase is the app's business.
        assert_eq!(parse_head(b"200").unwrap().0, StatusCode::OK);
        assert_eq!(parse_head(b"599 Whatever").unwrap().0.as_u16(), 599);
    }

    #[test]
    fn hop_by_hop_headers_are_dropped_and_the_rest_kept() {
        let hop: [(&str, &[u8]); 7] = [
            ("Connection", b"close"),
            ("Keep-Alive", b"timeout=5"),
            ("Proxy-Connection", b"keep-alive"),
            ("Transfer-Encoding", b"chunked"),
            ("Upgrade", b"h2c"),
            ("TE", b"trailers"),
            ("Trailer", b"X-Sum"),
        ];
        let mut all = hop.to_vec();
        all.push(("X-Kept", b"yes"));
        let (_, headers) = parse_head(&start("200 OK", &all)).unwrap();
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert_eq!(headers["x-kept"], "yes");
    }

    #[test]
    fn a_broken_head_is_refused_with_what_is_wrong() {
        let refused = |payload: &[u8]| parse_head(payload).expect_err(&format!("{:?} is refused", String::from_utf8_lossy(payload)));
        assert_eq!(refused(b""), "empty status");
        assert_eq!(refused(b"OK"), "empty status");
        assert_eq!(refused(b"2xx OK"), "bad status \"2xx OK\"");
        assert_eq!(refused(b"099 Low"), "bad status \"099 Low\"");
        assert_eq!(refused(b"200 OK\0X-Lonely"), "a header without a value");
        assert_eq!(refused(&start("200 OK", &[("Bad Name", b"v")])), "bad header name \"Bad Name\"");
        assert_eq!(refused(&start("200 OK", &[("X-Split", b"a\r\nInjected: yes")])), "bad value for header x-split");
    }

    #[test]
    fn the_header_count_and_size_are_capped() {
        let names: Vec<String> = (0..=MAX_RESPONSE_HEADERS).map(|i| format!("X-H{i}")).collect();
        let at_limit: Vec<(&str, &[u8])> = names[..MAX_RESPONSE_HEADERS].iter().map(|n| (n.as_str(), &b"v"[..])).collect();
        assert_eq!(parse_head(&start("200 OK", &at_limit)).unwrap().1.len(), MAX_RESPONSE_HEADERS);
        let over: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"v"[..])).collect();
        assert_eq!(
            parse_head(&start("200 OK", &over)).unwrap_err(),
            format!("it has {} headers, over the limit of {MAX_RESPONSE_HEADERS}", MAX_RESPONSE_HEADERS + 1)
        );
        let big = vec![b'a'; MAX_RESPONSE_HEADER_BYTES];
        let error = parse_head(&start("200 OK", &[("X-Big", &big)])).unwrap_err();
        assert!(error.starts_with("its headers take ") && error.ends_with(&format!("over the limit of {MAX_RESPONSE_HEADER_BYTES}")), "{error}");
        let fits = vec![b'a'; MAX_RESPONSE_HEADER_BYTES - "\0X-Big\0".len()];
        assert_eq!(parse_head(&start("200 OK", &[("X-Big", &fits)])).unwrap().1["x-big"].len(), fits.len());
    }
}
