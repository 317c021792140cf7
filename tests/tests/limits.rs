//! Lifecycle limits, each provoked by a misbehaving app: what the client and
//! the log see, and that the neighbours keep serving.

use std::io::Write;
use std::time::{Duration, Instant};

use wasgi_tests::{apps, http, Wasgi};

fn features(extra: &[&str]) -> Wasgi {
    let script = apps().join("features.wsgi");
    let mut args = vec![script.to_str().unwrap()];
    args.extend_from_slice(extra);
    Wasgi::start(&args)
}

fn in_background(server: &Wasgi, path: &str) -> std::thread::JoinHandle<http::Response> {
    let addr = server.addr.clone();
    let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        http::read_response(&mut s, false).unwrap()
    })
}

#[test]
fn request_timeout_interrupts_busy_loops_and_sleeps_with_504_and_neighbours_keep_serving() {
    let server = features(&["--instances", "2", "--request-timeout", "2"]);
    let spin = in_background(&server, "/spin");
    let sleep = in_background(&server, "/sleep?s=30");
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let spin = spin.join().unwrap();
    let sleep = sleep.join().unwrap();
    assert_eq!(spin.status, 504, "{}", spin.text());
    assert_eq!(sleep.status, 504, "{}", sleep.text());
    assert!(started.elapsed() < Duration::from_secs(20), "the deadline did not stop them");
    let log = server.log.wait_for("GET /spin exceeded request_timeout (2s)", Duration::from_secs(10));
    assert!(log.contains("GET /sleep?s=30 exceeded request_timeout (2s)"), "{log}");
    // Both instances are replaced and serve again.
    server.log.wait_for("replacement instance ready", Duration::from_secs(30));
    for _ in 0..4 {
        assert_eq!(server.get("/head").text(), "hello");
    }
}

#[test]
fn queue_timeout_answers_503_with_retry_after_when_no_instance_frees_up() {
    let server = features(&["--instances", "1", "--queue-timeout", "1"]);
    let busy = in_background(&server, "/sleep?s=4");
    std::thread::sleep(Duration::from_millis(500));
    let waited = server.get("/head");
    assert_eq!(waited.status, 503, "{}", waited.text());
    assert_eq!(waited.header("retry-after"), Some("5"));
    assert_eq!(busy.join().unwrap().status, 200, "the busy request still completes");
    server.log.wait_for("no instance was free within queue_timeout (1s)", Duration::from_secs(10));
    assert_eq!(server.get("/head").status, 200);
}

#[test]
fn maximum_requests_recycles_an_instance() {
    let server = features(&["--instances", "1", "--maximum-requests", "3"]);
    let tokens: Vec<String> = (0..4).map(|_| server.get("/instance").text().split(' ').next().unwrap().to_owned()).collect();
    assert_eq!(tokens[0], tokens[2], "the first three requests share an instance");
    assert_ne!(tokens[2], tokens[3], "the fourth is served by a fresh instance");
    server.log.wait_for("recycling after 3 requests (maximum_requests)", Duration::from_secs(10));
}

#[test]
fn memory_limit_gives_the_app_a_memory_error_and_the_instance_survives() {
    let server = features(&["--instances", "1", "--memory-limit", "96"]);
    assert_eq!(server.get("/alloc?mb=16").text(), "allocated 16 MiB");
    let r = server.get("/alloc?mb=200");
    assert_eq!(r.status, 500);
    server.log.wait_for("MemoryError", Duration::from_secs(10));
    assert_eq!(server.get("/alloc?mb=16").text(), "allocated 16 MiB", "the same instance recovers");
    assert!(!server.log.text().contains("replacement instance"), "{}", server.log.text());
}

#[test]
fn startup_timeout_stops_an_app_that_never_finishes_importing() {
    let script = apps().join("import_loop.wsgi");
    let mut server = Wasgi::spawn(&[script.to_str().unwrap(), "--instances", "1", "--startup-timeout", "2"]);
    let status = server.wait(Duration::from_secs(60));
    assert!(!status.success());
    let log = server.log.text();
    assert!(log.contains("still importing after startup_timeout (2s)"), "{log}");
}
