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
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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
                    let taken = self.take_until(&mut data, b"\r\n\r\n", MAX_HEAD);
                    if let Some(head) = taken {
                        self.head(&head);
                    }
                }
                State::ChunkSize => {
                    if let Some(line) = self.take_until(&mut data, b"\n", MAX_LINE) {
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
                    if let Some(line) = self.take_until(&mut data, b"\n", MAX_LINE) {
                        if line == b"\r\n" || line == b"\n" {
                            self.state = State::Head;
                        }
                    }
                }
            }
        }
    }

    /// Moves bytes from `data` into the buffer until `end` completes; returns
    /// the buffered bytes (with `end`) once it does.
    fn take_until(&mut self, data: &mut &[u8], end: &[u8], max: usize) -> Option<Vec<u8>> {
        let start = self.buf.len().saturating_sub(end.len() - 1);
        self.buf.extend_from_slice(data);
        let found = self.buf[start..].windows(end.len()).position(|w| w == end).map(|i| start + i + end.len());
        match found {
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

/// A connection whose reads pass through a [`Watcher`].
pub struct WatchedIo<T> {
    inner: T,
    watcher: Watcher,
}

impl<T> WatchedIo<T> {
    pub fn new(inner: T, verdicts: Verdicts) -> Self {
        WatchedIo { inner, watcher: Watcher::new(verdicts) }
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
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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
    fn http2_and_garbage_turn_it_off() {
        assert!(verdicts_of(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 4).is_empty());
        assert!(verdicts_of(b"\x16\x03\x01 not http\r\n\r\n", 4).is_empty());
    }
}
