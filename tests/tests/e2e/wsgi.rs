//! PEP 3333 behaviour as a client and the log see it, with a plain WSGI app
//! (tests/apps/features.wsgi) running in the real sandbox.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use wasgi_tests::{apps, http, TempDir, Wasgi};

use crate::inprocess::InProcess;

fn features(extra: &[&str]) -> Wasgi {
    let script = apps().join("features.wsgi");
    let mut args = vec![script.to_str().unwrap().to_owned()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Wasgi::start(&args)
}

/// The same app served in-process, for the tests that read neither the log
/// nor the process.
fn features_in_process(extra: &[&str]) -> InProcess {
    let script = apps().join("features.wsgi");
    let mut args = vec![script.to_str().unwrap()];
    args.extend_from_slice(extra);
    InProcess::run(&args)
}

fn wait_for_file(path: &std::path::Path, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match std::fs::read_to_string(path) {
            Ok(text) if !text.is_empty() => return Some(text),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn list_responses_get_a_content_length_and_generators_are_chunked() {
    let server = features_in_process(&["--instances", "1"]);
    let r = server.get("/head");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    assert_eq!(r.header("content-length"), Some("5"));
    assert_eq!(r.header("x-head"), Some("yes"));

    let r = server.get("/no-length");
    assert_eq!(r.status, 200);
    assert!(r.chunked, "no Content-Length: chunked transfer, got {:?}", r.headers);
    assert_eq!(r.text(), "chunk-one chunk-two");

    let r = server.get("/write");
    assert_eq!(r.text(), "written-directly");
    let r = server.get("/filewrapper");
    assert_eq!(r.text(), "wrapped file body");
    let r = server.get("/status?s=418+I%27m+a+teapot");
    assert_eq!((r.status, r.reason.as_str()), (418, "I'm a teapot"));
}

#[test]
fn head_sends_headers_only_and_keeps_the_connection_usable() {
    let server = features_in_process(&["--instances", "1"]);
    let mut stream = server.connect();
    stream.write_all(b"HEAD /head HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let r = http::read_response(&mut stream, true).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("5"), "HEAD reports the GET length");
    // The next response on the same connection starts right away: no stray body bytes.
    stream.write_all(b"GET /head HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let r = http::read_response(&mut stream, false).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection_and_module_state_persists() {
    let server = features_in_process(&["--instances", "1"]);
    let mut stream = server.connect();
    let mut tokens = Vec::new();
    for _ in 0..5 {
        stream.write_all(b"GET /instance HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let r = http::read_response(&mut stream, false).unwrap();
        tokens.push(r.text());
    }
    let first: Vec<&str> = tokens[0].split(' ').collect();
    let last: Vec<&str> = tokens[4].split(' ').collect();
    assert_eq!(first[0], last[0], "one instance, imported once");
    let (a, b): (u32, u32) = (first[1].parse().unwrap(), last[1].parse().unwrap());
    assert_eq!(b, a + 4, "the module-level counter persists across requests");
}

#[test]
fn request_bodies_reach_the_app_by_read_readline_and_iteration() {
    let server = features(&["--instances", "1"]);
    let body = b"line one\nline two\nthird";
    let r = server.post("/lines", body);
    assert_eq!(r.text(), "line one\n|line two\n|third");
    let r = server.post("/readline", b"first\nsecond\nthird\n");
    assert_eq!(r.text(), "[b'first\\n', b'sec', [b'ond\\n', b'third\\n']]");
    // Chunked upload: no CONTENT_LENGTH, the input ends where the body ends.
    let mut stream = server.connect();
    stream
        .write_all(b"POST /upload?chunk=3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n")
        .unwrap();
    let r = http::read_response(&mut stream, false).unwrap();
    let sha = sha2_hex(b"abcdefg");
    assert_eq!(r.text(), format!("7 {sha}"));
}

fn sha2_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

#[test]
fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let server = features(&["--instances", "1"]);
    let mut stream = server.connect();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (status, _, _) = http::read_head(&mut stream).unwrap();
    assert_eq!(status, 100, "the app reads the body, so the client is told to continue");
    stream.write_all(b"hello").unwrap();
    let r = http::read_response(&mut stream, false).unwrap();
    assert_eq!(r.text(), format!("5 {}", sha2_hex(b"hello")));
}

#[test]
fn http_1_0_clients_get_a_complete_response_and_a_closed_connection() {
    let server = features(&["--instances", "1"]);
    let mut stream = server.connect();
    stream.write_all(b"GET /no-length HTTP/1.0\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(!text.to_ascii_lowercase().contains("transfer-encoding: chunked"), "no chunking for HTTP/1.0: {text}");
    assert!(text.ends_with("chunk-one chunk-two"), "{text}");
}

#[test]
fn an_app_exception_is_a_500_with_the_traceback_in_the_log_only() {
    let server = features(&["--instances", "1"]);
    let r = server.get("/raise");
    assert_eq!(r.status, 500);
    assert!(!r.text().contains("boom-secret-detail"), "no traceback in the body: {}", r.text());
    let log = server.log.wait_for("boom-secret-detail", Duration::from_secs(10));
    assert!(log.contains("Traceback (most recent call last)"), "{log}");
    assert!(log.contains("GET /raise"), "the log names the request: {log}");
    // The instance is still fine.
    assert_eq!(server.get("/head").status, 200);
}

#[test]
fn start_response_rules_are_enforced() {
    let server = features(&["--instances", "1"]);
    let r = server.get("/badheader");
    assert_eq!(r.status, 500, "CR/LF in a header value is refused");
    assert!(r.header("injected").is_none());
    server.log.wait_for("control character", Duration::from_secs(10));
    let r = server.get("/twice");
    assert_eq!(r.status, 500, "a second start_response without exc_info is an error");
    server.log.wait_for("second time without exc_info", Duration::from_secs(10));
    let r = server.get("/exc-info");
    assert_eq!((r.status, r.text().as_str()), (503, "replaced by exc_info"), "exc_info may replace unsent headers");
    let r = server.get("/hop");
    assert_eq!(r.header("x-kept"), Some("1"));
    assert!(r.header("keep-alive").is_none(), "hop-by-hop headers from the app are dropped");
}

/// The bridge skips its regexes for printable ASCII and for header names it
/// has checked before: every other value still gets the full check.
#[test]
fn header_values_are_checked_even_under_a_name_seen_before() {
    let server = features(&["--instances", "1"]);
    let get = |case: &str| server.get(&format!("/header-check?case={case}"));
    let r = get("ok");
    assert_eq!((r.status, r.header("x-seen")), (200, Some("plain")));
    let r = get("tab");
    assert_eq!((r.status, r.header("x-seen")), (200, Some("a\tb")), "a tab is allowed in a value");
    let r = get("latin1");
    assert_eq!(r.status, 200, "latin-1 is allowed in a value");
    assert_eq!(r.text(), "checked");
    for (case, logged) in [
        ("crlf", "header 'X-Seen' contains a control character (CR, LF or NUL)"),
        ("nul", "header 'X-Seen' contains a control character (CR, LF or NUL)"),
        ("euro", "header 'X-Seen' is not latin-1 encodable (PEP 3333)"),
        ("name", "invalid header name 'X Seen'"),
        ("status", "status '200 O\\rK' contains CR, LF, NUL or non-latin-1 characters"),
    ] {
        let r = get(case);
        assert_eq!(r.status, 500, "{case}: refused");
        assert!(r.header("injected").is_none(), "{case}");
        server.log.wait_for(logged, Duration::from_secs(10));
    }
    let r = get("ok");
    assert_eq!((r.status, r.header("x-seen")), (200, Some("plain")), "the instance still serves");
}

#[test]
fn print_and_wsgi_errors_go_to_the_log_never_into_a_response() {
    let server = features(&["--instances", "1"]);
    let r = server.get("/print");
    assert_eq!(r.text(), "printed\n");
    assert!(!r.text().contains("PRINTED"));
    let log = server.log.wait_for("PRINTED-partial", Duration::from_secs(10));
    for needle in ["PRINTED-stdout", "PRINTED-stderr", "PRINTED-errors"] {
        let line = log.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle} not logged:\n{log}"));
        assert!(line.contains("app=features.wsgi"), "log lines name the app: {line}");
        assert!(line.contains("request="), "log lines name the request: {line}");
    }
    // The next response is intact.
    assert_eq!(server.get("/head").text(), "hello");
}

#[test]
fn close_is_called_on_success_on_error_and_on_client_disconnect() {
    let dir = TempDir::new("close");
    let server = features(&["--instances", "1", "--grant-write", dir.path().to_str().unwrap()]);
    let marker = |name: &str| dir.path().join(name);

    let r = server.get(&format!("/close?marker={}", marker("ok").display()));
    assert_eq!(r.text(), "first chunk\n");
    assert_eq!(wait_for_file(&marker("ok"), Duration::from_secs(10)).as_deref(), Some("closed"));

    // Failing after the response started: the client sees a cut-short body.
    let mut stream = server.connect();
    write!(stream, "GET /close?marker={}&mode=raise HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", marker("raise").display()).unwrap();
    let cut = http::read_response(&mut stream, false);
    assert!(cut.is_err(), "a response whose app failed midway must not look complete: {cut:?}");
    assert_eq!(wait_for_file(&marker("raise"), Duration::from_secs(10)).as_deref(), Some("closed"), "{}", server.log.text());

    // The client disconnects from an endless stream: the app is stopped and closed.
    let mut stream = server.connect();
    write!(stream, "GET /close?marker={}&mode=infinite HTTP/1.1\r\nHost: x\r\n\r\n", marker("gone").display()).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    stream.read_exact(&mut buf).unwrap();
    drop(stream);
    assert_eq!(wait_for_file(&marker("gone"), Duration::from_secs(20)).as_deref(), Some("closed"));
    // The single instance serves again.
    assert_eq!(server.get("/head").text(), "hello");
}

#[test]
fn requests_run_concurrently_on_several_instances() {
    let dir = TempDir::new("rendezvous");
    let server = features(&["--instances", "2", "--grant-write", dir.path().to_str().unwrap()]);
    let d = dir.path().display().to_string();
    let addr = server.addr.clone();
    let other = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "GET /rendezvous?dir={d}&me=b&other=a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        http::read_response(&mut s, false).unwrap()
    });
    let a = server.get(&format!("/rendezvous?dir={}&me=a&other=b", dir.path().display()));
    let b = other.join().unwrap();
    assert_eq!((a.status, b.status), (200, 200), "each request met the other: {} / {}", a.text(), b.text());
    assert_ne!(a.text(), b.text(), "two different instances served them");
}

#[test]
fn a_crashing_instance_fails_only_its_own_request_and_is_replaced() {
    let dir = TempDir::new("crash");
    let server = features(&["--instances", "2", "--grant-write", dir.path().to_str().unwrap()]);
    // A slow request on one instance while the other exits.
    let addr = server.addr.clone();
    let slow = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(b"GET /sleep?s=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        http::read_response(&mut s, false).unwrap()
    });
    std::thread::sleep(Duration::from_millis(200));
    let crashed = server.get("/exit");
    assert_eq!(crashed.status, 502);
    let slow = slow.join().unwrap();
    assert_eq!((slow.status, slow.text().as_str()), (200, "slept\n"), "the other instance was untouched");
    server.log.wait_for("exited with status 3", Duration::from_secs(10));
    // A trap is handled the same way.
    assert_eq!(server.get("/abort").status, 502);
    server.log.wait_for("trapped", Duration::from_secs(10));
    server.log.wait_for("replacement instance ready", Duration::from_secs(30));
    for _ in 0..4 {
        assert_eq!(server.get("/head").status, 200);
    }
}

#[test]
fn the_guest_sees_only_its_grants_no_host_environment_and_no_network() {
    let outside = TempDir::new("outside");
    std::fs::write(outside.path().join("secret.txt"), "host secret").unwrap();
    let writable = TempDir::new("writable");
    let server = features(&["--instances", "1", "--grant-write", writable.path().to_str().unwrap()]);
    let r = server.get(&format!("/read-file?path={}/secret.txt", outside.path().display()));
    assert!(r.text().starts_with("denied"), "an ungranted file is invisible: {}", r.text());
    let r = server.get("/read-file?path=/etc/passwd");
    assert!(r.text().starts_with("denied"), "{}", r.text());
    // The log explains the denial: path, group, policies, and the grant that would allow it.
    let log = server.log.wait_for("denied: reading /etc/passwd", Duration::from_secs(10));
    let line = log.lines().find(|l| l.contains("denied: reading /etc/passwd")).unwrap();
    assert!(line.contains("outside every directory this group may use") && line.contains("Group 'features.wsgi'"), "{line}");
    // The record spans lines: wait for the one naming the grant.
    server.log.wait_for("path = '/etc'", Duration::from_secs(10));
    // The script's own directory is granted read-only.
    let script_dir = apps();
    let r = server.get(&format!("/write-file?path={}/written.txt", script_dir.display()));
    assert!(r.text().starts_with("denied"), "{}", r.text());
    assert!(!script_dir.join("written.txt").exists());
    let r = server.get(&format!("/write-file?path={}/ok.txt", writable.path().display()));
    assert_eq!(r.text(), "written");
    assert_eq!(std::fs::read_to_string(writable.path().join("ok.txt")).unwrap(), "written");
    // A symlink inside a grant that points outside is not followed, and the log says why.
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), writable.path().join("link.txt")).unwrap();
    let r = server.get(&format!("/read-file?path={}/link.txt", writable.path().display()));
    assert!(r.text().starts_with("denied"), "a symlink out of the grant was followed: {}", r.text());
    server.log.wait_for(&format!("{}/link.txt is a symlink to", writable.path().display()), Duration::from_secs(10));
    let r = server.get("/env");
    assert!(!r.text().contains("PATH=") && !r.text().contains("HOME="), "no host environment: {}", r.text());
    let r = server.get(&format!("/socket?port={}", server.addr.rsplit(':').next().unwrap()));
    assert!(r.text().starts_with("no network"), "{}", r.text());
}

#[test]
fn unix_socket_listener_serves_and_is_removed_on_shutdown() {
    let dir = TempDir::new("unix");
    let sock = dir.path().join("wasgi.sock");
    let listen = format!("unix:{}", sock.display());
    let script = apps().join("features.wsgi");
    let mut server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "1", "--listen", &listen]);
    let r = http::unix_request(sock.to_str().unwrap(), b"GET /environ HTTP/1.1\r\nHost: sock.example\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    let environ: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(environ["SERVER_NAME"], "sock.example");
    assert_eq!(environ["REMOTE_ADDR"], "");
    assert!(server.terminate().success());
    assert!(!sock.exists(), "the socket file is removed on shutdown");
}

#[test]
fn sigterm_lets_requests_in_flight_finish_then_exits_zero() {
    let mut server = features(&["--instances", "1"]);
    let mut stream = server.connect();
    stream.write_all(b"GET /sleep?s=1.5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let r = http::read_response(&mut stream, false).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "slept\n"));
    let status = server.wait(Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}; log:\n{}", server.log.text());
    // New connections are refused once shutdown began.
    assert!(std::net::TcpStream::connect(&server.addr).is_err());
}

#[test]
fn a_second_signal_stops_at_once() {
    let mut server = features(&["--instances", "1"]);
    let mut stream = server.connect();
    stream.write_all(b"GET /sleep?s=30 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    server.log.wait_for("SIGTERM received", Duration::from_secs(10));
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let status = server.wait(Duration::from_secs(10));
    assert!(!status.success(), "a forced stop is not a clean exit");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(server.log.text().contains("second signal: stopping now"), "{}", server.log.text());
}
