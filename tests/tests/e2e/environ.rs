//! The WSGI environ, pinned by request/expected fixture pairs in
//! tests/fixtures/environ: each `NNN-name.http` is sent byte for byte (with
//! `\n` turned into CRLF and `\xNN` into that byte) to an app that returns its
//! environ as JSON, which must match `NNN-name.json`.

use wasgi_tests::{apps, root, Wasgi};

fn raw_request(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = text.replace('\n', "\r\n").into_bytes().into_iter().peekable();
    while let Some(b) = chars.next() {
        if b == b'\\' && chars.peek() == Some(&b'x') {
            chars.next();
            let hi = chars.next().unwrap();
            let lo = chars.next().unwrap();
            out.push(u8::from_str_radix(std::str::from_utf8(&[hi, lo]).unwrap(), 16).unwrap());
        } else {
            out.push(b);
        }
    }
    out
}

#[test]
fn environ_matches_every_fixture() {
    let script = apps().join("features.wsgi");
    let server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "1"]);
    let dir = root().join("tests/fixtures/environ");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "http"))
        .collect();
    names.sort();
    assert!(names.len() >= 8, "fixtures missing from {}", dir.display());
    let mut failures = Vec::new();
    for http in names {
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(http.with_extension("json")).unwrap()).unwrap();
        let response = server.request(&raw_request(&std::fs::read_to_string(&http).unwrap()));
        let name = http.file_name().unwrap().to_string_lossy().into_owned();
        if response.status != 200 {
            failures.push(format!("{name}: status {} body {}", response.status, response.text()));
            continue;
        }
        let environ: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        for (key, want) in expected["expect"].as_object().unwrap() {
            if environ.get(key) != Some(want) {
                failures.push(format!("{name}: {key} = {:?}, expected {want}", environ.get(key)));
            }
        }
        for key in expected["absent"].as_array().unwrap() {
            if let Some(v) = environ.get(key.as_str().unwrap()) {
                failures.push(format!("{name}: {key} should be absent, is {v}"));
            }
        }
        for key in expected.get("present").and_then(|p| p.as_array()).into_iter().flatten() {
            if environ.get(key.as_str().unwrap()).is_none() {
                failures.push(format!("{name}: {key} is missing"));
            }
        }
    }
    assert!(failures.is_empty(), "environ mismatches:\n{}", failures.join("\n"));
}

#[test]
fn peer_address_and_port_come_from_the_connection() {
    let script = apps().join("features.wsgi");
    let server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "1"]);
    let mut stream = server.connect();
    let local = stream.local_addr().unwrap();
    use std::io::Write;
    stream.write_all(b"GET /environ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let response = wasgi_tests::http::read_response(&mut stream, false).unwrap();
    let environ: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(environ["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(environ["REMOTE_PORT"], local.port().to_string());
    assert_eq!(environ["SERVER_ADDR"], "127.0.0.1");
    assert_eq!(environ["SERVER_PORT"], "80", "no port in Host: the client used the scheme's default (as Apache says)");

    // Without any Host, the port the connection arrived on.
    let environ = environ_of(&server, "GET /environ HTTP/1.0\n\n");
    let server_port = server.addr.rsplit(':').next().unwrap();
    assert_eq!(environ["SERVER_PORT"], server_port);
    assert_eq!(environ["SERVER_NAME"], "127.0.0.1");
}

fn environ_of(server: &Wasgi, raw: &str) -> serde_json::Value {
    let r = server.request(raw.replace('\n', "\r\n").as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

const FORWARDED_REQUEST: &str = "GET /environ HTTP/1.1\nHost: 127.0.0.1\nX-Forwarded-For: 203.0.113.5, 198.51.100.2\nX-Forwarded-Proto: https\nX-Forwarded-Host: shop.example\nConnection: close\n\n";

#[test]
fn forwarding_headers_from_a_trusted_proxy_set_the_client_scheme_and_host() {
    let script = apps().join("features.wsgi");
    let server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "1", "--trusted-proxy", "127.0.0.0/8"]);
    let env = environ_of(&server, FORWARDED_REQUEST);
    // RFC 7239 Forwarded is believed only when asked for (Apache passes a client's through).
    let forged = environ_of(&server, "GET /environ HTTP/1.1\nHost: 127.0.0.1\nForwarded: for=192.0.2.60;proto=https;host=rfc.example\nConnection: close\n\n");
    assert_eq!((forged["REMOTE_ADDR"].as_str(), forged["wsgi.url_scheme"].as_str()), (Some("127.0.0.1"), Some("http")));
    assert_eq!(forged["HTTP_FORWARDED"], "for=192.0.2.60;proto=https;host=rfc.example");
    let server = Wasgi::start(&[
        script.to_str().unwrap(), "--instances", "1", "--trusted-proxy", "127.0.0.0/8",
        "--trusted-proxy-header", "forwarded", "--trusted-proxy-header", "x-forwarded-for",
        "--trusted-proxy-header", "x-forwarded-host", "--trusted-proxy-header", "x-forwarded-proto",
        "--trusted-proxy-header", "x-forwarded-port",
    ]);
    assert_eq!(env["REMOTE_ADDR"], "198.51.100.2", "the right-most untrusted hop");
    assert!(env.get("REMOTE_PORT").is_none(), "the client's port is unknown");
    assert_eq!(env["wsgi.url_scheme"], "https");
    assert_eq!(env["REQUEST_SCHEME"], "https");
    assert!(env.get("HTTPS").is_none(), "as under mod_wsgi, the scheme is wsgi.url_scheme only");
    assert_eq!(env["HTTP_HOST"], "shop.example");
    assert_eq!(env["SERVER_NAME"], "shop.example");
    assert_eq!(env["SERVER_PORT"], "443");
    assert_eq!(env["HTTP_X_FORWARDED_FOR"], "203.0.113.5, 198.51.100.2", "the headers still reach the app");

    let env = environ_of(
        &server,
        "GET /environ HTTP/1.1\nHost: 127.0.0.1\nForwarded: for=192.0.2.60;proto=http, for=\"[2001:db8::7]:4711\";proto=https;host=rfc.example\nConnection: close\n\n",
    );
    assert_eq!((env["REMOTE_ADDR"].as_str(), env["REMOTE_PORT"].as_str()), (Some("2001:db8::7"), Some("4711")));
    assert_eq!(env["HTTP_HOST"], "rfc.example");
    assert_eq!(env["wsgi.url_scheme"], "https");
}

#[test]
fn forwarding_headers_from_anyone_else_change_nothing() {
    let script = apps().join("features.wsgi");
    let server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "1", "--trusted-proxy", "192.0.2.1"]);
    let env = environ_of(&server, FORWARDED_REQUEST);
    assert_eq!(env["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(env["wsgi.url_scheme"], "http");
    assert_eq!(env["HTTP_HOST"], "127.0.0.1");
    assert!(env.get("HTTPS").is_none());
    assert_eq!(env["HTTP_X_FORWARDED_PROTO"], "https", "passed through unchanged");
}

#[test]
fn credentials_reach_the_app_only_when_it_asks_for_them() {
    // As mod_wsgi's WSGIPassAuthorization: off by default, on with the flag;
    // proxy credentials never.
    let script = apps().join("features.wsgi");
    let request = "GET /environ HTTP/1.1\nHost: localhost\nAuthorization: Bearer t0ken\nProxy-Authorization: Basic eDp5\nConnection: close\n\n";
    let server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "1", "--pass-authorization"]);
    let env = environ_of(&server, request);
    assert_eq!(env["HTTP_AUTHORIZATION"], "Bearer t0ken");
    assert!(env.get("HTTP_PROXY_AUTHORIZATION").is_none());
}

#[test]
fn paths_that_climb_above_the_root_or_have_broken_escapes_are_refused() {
    let script = apps().join("features.wsgi");
    let server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "1"]);
    for path in ["/../etc/passwd", "/environ/../../x", "/%2e%2e/x", "/environ%zz", "/environ%2"] {
        let r = server.request(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes());
        assert_eq!(r.status, 400, "{path}: {}", r.text());
    }
    // Dot segments that stay inside are resolved before routing and PATH_INFO.
    let env = environ_of(&server, "GET /probe/../environ/./x HTTP/1.1\nHost: localhost\nConnection: close\n\n");
    assert_eq!(env["PATH_INFO"], "/environ/x");
    assert!(!server.log.text().contains("APP-CALLED"), "the app was called for a refused path:\n{}", server.log.text());
}
