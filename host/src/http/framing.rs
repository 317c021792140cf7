//! Finds HTTP/1 requests that carry both Content-Length and
//! Transfer-Encoding, so they can be refused with a 400.
//!
//! hyper resolves that pair the RFC 9112 way (chunked wins, the connection
//! closes afterwards) and drops the Content-Length before the service sees
//! the request, so the service cannot tell. This watcher follows the bytes
//! hyper reads from a connection, frames each request the way hyper does
//! (head, then a Content-Length or chunked body), and records one verdict per
//! request, in order. Anything it does not understand (HTTP/2, an upgrade, a
//! framing error hyper will refuse anyway) turns it off for that connection.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::http::head_error::HeadError;

/// One verdict per request on a connection: true if it was ambiguous.
pub type Verdicts = Arc<Mutex<VecDeque<bool>>>;

/// A head or a line longer than this turns the watcher off (hyper refuses
/// such requests itself).
const MAX_HEAD: usize = 128 * 1024;
const MAX_LINE: usize = 8 * 1024;

enum State {
    Head,
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd(u8),
    Trailers,
    Off,
}

pub struct Watcher {
    state: State,
    buf: Vec<u8>,
    verdicts: Verdicts,
}

impl Watcher {
    pub fn new(verdicts: Verdicts) -> Watcher {
        Watcher { state: State::Head, buf: Vec::new(), verdicts }
    }

    /// Follows `data`, the next bytes of the connection.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.state {
                State::Off => return,
                State::Body(left) => {
                    let n = (*left).min(data.len() as u64) as usize;
                    *left -= n as u64;
                    data = &data[n..];
                    if *left == 0 {
                        self.state = State::Head;
                    }
                }
                State::ChunkData(left) => {
                    let n = (*left).min(data.len() as u64) as usize;
                    *left -= n as u64;
                    data = &data[n..];
                    if *left == 0 {
                        self.state = State::ChunkEnd(2);
                    }
                }
                State::ChunkEnd(left) => {
                    let n = (*left as usize).min(data.len());
                    *left -= n as u8;
                    data = &data[n..];
                    if *left == 0 {
                        self.state = State::ChunkSize;
                    }
                }
                State::Head => {
                    if self.buf.is_empty() {
                        // Empty lines before a request line are allowed.
                        while let Some(rest) = data.strip_prefix(b"\r\n").or_else(|| data.strip_prefix(b"\n")) {
                            data = rest;
                        }
                        if data.is_empty() {
                            return;
                        }
                    }
                    let taken = self.take_until(&mut data, head_end, MAX_HEAD);
                    if let Some(head) = taken {
                        self.head(&head);
                    }
                }
                State::ChunkSize => {
                    if let Some(line) = self.take_until(&mut data, line_end, MAX_LINE) {
                        let text = String::from_utf8_lossy(&line);
                        let size = text.trim().split(';').next().unwrap_or("").trim();
                        self.state = match u64::from_str_radix(size, 16) {
                            Ok(0) => State::Trailers,
                            Ok(n) => State::ChunkData(n),
                            Err(_) => State::Off,
                        };
                    }
                }
                State::Trailers => {
                    if let Some(line) = self.take_until(&mut data, line_end, MAX_LINE) {
                        if line == b"\r\n" || line == b"\n" {
                            self.state = State::Head;
                        }
                    }
                }
            }
        }
    }

    /// Moves bytes from `data` into the buffer until `end` finds where what
    /// it looks for ends; returns the buffered bytes up to there once it does.
    fn take_until(&mut self, data: &mut &[u8], end: fn(&[u8], usize) -> Option<usize>, max: usize) -> Option<Vec<u8>> {
        // What `end` looks for is at most 3 bytes long: look again from there.
        let start = self.buf.len().saturating_sub(2);
        self.buf.extend_from_slice(data);
        match end(&self.buf, start) {
            Some(at) => {
                let rest = self.buf.split_off(at);
                let taken = std::mem::take(&mut self.buf);
                let consumed = data.len() - rest.len();
                *data = &data[consumed..];
                Some(taken)
            }
            None => {
                *data = &[];
                if self.buf.len() > max {
                    self.state = State::Off;
                }
                None
            }
        }
    }

    fn head(&mut self, head: &[u8]) {
        let mut headers = [httparse::EMPTY_HEADER; 256];
        let mut request = httparse::Request::new(&mut headers);
        if !matches!(request.parse(head), Ok(httparse::Status::Complete(_))) || request.version != Some(1) {
            self.state = State::Off;
            return;
        }
        let mut lengths = Vec::new();
        let mut codings = Vec::new();
        let mut upgrade = request.method == Some("CONNECT");
        for h in request.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                lengths.push(String::from_utf8_lossy(h.value).trim().to_owned());
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                codings.push(String::from_utf8_lossy(h.value).to_ascii_lowercase());
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        self.verdicts.lock().unwrap_or_else(|e| e.into_inner()).push_back(!lengths.is_empty() && !codings.is_empty());
        self.state = if upgrade {
            State::Off
        } else if !codings.is_empty() {
            let last = codings.join(",");
            if last.rsplit(',').next().map(str::trim) == Some("chunked") { State::ChunkSize } else { State::Off }
        } else if let Some(first) = lengths.first() {
            match first.parse::<u64>() {
                Ok(n) if lengths.iter().all(|l| l == first) => {
                    if n == 0 {
                        State::Head
                    } else {
                        State::Body(n)
                    }
                }
                _ => State::Off,
            }
        } else {
            State::Head
        };
    }
}

/// What RFC 9112 asks a server to refuse with a 400 that hyper lets through
/// (it refuses the rest itself: see tests/tests/e2e/malformed.rs): two Host
/// headers, `chunked` applied twice or not last (hyper only looks at the last
/// coding), raw non-ASCII bytes in the target (the http crate accepts them
/// when they are UTF-8), and the `*` target of a method other than OPTIONS.
pub fn head_problem(parts: &http::request::Parts, from_trusted_proxy: bool) -> Option<HeadError> {
    if parts.headers.get_all(http::header::HOST).iter().nth(1).is_some() {
        return Some(HeadError::TwoHosts);
    }
    // HTTP/1.1 requires Host (HTTP/2 carries :authority instead; 1.0 may omit it).
    if parts.version == http::Version::HTTP_11 && !parts.headers.contains_key(http::header::HOST) {
        return Some(HeadError::NoHost);
    }
    let codings: Vec<&[u8]> = parts
        .headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|c| c.trim_ascii())
        .filter(|c| !c.is_empty())
        .collect();
    let chunked = |c: &&[u8]| c.eq_ignore_ascii_case(b"chunked");
    if codings.iter().filter(|c| chunked(c)).count() > 1 || codings.iter().rev().skip(1).any(chunked) {
        return Some(HeadError::BadChunkedCoding);
    }
    // The target as the client sent it: the http crate keeps it whole. A
    // trusted proxy has judged it already: Apache accepts raw UTF-8 in a
    // query and passes it on as it is, and mod_wsgi would have served it.
    let target = parts.uri.path_and_query().map_or("", |p| p.as_str());
    if !from_trusted_proxy && (!target.is_ascii() || parts.uri.authority().is_some_and(|a| !a.as_str().is_ascii())) {
        return Some(HeadError::NonAsciiTarget);
    }
    if parts.uri.path() == "*" && parts.method != http::Method::OPTIONS {
        return Some(HeadError::AsteriskNotOptions);
    }
    None
}

/// The end of a request head in `buf` (searched from `from`): an empty line,
/// which ends in CRLF or, as hyper (httparse) also accepts, a bare LF.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find_map(|i| match &buf[i..] {
        [b'\n', b'\n', ..] => Some(i + 2),
        [b'\n', b'\r', b'\n', ..] => Some(i + 3),
        _ => None,
    })
}

/// The end of a line (chunk size, trailer): its LF.
fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    buf[from..].iter().position(|b| *b == b'\n').map(|i| from + i + 1)
}

/// A connection whose reads pass through a [`Watcher`] and whose writes
/// must make progress: a client that stops reading while a response waits
/// for it gets its connection closed after `write_timeout` (a write error
/// to hyper, which drops the response; the exchange then sees a client that
/// went away and frees the instance). hyper has no such timeout of its own.
pub struct WatchedIo<T> {
    inner: T,
    watcher: Watcher,
    write_timeout: Duration,
    /// Running while a write waits for the socket; none while writes flow.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Set when `stall` ran out, for the request whose response it cut.
    stalled: Arc<AtomicBool>,
}

impl<T> WatchedIo<T> {
    pub fn new(inner: T, verdicts: Verdicts, write_timeout: Duration, stalled: Arc<AtomicBool>) -> Self {
        WatchedIo { inner, watcher: Watcher::new(verdicts), write_timeout, stall: None, stalled }
    }

    /// Passes a write's result on, timing how long writes have been waiting.
    fn progress<R>(&mut self, cx: &mut Context<'_>, result: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if result.is_ready() {
            self.stall = None;
            return result;
        }
        let timeout = self.write_timeout;
        let stall = self.stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stall.as_mut().poll(cx).is_ready() {
            self.stalled.store(true, Ordering::Release);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client took no data for {}s (body_write_timeout)", timeout.as_secs()),
            )));
        }
        Poll::Pending
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &result {
            this.watcher.feed(&buf.filled()[before..]);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        self.progress(cx, result)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.progress(cx, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts_of(wire: &[u8], step: usize) -> Vec<bool> {
        let verdicts = Verdicts::default();
        let mut w = Watcher::new(verdicts.clone());
        for piece in wire.chunks(step) {
            w.feed(piece);
        }
        let v = verdicts.lock().unwrap().iter().copied().collect();
        v
    }

    #[test]
    fn one_verdict_per_request_across_bodies_and_split_reads() {
        let wire = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
GET /b HTTP/1.1\r\nHost: x\r\n\r\n\
POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nworld\r\n0\r\nTrailer: t\r\n\r\n\
POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
GET /e HTTP/1.1\r\nHost: x\r\n\r\n";
        for step in [1, 3, 7, wire.len()] {
            assert_eq!(verdicts_of(wire, step), [false, false, false, true, false], "read in pieces of {step}");
        }
    }

    #[test]
    fn body_bytes_that_look_like_a_head_are_not_a_request() {
        let body = b"GET /fake HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut wire = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        wire.extend_from_slice(body);
        assert_eq!(verdicts_of(&wire, 5), [false]);
    }

    #[test]
    fn bare_lf_heads_are_followed_as_hyper_reads_them() {
        let wire = b"POST /a HTTP/1.1\nHost: x\nContent-Length: 3\n\nabc\
GET /b HTTP/1.1\r\nHost: x\n\r\n\
POST /c HTTP/1.1\nHost: x\nContent-Length: 4\nTransfer-Encoding: chunked\n\n0\r\n\r\n\
GET /d HTTP/1.1\nHost: x\n\n";
        for step in [1, 2, 5, wire.len()] {
            assert_eq!(verdicts_of(wire, step), [false, false, true, false], "read in pieces of {step}");
        }
    }

    /// One generated HTTP/1.1 request as hyper accepts it (heads with CRLF
    /// or bare-LF lines, Content-Length or chunked bodies whose bytes look
    /// like heads and chunk lines), and whether it carries both CL and TE.
    fn generated_request(g: &mut crate::fuzz::Gen) -> (Vec<u8>, bool) {
        let looks_like_http = b"\r\n0123456789abcdef;GET /HTTP1.:Content-Length Transfer-Encoding chunked";
        let mut wire = Vec::new();
        let eol = |g: &mut crate::fuzz::Gen| -> &'static [u8] { if g.chance(3) { b"\n" } else { b"\r\n" } };
        if g.chance(8) {
            wire.extend_from_slice(eol(g));
        }
        let method = *g.pick(&["GET", "POST", "PUT", "OPTIONS", "DELETE"]);
        wire.extend_from_slice(format!("{method} /{} HTTP/1.1", g.below(1000)).as_bytes());
        wire.extend_from_slice(eol(g));
        let mut fields: Vec<Vec<u8>> = vec![b"Host: x".to_vec()];
        for _ in 0..g.below(3) {
            let mut field = format!("X-{}: ", g.below(100)).into_bytes();
            field.extend(g.bytes_of(b"abc ;=:,/\t", 0..12));
            fields.push(field);
        }
        let kind = g.below(4); // none, Content-Length, chunked, both
        let mut body = Vec::new();
        if kind == 1 {
            body = g.bytes_of(looks_like_http, 0..60);
            fields.push(format!("Content-Length: {}", body.len()).into_bytes());
        }
        if kind >= 2 {
            let coding = *g.pick(&["chunked", "Chunked", "gzip, chunked", "gzip,chunked"]);
            fields.push(format!("Transfer-Encoding: {coding}").into_bytes());
            if kind == 3 {
                fields.push(format!("Content-Length: {}", g.below(40)).into_bytes());
            }
            for _ in 0..g.below(4) {
                let data = g.bytes_of(looks_like_http, 1..31);
                body.extend_from_slice(format!("{:x}", data.len()).as_bytes());
                if g.chance(3) {
                    body.extend_from_slice(b";ext=1");
                }
                body.extend_from_slice(b"\r\n");
                body.extend_from_slice(&data);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"0\r\n");
            if g.chance(3) {
                body.extend_from_slice(b"Trailer: t\r\n");
            }
            body.extend_from_slice(b"\r\n");
        }
        // Field order is the client's.
        for i in (1..fields.len()).rev() {
            fields.swap(i, g.below(i + 1));
        }
        for field in fields {
            wire.extend_from_slice(&field);
            wire.extend_from_slice(eol(g));
        }
        wire.extend_from_slice(eol(g));
        wire.extend_from_slice(&body);
        (wire, kind == 3)
    }

    #[test]
    fn fuzz_a_well_framed_pipeline_gets_one_right_verdict_per_request_however_it_is_read() {
        crate::fuzz::check("framing pipeline", |g| {
            let (mut wire, mut expected) = (Vec::new(), Vec::new());
            for _ in 0..1 + g.below(5) {
                let (request, ambiguous) = generated_request(g);
                wire.extend_from_slice(&request);
                expected.push(ambiguous);
            }
            let verdicts = Verdicts::default();
            let mut w = Watcher::new(verdicts.clone());
            let mut rest = &wire[..];
            while !rest.is_empty() {
                let n = (1 + g.below(64)).min(rest.len());
                w.feed(&rest[..n]);
                rest = &rest[n..];
            }
            let got: Vec<bool> = verdicts.lock().unwrap().iter().copied().collect();
            assert_eq!(got, expected, "wire: {:?}", String::from_utf8_lossy(&wire));
        });
    }

    #[test]
    fn fuzz_arbitrary_bytes_never_panic_the_watcher() {
        crate::fuzz::check("framing bytes", |g| {
            let alphabet = b"\r\n\r\n0123456789abcdefxyz ;:,GET /HTTP/1.1 Content-Length: 5 Transfer-Encoding: chunked\x00\xff";
            let mut w = Watcher::new(Verdicts::default());
            for _ in 0..g.below(20) {
                let piece = if g.chance(3) { generated_request(g).0 } else { g.bytes_of(alphabet, 0..80) };
                w.feed(&piece);
            }
        });
    }

    /// A request head as hyper hands it to the service.
    fn parts(method: &str, target: &str, version: http::Version, headers: &[(&str, &[u8])]) -> http::request::Parts {
        let mut request = http::Request::builder().method(method).uri(target).version(version);
        for (name, value) in headers {
            request = request.header(*name, http::HeaderValue::from_bytes(value).unwrap());
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn head_problem_finds_what_rfc_9112_refuses_and_hyper_lets_through() {
        use http::Version;
        let host: (&str, &[u8]) = ("host", b"x");
        let cases: Vec<(http::request::Parts, Option<HeadError>)> = vec![
            (parts("GET", "/", Version::HTTP_11, &[host]), None),
            (parts("GET", "/", Version::HTTP_11, &[host, ("host", b"y")]), Some(HeadError::TwoHosts)),
            (parts("GET", "/", Version::HTTP_11, &[]), Some(HeadError::NoHost)),
            // HTTP/1.0 may omit Host; HTTP/2 carries :authority instead.
            (parts("GET", "/", Version::HTTP_10, &[]), None),
            (parts("GET", "/", Version::HTTP_2, &[]), None),
            (parts("POST", "/", Version::HTTP_11, &[host, ("transfer-encoding", b"gzip, chunked")]), None),
            (parts("POST", "/", Version::HTTP_11, &[host, ("transfer-encoding", b"chunked, gzip")]), Some(HeadError::BadChunkedCoding)),
            (parts("POST", "/", Version::HTTP_11, &[host, ("transfer-encoding", b"chunked, Chunked")]), Some(HeadError::BadChunkedCoding)),
            (
                parts("POST", "/", Version::HTTP_11, &[host, ("transfer-encoding", b"chunked"), ("transfer-encoding", b"chunked")]),
                Some(HeadError::BadChunkedCoding),
            ),
            (parts("GET", "/caf\u{e9}", Version::HTTP_11, &[host]), Some(HeadError::NonAsciiTarget)),
            (parts("GET", "/?q=caf\u{e9}", Version::HTTP_11, &[host]), Some(HeadError::NonAsciiTarget)),
            (parts("GET", "/caf%C3%A9", Version::HTTP_11, &[host]), None),
            (parts("OPTIONS", "*", Version::HTTP_11, &[host]), None),
            (parts("GET", "*", Version::HTTP_11, &[host]), Some(HeadError::AsteriskNotOptions)),
        ];
        for (head, expected) in cases {
            assert_eq!(head_problem(&head, false), expected, "{} {} {:?} {:?}", head.method, head.uri, head.version, head.headers);
        }
        // A trusted proxy has judged the target already (Apache passes raw UTF-8 in a query on).
        assert_eq!(head_problem(&parts("GET", "/?q=caf\u{e9}", Version::HTTP_11, &[host]), true), None);
        assert_eq!(head_problem(&parts("GET", "/", Version::HTTP_11, &[host, ("host", b"y")]), true), Some(HeadError::TwoHosts));
    }

    #[test]
    fn head_errors_answer_400_but_an_oversized_body_413() {
        let ambiguous = HeadError::AmbiguousLength;
        assert_eq!((ambiguous.status(), ambiguous.answer()), (http::StatusCode::BAD_REQUEST, "Bad Request\n"));
        let too_large = HeadError::BodyTooLarge { declared: 2000, max: 1000 };
        assert_eq!((too_large.status(), too_large.answer()), (http::StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large\n"));
        assert_eq!(too_large.to_string(), "body of 2000 bytes is over max_body_bytes (1000)");
    }

    #[test]
    fn http2_and_garbage_turn_it_off() {
        assert!(verdicts_of(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 4).is_empty());
        assert!(verdicts_of(b"\x16\x03\x01 not http\r\n\r\n", 4).is_empty());
    }
}
