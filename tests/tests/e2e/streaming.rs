//! Bodies stream both ways in bounded frames: a 1 GiB upload or download
//! keeps the server's RSS within 100 MiB of idle, arrives intact (checked by
//! SHA-256), and a client that stops reading stops the app.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasgi_tests::{apps, http, TempDir, Wasgi};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// Samples the server's RSS until stopped; returns the peak.
struct RssWatch {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    let kb: u64 = status
                        .lines()
                        .find(|l| l.starts_with("VmRSS:"))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    p.fetch_max(kb * 1024, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssWatch { stop, peak, thread }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.peak.load(Ordering::Relaxed)
    }
}

fn block(i: u64) -> Vec<u8> {
    vec![(i % 256) as u8; 65536]
}

fn server(extra: &[&str]) -> Wasgi {
    let script = apps().join("features.wsgi");
    let mut args = vec![script.to_str().unwrap(), "--instances", "1"];
    args.extend_from_slice(extra);
    let server = Wasgi::start(&args);
    // Warm up both directions so idle RSS includes what any request needs.
    assert_eq!(server.post("/upload", &[1u8; 300_000]).status, 200);
    assert_eq!(server.get("/download?mb=4").body.len() as u64, 4 * MIB);
    server
}

#[test]
fn a_1_gib_upload_streams_through_with_bounded_memory() {
    let server = server(&[]);
    let idle = server.rss();
    let watch = RssWatch::start(server.child.id());
    let mut stream = server.connect();
    stream.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    write!(stream, "POST /upload?chunk=1048576 HTTP/1.1\r\nHost: x\r\nContent-Length: {GIB}\r\nConnection: close\r\n\r\n").unwrap();
    let mut hasher = Sha256::new();
    for i in 0..GIB / 65536 {
        let b = block(i);
        hasher.update(&b);
        stream.write_all(&b).unwrap();
    }
    let r = http::read_response(&mut stream, false).unwrap();
    let peak = watch.finish();
    assert_eq!(r.text(), format!("{GIB} {}", hex::encode(hasher.finalize())));
    assert!(
        peak < idle + 100 * MIB,
        "RSS rose from {} MiB idle to {} MiB during the upload",
        idle / MIB,
        peak / MIB
    );
}

#[test]
fn a_1_gib_download_streams_through_with_bounded_memory() {
    let server = server(&[]);
    let idle = server.rss();
    let watch = RssWatch::start(server.child.id());
    let mut stream = server.connect();
    stream.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    write!(stream, "GET /download?mb=1024 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let (status, _, headers) = http::read_head(&mut stream).unwrap();
    assert_eq!(status, 200);
    assert!(headers.iter().any(|(n, v)| n == "transfer-encoding" && v == "chunked"));
    // Decode the chunked body as it comes, hashing without keeping it.
    let mut reader = std::io::BufReader::with_capacity(1 << 20, stream);
    let mut got = Sha256::new();
    let mut total = 0u64;
    loop {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        let size = u64::from_str_radix(line.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        let mut left = size;
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            reader.read_exact(&mut buf[..n]).unwrap();
            got.update(&buf[..n]);
            left -= n as u64;
        }
        total += size;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf).unwrap();
    }
    let peak = watch.finish();
    let mut want = Sha256::new();
    for i in 0..GIB / 65536 {
        want.update(block(i));
    }
    assert_eq!(total, GIB);
    assert_eq!(hex::encode(got.finalize()), hex::encode(want.finalize()));
    assert!(
        peak < idle + 100 * MIB,
        "RSS rose from {} MiB idle to {} MiB during the download",
        idle / MIB,
        peak / MIB
    );
}

#[test]
fn a_client_that_stops_reading_stops_the_app() {
    let dir = TempDir::new("slow");
    let server = server(&["--grant-write", dir.path().to_str().unwrap()]);
    let progress = dir.path().join("progress");
    let mut stream = server.connect();
    write!(stream, "GET /download?mb=4096&progress={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", progress.display()).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    stream.read_exact(&mut buf).unwrap();
    // Stop reading. The app can only run ahead by what the socket buffers and
    // the bounded channels hold, then it must wait.
    std::thread::sleep(Duration::from_secs(2));
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default().trim().parse::<u64>().unwrap_or(0);
    let first = read(&progress);
    std::thread::sleep(Duration::from_secs(1));
    let second = read(&progress);
    let produced = second * 65536;
    assert_eq!(first, second, "the app kept producing while nobody read");
    assert!(produced < 64 * MIB, "the app ran {} MiB ahead of the client", produced / MIB);
    // Reading again lets it continue.
    stream.read_exact(&mut buf).unwrap();
    for _ in 0..64 {
        stream.read_exact(&mut buf).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(read(&progress) > second, "the app resumed once the client read again");
}

/// A client that asks for a large response and never reads it holds the
/// instance only for body_write_timeout, not until request_timeout: the app
/// sees a disconnect (its iterable is closed), the next client is served,
/// and the log names the request and the limit.
#[test]
fn a_client_that_never_reads_frees_the_instance_after_the_write_timeout() {
    let dir = TempDir::new("stuck");
    let script = apps().join("features.wsgi");
    let server = Wasgi::start(&[
        script.to_str().unwrap(),
        "--instances", "1",
        "--body-write-timeout", "2",
        // Far beyond the second client's patience (60 s): only the write timeout can free the instance in time.
        "--request-timeout", "600",
        "--grant-write", dir.path().to_str().unwrap(),
    ]);
    let marker = dir.path().join("closed");
    let mut stuck = server.connect();
    write!(stuck, "GET /close?mode=infinite&marker={} HTTP/1.1\r\nHost: x\r\n\r\n", marker.display()).unwrap();
    // Never read from `stuck`; another client waits for the only instance.
    let second = server.get("/probe/second");
    assert_eq!(second.status, 200, "{}", second.text());
    let log = server.log.wait_for("body_write_timeout", Duration::from_secs(10));
    let line = log.lines().find(|l| l.contains("took no response data")).unwrap_or_else(|| panic!("no write-timeout line:\n{log}"));
    assert!(line.contains("GET /close") && line.contains("2s (body_write_timeout)"), "{line}");
    assert_eq!(std::fs::read_to_string(&marker).unwrap_or_default(), "closed", "the app's iterable was closed, as for a client that went away");
    assert!(!log.contains("request_timeout"), "{log}");
    // The stuck client's connection was closed: what it can still read ends.
    stuck.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match stuck.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                panic!("the stuck client's connection is still open")
            }
            Err(_) => break, // reset: closed too
        }
    }
}
