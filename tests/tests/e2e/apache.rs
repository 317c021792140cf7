//! wasgi behind a real Apache httpd 2.4 (mod_proxy_http), over TCP and over a
//! Unix socket: the forwarded client view, streaming both ways, keep-alive
//! between Apache and wasgi, client disconnects, and a balancer that routes
//! around a wasgi that stops, using wasgi's readiness check.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasgi_tests::apache::Apache;
use wasgi_tests::{apps, http, TempDir, Wasgi};

const MIB: u64 = 1 << 20;

fn features(extra: &[&str]) -> Wasgi {
    let script = apps().join("features.wsgi");
    let mut args = vec![script.to_str().unwrap()];
    if !extra.contains(&"--instances") {
        args.extend(["--instances", "2"]);
    }
    args.extend_from_slice(extra);
    Wasgi::start(&args)
}

fn environ(response: &http::Response) -> serde_json::Value {
    assert_eq!(response.status, 200, "{}", response.text());
    serde_json::from_slice(&response.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", response.text()))
}

/// A virtual host that proxies everything to `backend` (a ProxyPass target).
fn proxy_site(backend: &str) -> String {
    format!(
        "<VirtualHost 127.0.0.1:*>\n\
         ServerName app.example\n\
         ProxyPreserveHost On\n\
         ProxyPass / {backend}\n\
         ProxyPassReverse / {backend}\n\
         </VirtualHost>\n"
    )
}

#[test]
fn over_tcp_a_trusted_apache_passes_on_the_clients_view() {
    let wasgi = features(&["--trusted-proxy", "127.0.0.1"]);
    let apache = Apache::new("tcp");
    let apache = apache.start(&proxy_site(&format!("http://{}/", wasgi.addr)));

    // Apache adds X-Forwarded-For/-Host/-Server; the client's own
    // X-Forwarded-Proto (as a TLS front would set it) passes through.
    let r = apache.request(
        b"GET /environ/a%20b?x=1&y=%2F HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
    );
    let env = environ(&r);
    assert_eq!(env["HTTP_HOST"], "app.example");
    assert_eq!(env["SERVER_NAME"], "app.example");
    assert_eq!(env["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(env["wsgi.url_scheme"], "https");
    assert_eq!(env["SERVER_PORT"], "443");
    assert_eq!(env["PATH_INFO"], "/environ/a b");
    assert_eq!(env["QUERY_STRING"], "x=1&y=%2F");
    assert_eq!(env["HTTP_X_FORWARDED_HOST"], "app.example", "forwarding headers stay visible to the app");

    // A client-supplied X-Forwarded-For is one more hop in the chain: the
    // address Apache saw is trusted, so the one before it is the client.
    let r = apache.request(b"GET /environ HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: 198.51.100.7\r\nConnection: close\r\n\r\n");
    let env = environ(&r);
    assert_eq!(env["REMOTE_ADDR"], "198.51.100.7");
    assert_eq!(env["HTTP_X_FORWARDED_FOR"], "198.51.100.7, 127.0.0.1");
}

#[test]
fn a_client_cannot_forge_forwarding_through_the_recommended_apache_config() {
    // mod_proxy appends to X-Forwarded-For/-Host but passes X-Forwarded-Proto,
    // X-Forwarded-Port and Forwarded on as the client sent them: the config
    // of docs/mod_wsgi-differences.md makes Apache their only author.
    let wasgi = features(&["--trusted-proxy", "127.0.0.1"]);
    let backend = format!("http://{}/", wasgi.addr);
    let site = format!(
        "<VirtualHost 127.0.0.1:*>\n\
         ServerName app.example\n\
         ProxyPreserveHost On\n\
         ProxyPass / {backend}\n\
         RequestHeader set X-Forwarded-Proto \"expr=%{{REQUEST_SCHEME}}\"\n\
         RequestHeader unset X-Forwarded-Port\n\
         RequestHeader unset Forwarded\n\
         </VirtualHost>\n"
    );
    let apache = Apache::new("forged").start(&site);
    let r = apache.request(
        b"GET /environ HTTP/1.1\r\nHost: app.example\r\nForwarded: for=203.0.113.66;proto=https;host=evil.example\r\n\
          X-Forwarded-Proto: https\r\nX-Forwarded-Port: 8443\r\nX-Forwarded-Host: evil.example\r\nConnection: close\r\n\r\n",
    );
    let env = environ(&r);
    assert_eq!(env["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(env["wsgi.url_scheme"], "http");
    assert_eq!(env["HTTP_HOST"], "app.example", "Apache's X-Forwarded-Host is the right-most one");
    assert_eq!(env["SERVER_NAME"], "app.example");
    assert_eq!(env["SERVER_PORT"], "80");
    assert!(env.get("HTTP_FORWARDED").is_none());
}

#[test]
fn an_untrusted_apache_is_not_believed() {
    // No --trusted-proxy: the headers reach the app untouched as HTTP_*, and
    // the environ describes the connection from Apache.
    let wasgi = features(&[]);
    let apache = Apache::new("untrusted").start(&proxy_site(&format!("http://{}/", wasgi.addr)));
    let r = apache.request(b"GET /environ HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: 198.51.100.7\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n");
    let env = environ(&r);
    assert_eq!(env["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(env["wsgi.url_scheme"], "http");
    assert_eq!(env["HTTP_X_FORWARDED_FOR"], "198.51.100.7, 127.0.0.1");
    assert_eq!(env["HTTP_X_FORWARDED_PROTO"], "https");
}

#[test]
fn over_a_unix_socket_with_a_socket_mode_apaches_user_can_use() {
    let dir = TempDir::new("apache-unix");
    wasgi_tests::apache::make_traversable(dir.path());
    let socket = dir.path().join("wasgi.sock");
    let listen = format!("unix:{}", socket.display());
    let wasgi = features(&["--listen", &listen, "--socket-mode", "666", "--trusted-proxy", "unix"]);
    let apache = Apache::new("unix").start(&proxy_site(&format!("unix:{}|http://app/", socket.display())));

    let r = apache.get("/environ/over-unix?q=1", "app.example");
    let env = environ(&r);
    assert_eq!(env["PATH_INFO"], "/environ/over-unix");
    assert_eq!(env["QUERY_STRING"], "q=1");
    assert_eq!(env["HTTP_HOST"], "app.example");
    // A Unix socket has no peer address: the client's comes from Apache.
    assert_eq!(env["REMOTE_ADDR"], "127.0.0.1");

    // The big directions work over the socket too.
    let body: Vec<u8> = (0..8 * MIB).map(|i| (i % 251) as u8).collect();
    let mut raw = format!("POST /upload HTTP/1.1\r\nHost: app.example\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
    raw.extend_from_slice(&body);
    let r = apache.request(&raw);
    assert_eq!(r.text(), format!("{} {}", body.len(), hex::encode(Sha256::digest(&body))));
    drop(wasgi);
}

/// Streams `total` bytes of a pattern as a chunked request body.
fn send_chunked(stream: &mut impl Write, total: u64) -> String {
    let mut hasher = Sha256::new();
    let block: Vec<u8> = (0..65536u32).map(|i| (i % 253) as u8).collect();
    let mut sent = 0;
    while sent < total {
        let n = (total - sent).min(block.len() as u64) as usize;
        write!(stream, "{n:x}\r\n").unwrap();
        stream.write_all(&block[..n]).unwrap();
        stream.write_all(b"\r\n").unwrap();
        hasher.update(&block[..n]);
        sent += n as u64;
    }
    stream.write_all(b"0\r\n\r\n").unwrap();
    hex::encode(hasher.finalize())
}

#[test]
fn big_bodies_stream_both_ways_through_apache() {
    let wasgi = features(&[]);
    let apache = Apache::new("stream").start(&proxy_site(&format!("http://{}/", wasgi.addr)));

    // A 256 MiB chunked upload: Apache streams it on (it does not spool a
    // body it can forward chunked), the app reads and hashes it.
    let total = 256 * MIB;
    let mut stream = apache.connect();
    stream.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    write!(stream, "POST /upload?chunk=1048576 HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").unwrap();
    let digest = send_chunked(&mut stream, total);
    let r = http::read_response(&mut stream, false).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), format!("{total} {digest}"));

    // A 256 MiB download, hashed as it arrives.
    let mut stream = apache.connect();
    stream.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    write!(stream, "GET /download?mb=256 HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n").unwrap();
    let r = http::read_response(&mut stream, false).unwrap();
    assert_eq!(r.status, 200);
    let mut want = Sha256::new();
    for i in 0..256 * 16u64 {
        want.update(vec![(i % 256) as u8; 65536]);
    }
    assert_eq!(r.body.len() as u64, 256 * MIB);
    assert_eq!(hex::encode(Sha256::digest(&r.body)), hex::encode(want.finalize()));
}

#[test]
fn apache_keeps_its_connections_to_wasgi_alive() {
    // Without trusted forwarding, REMOTE_PORT is the port of Apache's
    // connection to wasgi: requests that reuse a connection share it.
    let wasgi = features(&[]);
    let apache = Apache::new("keepalive").start(&proxy_site(&format!("http://{}/", wasgi.addr)));
    let mut client = apache.connect();
    let mut ports = Vec::new();
    for _ in 0..6 {
        client.write_all(b"GET /environ HTTP/1.1\r\nHost: app.example\r\n\r\n").unwrap();
        let r = http::read_response(&mut client, false).unwrap();
        ports.push(environ(&r)["REMOTE_PORT"].as_str().unwrap().to_owned());
    }
    let mut distinct = ports.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() <= 2, "Apache opened a new connection to wasgi for most requests: ports {ports:?}");
}

#[test]
fn a_client_that_goes_away_stops_the_app_behind_apache() {
    let dir = TempDir::new("apache-gone");
    let progress = dir.path().join("progress");
    let wasgi = features(&["--grant-write", dir.path().to_str().unwrap()]);
    let apache = Apache::new("gone").start(&proxy_site(&format!("http://{}/", wasgi.addr)));
    let mut stream = apache.connect();
    write!(stream, "GET /download?mb=65536&progress={} HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n", progress.display()).unwrap();
    let mut buf = vec![0u8; 4 << 20];
    stream.read_exact(&mut buf).unwrap();
    drop(stream);
    // Apache aborts its backend connection; the app stops producing.
    let read = || std::fs::read_to_string(&progress).unwrap_or_default().trim().parse::<u64>().unwrap_or(0);
    let mut last = read();
    let mut stable = 0;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(200));
        let now = read();
        stable = if now == last { stable + 1 } else { 0 };
        last = now;
        if stable >= 5 {
            break;
        }
    }
    assert!(stable >= 5, "the app kept producing after the client left (progress {last})");
    assert!(last * 65536 < 4096 * MIB, "the app produced {} MiB for a client that read 4", last / 16);
    // The instance is free again for the next request.
    assert_eq!(apache.get("/instance", "app.example").status, 200);
}

#[test]
fn the_readiness_check_cannot_be_shadowed_by_an_app() {
    let wasgi = features(&[]);
    // features.wsgi answers every path; this one is wasgi's own.
    let r = wasgi.get("/.wasgi/ready");
    assert_eq!((r.status, r.text().as_str()), (200, "ready\n"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // Only the exact path is wasgi's: its neighbours are the app's.
    let r = wasgi.get("/.wasgi/readyz");
    assert_eq!((r.status, r.text().as_str()), (404, "not found\n"));
}

/// Sends `GET /instance` in a loop until stopped; counts answers by status.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Load {
    fn start(addr: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let result = std::net::TcpStream::connect(&addr).map_err(|e| e.to_string()).and_then(|mut c| {
                    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    c.write_all(b"GET /instance HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
                    http::read_response(&mut c, false).map_err(|e| e.to_string())
                });
                match result {
                    Ok(r) if r.status == 200 => {
                        o.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => f.lock().unwrap().push(format!("{} {}", r.status, r.text())),
                    Err(e) => f.lock().unwrap().push(e),
                }
            }
        });
        Load { stop, ok, failed, thread }
    }

    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        (self.ok.load(Ordering::Relaxed), self.failed.lock().unwrap().clone())
    }
}

#[test]
fn a_balancer_routes_around_a_wasgi_that_stops() {
    // shutdown_delay: after SIGTERM a member keeps serving while its readiness
    // check answers 503, until the health check has taken it out.
    let mut first = features(&["--instances", "1", "--shutdown-delay", "3"]);
    let second = features(&["--instances", "1", "--shutdown-delay", "3"]);
    let member = |addr: &str| {
        format!("    BalancerMember http://{addr} hcmethod=GET hcuri=/.wasgi/ready hcinterval=1 hcpasses=1 hcfails=1 retry=2\n")
    };
    let site = format!(
        "<Proxy balancer://wasgi>\n{}{}    ProxySet lbmethod=byrequests\n</Proxy>\n\
         <VirtualHost 127.0.0.1:*>\n  ServerName app.example\n  ProxyPreserveHost On\n  ProxyPass / balancer://wasgi/\n</VirtualHost>\n",
        member(&first.addr),
        member(&second.addr),
    );
    let apache = Apache::new("balancer").start(&site);

    let load = Load::start(apache.addr());
    std::thread::sleep(Duration::from_secs(2));
    // The first wasgi drains and exits while the load goes on.
    unsafe { libc::kill(first.child.id() as i32, libc::SIGTERM) };
    first.log.wait_for("still serving for 3s (shutdown_delay)", Duration::from_secs(10));
    let ready = first.get("/.wasgi/ready");
    assert_eq!((ready.status, ready.text().as_str()), (503, "draining: shutting down\n"));
    assert!(first.wait(Duration::from_secs(30)).success(), "{}", first.log.text());
    std::thread::sleep(Duration::from_secs(1));
    let before = load.ok.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(2));
    let (ok, failed) = load.finish();
    assert!(failed.is_empty(), "requests failed while a member stopped: {failed:?}\nApache's error log:\n{}", apache.error_log());
    assert!(ok > before, "the load stopped being served after the first wasgi left");
    // Both members served while both were up.
    assert!(first.log.text().contains("GET /instance"), "the first member never served:\n{}", first.log.text());
    assert!(second.log.text().contains("GET /instance"));
}
