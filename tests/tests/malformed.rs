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
    // A well-formed probe still works, and it is the only one the app saw.
    let r = server.get("/probe/ok");
    assert_eq!(r.status, 200);
    let log = server.log.wait_for("APP-CALLED GET /probe/ok", Duration::from_secs(10));
    let calls = log.lines().filter(|l| l.contains("APP-CALLED")).count();
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
