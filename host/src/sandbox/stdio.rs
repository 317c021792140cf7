//! The guest's three standard streams, as wasmtime-wasi sees them.
//!
//! stdin and stdout are bounded channels of byte slices: the host's frames go
//! in, the bridge's frames come out, and a full channel parks the writer (the
//! guest's fiber or the host's request task) instead of growing a buffer.
//! stderr is the app's own output (print(), sys.stderr, wsgi.errors): it is
//! cut into lines and logged, tagged with the app, instance and request.

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
    /// The request the instance is serving.
    pub request: CurrentRequest,
    /// The instance's log rate limit, shared by all its ways to log.
    budget: Arc<Mutex<LogBudget>>,
}

/// The id of the request an instance serves, for its log lines ("-"
/// between requests).
#[derive(Clone, Default)]
pub struct CurrentRequest(Arc<Mutex<Option<Arc<str>>>>);

impl CurrentRequest {
    pub fn set(&self, id: Option<Arc<str>>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = id;
    }

    pub fn get(&self) -> Arc<str> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_else(|| "-".into())
    }
}

/// The largest guest log record: a longer one is cut, and says by how much.
pub const MAX_LOG_RECORD: usize = 16 * 1024;
/// How many log records an instance may write at once ...
pub const LOG_BURST: f64 = 1000.0;
/// ... and per second after that; the rest are dropped and counted.
pub const LOG_RATE: f64 = 200.0;

/// A token bucket: a guest that floods the log loses records, not the host
/// its disk or its CPU; what it lost is said in one line.
struct LogBudget {
    tokens: f64,
    refilled: std::time::Instant,
    dropped: u64,
}

impl LogBudget {
    /// Whether one more record may be logged now.
    fn admit(&mut self) -> bool {
        let now = std::time::Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * LOG_RATE).min(LOG_BURST);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }
}

impl LogTag {
    pub fn new(app: Arc<str>, instance: u64) -> LogTag {
        let budget = LogBudget { tokens: LOG_BURST, refilled: std::time::Instant::now(), dropped: 0 };
        LogTag { app, instance, request: CurrentRequest::default(), budget: Arc::new(Mutex::new(budget)) }
    }

    /// One log record of the app or the bridge (`level`: error, warn, or
    /// anything else for info), tagged with who is speaking; cut to
    /// [`MAX_LOG_RECORD`] bytes, `cut` more having been dropped already by
    /// the caller, and subject to the instance's rate limit.
    pub fn record(&self, level: &[u8], message: &[u8], cut: usize) {
        let admitted = {
            let mut budget = self.budget.lock().expect("log budget lock");
            let admitted = budget.admit();
            if admitted && budget.dropped > 0 {
                self.say_dropped(std::mem::take(&mut budget.dropped));
            }
            admitted
        };
        if !admitted {
            return;
        }
        let (kept, cut) = match message.len() > MAX_LOG_RECORD {
            true => (&message[..MAX_LOG_RECORD], cut + message.len() - MAX_LOG_RECORD),
            false => (message, cut),
        };
        let mut text = String::from_utf8_lossy(kept);
        if cut > 0 {
            // A character cut in two shows as U+FFFD, which is honest.
            text.to_mut().push_str(&format!(" [... {cut} more bytes dropped: a log record is at most {MAX_LOG_RECORD} bytes]"));
        }
        let request = self.request.get();
        match level {
            b"error" => tracing::error!(target: "wasgi::app", app = %self.app, instance = self.instance, request = %request, "{text}"),
            b"warn" => tracing::warn!(target: "wasgi::app", app = %self.app, instance = self.instance, request = %request, "{text}"),
            _ => tracing::info!(target: "wasgi::app", app = %self.app, instance = self.instance, request = %request, "{text}"),
        }
    }

    /// Says how many records the rate limit dropped since it last said so
    /// (called when a request ends, so a flood is accounted for at once).
    pub fn report_dropped(&self) {
        let dropped = std::mem::take(&mut self.budget.lock().expect("log budget lock").dropped);
        if dropped > 0 {
            self.say_dropped(dropped);
        }
    }

    fn say_dropped(&self, dropped: u64) {
        let request = self.request.get();
        tracing::warn!(
            target: "wasgi::app", app = %self.app, instance = self.instance, request = %request,
            "{dropped} log record(s) of this instance dropped: over the limit of {LOG_RATE} per second after a burst of {LOG_BURST}"
        );
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
        Box::new(LogLines { tag: self.0.clone(), partial: BytesMut::new(), cut: 0 })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::sink())
    }
}

/// Cuts the guest's output into lines, each a log record; of a line longer
/// than [`MAX_LOG_RECORD`] only the start is kept, the rest counted.
struct LogLines {
    tag: LogTag,
    partial: BytesMut,
    /// Bytes of the current line dropped past MAX_LOG_RECORD.
    cut: usize,
}

impl LogLines {
    fn add(&mut self, piece: &[u8]) {
        let room = MAX_LOG_RECORD.saturating_sub(self.partial.len());
        let kept = piece.len().min(room);
        self.partial.extend_from_slice(&piece[..kept]);
        self.cut += piece.len() - kept;
    }

    fn emit(&mut self) {
        let mut line = &self.partial[..];
        while let [rest @ .., b'\n' | b'\r'] = line {
            line = rest;
        }
        self.tag.record(b"info", line, self.cut);
        self.partial.clear();
        self.cut = 0;
    }
}

#[async_trait::async_trait]
impl OutputStream for LogLines {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let mut rest = &bytes[..];
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            self.add(&rest[..nl]);
            self.emit();
            rest = &rest[nl + 1..];
        }
        self.add(rest);
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
        if !self.partial.is_empty() || self.cut > 0 {
            self.emit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The log lines `f` writes, as the server's formatter prints them (no time).
    fn logged(f: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).without_time().finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    fn tag() -> LogTag {
        LogTag::new(Arc::from("app"), 7)
    }

    #[test]
    fn stdin_hands_out_what_the_host_sent_in_the_slices_asked_for() {
        let (tx, rx) = mpsc::channel(CHANNEL_SLOTS);
        let stdin = ChannelStdin::new(rx);
        let mut input = stdin.p2_stream();
        assert_eq!(input.read(10).unwrap(), Bytes::new(), "nothing sent yet: an empty read, not an end");
        tx.try_send(Bytes::from_static(b"hello world")).unwrap();
        assert_eq!(input.read(5).unwrap(), Bytes::from_static(b"hello"));
        assert_eq!(input.read(100).unwrap(), Bytes::from_static(b" world"));
        drop(tx);
        assert!(matches!(input.read(1), Err(StreamError::Closed)), "the host hung up");
        // WASIp1 asks for the stream once; a second one has nothing behind it.
        assert!(matches!(stdin.p2_stream().read(1), Err(StreamError::Closed)));
    }

    #[tokio::test]
    async fn a_blocking_read_waits_for_the_host() {
        let (tx, rx) = mpsc::channel(CHANNEL_SLOTS);
        let mut input = ChannelStdin::new(rx).p2_stream();
        let sender = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            tx.send(Bytes::from_static(b"frame")).await.unwrap();
        });
        assert_eq!(input.blocking_read(3).await.unwrap(), Bytes::from_static(b"fra"));
        assert_eq!(input.blocking_read(3).await.unwrap(), Bytes::from_static(b"me"));
        sender.await.unwrap();
        assert!(matches!(input.blocking_read(3).await, Err(StreamError::Closed)));
    }

    #[tokio::test]
    async fn stdout_passes_writes_on_and_a_full_channel_holds_the_writer() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut output = ChannelStdout::new(tx).p2_stream();
        assert_eq!(output.check_write().unwrap(), 64 * 1024);
        output.write(Bytes::from_static(b"one")).unwrap();
        output.write(Bytes::from_static(b"two")).unwrap();
        assert_eq!(output.check_write().unwrap(), 0, "the channel is full: no room to write");
        assert!(matches!(output.write(Bytes::from_static(b"three")), Err(StreamError::Trap(_))), "a write past check_write");
        // The path fd_write takes waits for room instead.
        let writer = tokio::spawn(async move {
            output.blocking_write_and_flush(Bytes::from_static(b"three")).await.unwrap();
            output
        });
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"one"));
        let mut output = writer.await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"two"));
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"three"));
        drop(rx);
        assert!(matches!(output.check_write(), Err(StreamError::Closed)));
        assert!(matches!(output.write(Bytes::from_static(b"x")), Err(StreamError::Closed)));
        assert!(matches!(output.blocking_write_and_flush(Bytes::from_static(b"x")).await, Err(StreamError::Closed)));
    }

    #[test]
    fn stderr_becomes_one_record_per_line_tagged_with_who_spoke() {
        let lines = logged(|| {
            let tag = tag();
            tag.request.set(Some("42".into()));
            let mut stderr = LogStderr(tag).p2_stream();
            stderr.write(Bytes::from_static(b"first\nsec")).unwrap();
            stderr.write(Bytes::from_static(b"ond\r\n\nthird")).unwrap();
            // The unfinished line is logged when the stream goes.
            drop(stderr);
        });
        assert_eq!(lines.len(), 4, "{lines:#?}");
        for (line, text) in lines.iter().zip(["first", "second", "", "third"]) {
            assert_eq!(line.trim_start(), format!("INFO wasgi::app: {text} app=app instance=7 request=42"));
        }
    }

    #[test]
    fn a_long_line_is_cut_and_says_how_much_was_dropped() {
        let lines = logged(|| {
            let mut stderr = LogStderr(tag()).p2_stream();
            stderr.write(Bytes::from(vec![b'a'; MAX_LOG_RECORD + 10])).unwrap();
            stderr.write(Bytes::from(vec![b'b'; 5])).unwrap();
            stderr.write(Bytes::from_static(b"\nshort\n")).unwrap();
        });
        assert_eq!(lines.len(), 2, "{lines:#?}");
        let kept = "a".repeat(MAX_LOG_RECORD);
        assert!(lines[0].contains(&format!("{kept} [... 15 more bytes dropped: a log record is at most {MAX_LOG_RECORD} bytes]")), "{}", &lines[0][lines[0].len() - 120..]);
        assert!(!lines[0].contains('b'.to_string().repeat(5).as_str()));
        assert!(lines[1].contains("wasgi::app: short"), "{}", lines[1]);
        // A record that comes whole (the bridge's, a host call's) is cut the same way.
        let lines = logged(|| tag().record(b"warn", &vec![b'c'; MAX_LOG_RECORD + 1], 4));
        assert!(lines[0].starts_with(" WARN") || lines[0].starts_with("WARN"), "{}", &lines[0][..40]);
        assert!(lines[0].contains("[... 5 more bytes dropped"), "{}", &lines[0][lines[0].len() - 120..]);
    }

    #[test]
    fn records_past_the_rate_limit_are_dropped_and_counted() {
        // Three bursts' worth at once: the budget refills by LOG_RATE a
        // second meanwhile, so most past the first burst are dropped.
        let total = 3 * LOG_BURST as usize;
        let lines = logged(|| {
            let tag = tag();
            for i in 0..total {
                tag.record(b"error", format!("record {i}").as_bytes(), 0);
            }
            tag.report_dropped();
        });
        let logged_records = lines.iter().filter(|l| l.contains("wasgi::app: record ")).count();
        let dropped: usize = lines
            .iter()
            .filter_map(|l| l.split_once("WARN wasgi::app: ")?.1.split_once(" log record(s) of this instance dropped: over the limit of"))
            .map(|(n, _)| n.parse::<usize>().unwrap())
            .sum();
        assert!(lines[0].contains("ERROR wasgi::app: record 0"), "{}", lines[0]);
        assert!(logged_records >= LOG_BURST as usize, "the first burst is logged whole");
        assert!(dropped > LOG_BURST as usize, "{dropped} dropped of {total}");
        assert_eq!(logged_records + dropped, total, "every record is logged or counted as dropped");
    }
}
