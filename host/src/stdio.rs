//! The guest's three standard streams, as wasmtime-wasi sees them.
//!
//! stdin and stdout are bounded channels of byte slices: the host's frames go
//! in, the bridge's frames come out, and a full channel parks the writer (the
//! guest's fiber or the host's request task) instead of growing a buffer.
//! stderr is the app's own output (print(), sys.stderr, wsgi.errors): it is
//! cut into lines and logged, tagged with the app, instance and request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use wasmtime_wasi::cli::{IsTerminal, StdinStream, StdoutStream};
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{InputStream, OutputStream, StreamError, StreamResult};

/// How many slices each direction may hold before the writer waits.
pub const CHANNEL_SLOTS: usize = 16;

/// The guest's stdin: whatever the host sends on the paired `Sender`.
pub struct ChannelStdin(Mutex<Option<mpsc::Receiver<Bytes>>>);

impl ChannelStdin {
    pub fn new(receiver: mpsc::Receiver<Bytes>) -> Self {
        Self(Mutex::new(Some(receiver)))
    }
}

impl IsTerminal for ChannelStdin {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for ChannelStdin {
    fn p2_stream(&self) -> Box<dyn InputStream> {
        // WASIp1 asks for the stream once, when the context is built.
        let receiver = self.0.lock().unwrap().take();
        Box::new(ChannelInput { receiver, pending: Bytes::new() })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncRead + Send + Sync> {
        // Only WASIp3 guests use this; python.wasm is WASIp1.
        Box::new(tokio::io::empty())
    }
}

struct ChannelInput {
    /// `None` once the host hung up (or the stream was already handed out).
    receiver: Option<mpsc::Receiver<Bytes>>,
    pending: Bytes,
}

impl ChannelInput {
    fn take(&mut self, size: usize) -> Bytes {
        let n = size.min(self.pending.len());
        self.pending.split_to(n)
    }
}

#[async_trait::async_trait]
impl InputStream for ChannelInput {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        if self.pending.is_empty() {
            let Some(receiver) = self.receiver.as_mut() else {
                return Err(StreamError::Closed);
            };
            match receiver.try_recv() {
                Ok(bytes) => self.pending = bytes,
                Err(mpsc::error::TryRecvError::Empty) => return Ok(Bytes::new()),
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.receiver = None;
                    return Err(StreamError::Closed);
                }
            }
        }
        Ok(self.take(size))
    }

    async fn blocking_read(&mut self, size: usize) -> StreamResult<Bytes> {
        while self.pending.is_empty() {
            let Some(receiver) = self.receiver.as_mut() else {
                return Err(StreamError::Closed);
            };
            match receiver.recv().await {
                Some(bytes) => self.pending = bytes,
                None => {
                    self.receiver = None;
                    return Err(StreamError::Closed);
                }
            }
        }
        Ok(self.take(size))
    }
}

#[async_trait::async_trait]
impl Pollable for ChannelInput {
    async fn ready(&mut self) {
        if !self.pending.is_empty() {
            return;
        }
        if let Some(receiver) = self.receiver.as_mut() {
            match receiver.recv().await {
                Some(bytes) => self.pending = bytes,
                None => self.receiver = None,
            }
        }
    }
}

/// The guest's stdout: every write goes to the paired `Receiver`.
pub struct ChannelStdout(mpsc::Sender<Bytes>);

impl ChannelStdout {
    pub fn new(sender: mpsc::Sender<Bytes>) -> Self {
        Self(sender)
    }
}

impl IsTerminal for ChannelStdout {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for ChannelStdout {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(ChannelOutput(self.0.clone()))
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASIp3 guests use this; python.wasm is WASIp1.
        Box::new(tokio::io::sink())
    }
}

struct ChannelOutput(mpsc::Sender<Bytes>);

#[async_trait::async_trait]
impl OutputStream for ChannelOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.0.try_send(bytes).map_err(|e| match e {
            mpsc::error::TrySendError::Closed(_) => StreamError::Closed,
            mpsc::error::TrySendError::Full(_) => {
                StreamError::Trap(wasmtime::format_err!("stdout written past check_write"))
            }
        })
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        if self.0.is_closed() {
            Err(StreamError::Closed)
        } else if self.0.capacity() > 0 {
            Ok(64 * 1024)
        } else {
            Ok(0)
        }
    }

    async fn blocking_write_and_flush(&mut self, bytes: Bytes) -> StreamResult<()> {
        // The path WASIp1's fd_write takes: wait for room, never buffer more.
        self.0.send(bytes).await.map_err(|_| StreamError::Closed)
    }
}

#[async_trait::async_trait]
impl Pollable for ChannelOutput {
    async fn ready(&mut self) {
        // Wait for a free slot; the permit is released at once, and as the
        // only writer this stream keeps that slot for its next write.
        let _ = self.0.reserve().await;
    }
}

/// Who is speaking when the guest writes to stderr.
#[derive(Clone)]
pub struct LogTag {
    pub app: Arc<str>,
    pub instance: u64,
    /// The request the instance is serving, 0 between requests.
    pub request: Arc<AtomicU64>,
}

/// One log record of the app or the bridge (`level`: error, warn, or
/// anything else for info), tagged with who is speaking.
pub fn app_record(tag: &LogTag, level: &[u8], message: &str) {
    let request = tag.request.load(Ordering::Relaxed);
    match level {
        b"error" => tracing::error!(target: "wasgi::app", app = %tag.app, instance = tag.instance, request, "{message}"),
        b"warn" => tracing::warn!(target: "wasgi::app", app = %tag.app, instance = tag.instance, request, "{message}"),
        _ => tracing::info!(target: "wasgi::app", app = %tag.app, instance = tag.instance, request, "{message}"),
    }
}

/// The guest's stderr (and, for a guest on host calls, its stdout): whole
/// lines go to the log.
pub struct LogStderr(pub LogTag);

impl IsTerminal for LogStderr {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStderr {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LogLines { tag: self.0.clone(), partial: BytesMut::new() })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::sink())
    }
}

/// A line longer than this is logged in pieces rather than buffered.
const MAX_LOG_LINE: usize = 16 * 1024;

struct LogLines {
    tag: LogTag,
    partial: BytesMut,
}

impl LogLines {
    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches(['\n', '\r']);
        let request = self.tag.request.load(Ordering::Relaxed);
        tracing::info!(
            target: "wasgi::app",
            app = %self.tag.app,
            instance = self.tag.instance,
            request = request,
            "{line}"
        );
    }
}

#[async_trait::async_trait]
impl OutputStream for LogLines {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let mut rest = &bytes[..];
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            if self.partial.is_empty() {
                self.emit(&rest[..nl]);
            } else {
                self.partial.extend_from_slice(&rest[..nl]);
                let line = self.partial.split();
                self.emit(&line);
            }
            rest = &rest[nl + 1..];
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > MAX_LOG_LINE {
            let line = self.partial.split();
            self.emit(&line);
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for LogLines {
    async fn ready(&mut self) {}
}

impl Drop for LogLines {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            let line = self.partial.split();
            self.emit(&line);
        }
    }
}
