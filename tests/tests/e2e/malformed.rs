//! Malformed or ambiguous HTTP gets a 400 and a closed connection, and never
//! reaches the app (the app prints APP-CALLED for every /probe request).

use std::io::{Read, Write};
use std::time::Duration;

use wasgi_tests::{apps, Wasgi};

const CASES: &[(&str, &[u8])] = &[
    ("CL and TE together", b"POST /probe HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("TE and CL together", b"POST /probe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
    ("two different Content-Lengths", b"POST /probe HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    ("a non-numeric Content-Length", b"POST /probe HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\n\r\nhello"),
    ("a space in a header name", b"GET /probe HTTP/1.1\r\nHo st: x\r\n\r\n"),
    ("a space before the colon", b"GET /probe HTTP/1.1\r\nHost : x\r\n\r\n"),
    ("a control byte in a header value", b"GET /probe HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n"),
    ("a bare LF inside a header value", b"GET /probe HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n"),
    ("an unknown transfer coding", b"POST /probe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"),
    ("a bad request line", b"GET /probe HTTP/1.1 extra\r\nHost: x\r\n\r\n"),
    ("an obsolete line folding", b"GET /probe HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"),
    ("an encoded NUL in the path", b"GET /probe/a%00b HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("a garbage request", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"),
    // What hyper lets through and wasgi refuses (RFC 9112; Apache and gunicorn answer 400 too).
    ("two Host headers", b"GET /probe HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"),
    ("no Host header in HTTP/1.1", b"GET /probe HTTP/1.1\r\nX-A: a\r\n\r\n"),
    ("chunked twice in one header", b"POST /probe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"),
    ("chunked twice in two headers", b"POST /probe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("chunked not last", b"POST /probe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
    ("chunked before another coding line", b"POST /probe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    ("raw UTF-8 bytes in the target", b"GET /probe/caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("raw non-UTF-8 bytes in the target", b"GET /probe/\xff HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("a raw non-ASCII byte in the query", b"GET /probe?q=\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("* with GET", b"GET * HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("* with POST", b"POST * HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
    ("CL and TE in a bare-LF head", b"POST /probe HTTP/1.1\nHost: x\nContent-Length: 5\nTransfer-Encoding: chunked\n\n0\r\n\r\n"),
    ("CL and TE in a head of mixed line ends", b"POST /probe HTTP/1.1\r\nHost: x\nContent-Length: 5\r\nTransfer-Encoding: chunked\n\r\n0\r\n\r\n"),
];

/// Chunked bodies broken in ways only found while the app reads them
/// (features.wsgi's /upload reads its whole body).
const BAD_BODIES: &[(&str, &[u8])] = &[
    ("a bad chunk size", b"zz\r\nhello\r\n0\r\n\r\n"),
    ("a chunk size that overflows", b"5\r\nhello\r\nfffffffffffffffffffff\r\nx\r\n0\r\n\r\n"),
    ("no CRLF after a chunk", b"5\r\nhelloXX0\r\n\r\n"),
    ("a bad last chunk", b"5\r\nhello\r\n0\r\n\rX"),
];

#[test]
fn malformed_requests_get_400_and_a_closed_connection() {
    let script = apps().join("features.wsgi");
    let server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "1"]);
    let mut failures = Vec::new();
    for (name, raw) in CASES {
        let mut stream = server.connect();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(raw).unwrap();
        let mut reply = Vec::new();
        // read_to_end only returns if the server closes the connection.
        let closed = stream.read_to_end(&mut reply).is_ok();
        let text = String::from_utf8_lossy(&reply);
        if !text.starts_with("HTTP/1.1 400") || !closed {
            failures.push(format!("{name}: closed={closed} reply={text:?}"));
        }
    }
    // HTTP/1.0 may leave Host out.
    let r = server.request(b"GET /probe/old HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.text());
    // A well-formed probe still works, and it is the only one the app saw.
    let r = server.get("/probe/ok");
    assert_eq!(r.status, 200);
    let log = server.log.wait_for("APP-CALLED GET /probe/ok", Duration::from_secs(10));
    let calls = log.lines().filter(|l| l.contains("APP-CALLED") && !l.contains("/probe/old")).count();
    assert!(failures.is_empty(), "not refused properly:\n{}", failures.join("\n"));
    assert_eq!(calls, 1, "malformed requests reached the app:\n{log}");
}

/// Content-Length + Transfer-Encoding is refused, and the connection closed,
/// so nothing can be smuggled behind it, even after a clean first request.
#[test]
fn content_length_with_transfer_encoding_is_refused_and_cannot_smuggle_a_second_request() {
    let script = apps().join("features.wsgi");
    let server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "1"]);
    let mut stream = server.connect();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Read as Content-Length: 4, the body would be "0\r\n\r" and "GET /probe/smuggled"
    // a second request; read as chunked, it is one empty body and then garbage.
    stream
        .write_all(b"GET /probe/clean HTTP/1.1\r\nHost: x\r\n\r\nPOST /probe/first HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /probe/smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("the server closes the connection");
    let text = String::from_utf8_lossy(&reply);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 2, "the clean request and the refusal: {text}");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("HTTP/1.1 400"), "{text}");
    assert!(text.to_ascii_lowercase().contains("connection: close"), "{text}");
    let r = server.get("/probe/after");
    assert_eq!(r.status, 200);
    let log = server.log.wait_for("APP-CALLED GET /probe/after", Duration::from_secs(10));
    assert!(!log.contains("/probe/smuggled"), "the smuggled request reached the app:\n{log}");
    assert!(!log.contains("APP-CALLED POST /probe/first"), "the ambiguous request reached the app:\n{log}");
}

/// A body framing error found while the app reads is the client's: it gets
/// a 400 and a closed connection, the log says so at the client's door, and
/// the app's own answer (a 500 from an unreadable wsgi.input) is not sent.
#[test]
fn a_malformed_chunked_body_is_the_clients_400_not_the_apps_500() {
    let script = apps().join("features.wsgi");
    let server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "1"]);
    let mut failures = Vec::new();
    for (name, body) in BAD_BODIES {
        let mut stream = server.connect();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut raw = b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        raw.extend_from_slice(body);
        stream.write_all(&raw).unwrap();
        let mut reply = Vec::new();
        let closed = stream.read_to_end(&mut reply).is_ok();
        let text = String::from_utf8_lossy(&reply);
        if !text.starts_with("HTTP/1.1 400") || !closed || !text.to_ascii_lowercase().contains("connection: close") {
            failures.push(format!("{name}: closed={closed} reply={text:?}"));
        }
    }
    assert!(failures.is_empty(), "not refused properly:\n{}", failures.join("\n"));
    assert_eq!(server.get("/probe/after").status, 200, "the instance still serves");
    let log = server.log.wait_for("APP-CALLED GET /probe/after", Duration::from_secs(10));
    assert_eq!(log.matches("the client sent a malformed request body").count(), BAD_BODIES.len(), "{log}");
    assert_eq!(log.matches("\"POST /upload HTTP/1.1\" 400 ").count(), BAD_BODIES.len(), "each is in the access log as the 400 it got, not as the app's answer:\n{log}");
    assert!(!log.contains("Traceback"), "a client's broken body is not the app's traceback:\n{log}");
}

/// hyper accepts heads whose lines end in a bare LF; the framing watcher
/// follows them too, so a CL+TE request behind one is still spotted (it used
/// to look for CRLF CRLF only, took both heads for one, and lost count).
#[test]
fn a_bare_lf_head_does_not_hide_the_ambiguous_request_behind_it() {
    let script = apps().join("features.wsgi");
    let server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "1"]);
    let mut stream = server.connect();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
        .write_all(b"GET /probe/bare-lf HTTP/1.1\nHost: x\n\nPOST /probe/ambiguous HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("the server closes the connection");
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("HTTP/1.1 400"), "{text}");
    assert_eq!(server.get("/probe/after").status, 200);
    let log = server.log.wait_for("APP-CALLED GET /probe/after", Duration::from_secs(10));
    assert!(log.contains("APP-CALLED GET /probe/bare-lf"), "{log}");
    assert!(!log.contains("APP-CALLED POST /probe/ambiguous"), "the ambiguous request reached the app:\n{log}");
}
