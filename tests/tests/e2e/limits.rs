//! Lifecycle limits, each provoked by a misbehaving app: what the client and
//! the log see, and that the neighbours keep serving.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
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

fn raw_exchange(server: &Wasgi, raw: &[u8]) -> String {
    use std::io::Read;
    let mut s = server.connect();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(raw);
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn oversized_heads_get_431_and_oversized_bodies_413_before_the_app_runs() {
    let server = features(&["--instances", "1", "--max-header-bytes", "8192", "--max-headers", "50", "--max-body-bytes", "1000"]);
    let big = format!("GET /probe/big HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(10_000));
    assert!(raw_exchange(&server, big.as_bytes()).starts_with("HTTP/1.1 431"), "a 10 kB header is refused");
    let mut many = String::from("GET /probe/many HTTP/1.1\r\nHost: x\r\n");
    for i in 0..60 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert!(raw_exchange(&server, many.as_bytes()).starts_with("HTTP/1.1 431"), "60 headers are refused");
    let body = format!("POST /probe/body HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{}", "b".repeat(5000));
    let reply = raw_exchange(&server, body.as_bytes());
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    // A chunked body that grows past the limit is cut off while the app reads it.
    let mut chunked = String::from("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    for _ in 0..4 {
        chunked.push_str(&format!("1f4\r\n{}\r\n", "c".repeat(500)));
    }
    chunked.push_str("0\r\n\r\n");
    let reply = raw_exchange(&server, chunked.as_bytes());
    assert!(reply.starts_with("HTTP/1.1 500"), "{reply}");
    server.log.wait_for("over max_body_bytes (1000)", Duration::from_secs(10));
    let r = server.get("/probe/ok");
    assert_eq!(r.status, 200);
    let log = server.log.wait_for("APP-CALLED GET /probe/ok", Duration::from_secs(10));
    assert_eq!(log.matches("APP-CALLED").count(), 1, "refused requests reached the app:\n{log}");
}

#[test]
fn slow_clients_are_cut_off_by_the_read_timeouts() {
    use std::io::Read;
    let server = features(&["--instances", "1", "--header-read-timeout", "1", "--body-read-timeout", "1"]);
    // Slowloris: a head that never ends.
    let mut s = server.connect();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(started.elapsed() < Duration::from_secs(10), "the connection stayed open");
    // An idle keep-alive connection is closed by the same timeout.
    let mut s = server.connect();
    s.write_all(b"GET /head HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(http::read_response(&mut s, false).unwrap().status, 200);
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty() && started.elapsed() < Duration::from_secs(10), "the idle connection stayed open");
    // A body that stalls halfway.
    let mut s = server.connect();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhello").unwrap();
    let r = http::read_response(&mut s, false).unwrap();
    assert_eq!(r.status, 500);
    server.log.wait_for("body_read_timeout", Duration::from_secs(10));
    assert_eq!(server.get("/head").status, 200, "the instance serves on");
}

#[test]
fn max_connections_holds_new_connections_until_one_closes() {
    use std::io::Read;
    let server = features(&["--instances", "1", "--max-connections", "2"]);
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut s = server.connect();
        s.write_all(b"GET /head HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(http::read_response(&mut s, false).unwrap().status, 200);
        open.push(s); // kept alive and idle
    }
    let mut third = server.connect();
    third.write_all(b"GET /head HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    third.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    let mut byte = [0u8; 1];
    assert!(third.read(&mut byte).is_err(), "a third connection was served while two were open");
    drop(open.pop());
    third.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut rest = Vec::new();
    third.read_to_end(&mut rest).unwrap();
    assert!(String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&rest));
}

#[test]
fn inactivity_timeout_stops_idle_instances_and_the_next_request_starts_them_again() {
    // The request goes out, on a connection opened beforehand, the moment
    // the log shows the last instance stopping: the moment that once left
    // it queued with no instance to start (a 503 after queue_timeout, about
    // 1 run in 5 of the old one-round test). Five rounds.
    let server = features(&["--instances", "2", "--inactivity-timeout", "1", "--queue-timeout", "20"]);
    assert_eq!(server.get("/head").text(), "hello");
    for round in 1..=5 {
        let mut connection = server.connect();
        server.log.wait_until("both instances should stop when idle", Duration::from_secs(20), |log| {
            log.matches("without a request (inactivity_timeout)").count() >= 2 * round
        });
        connection.write_all(b"GET /head HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let reply = http::read_response(&mut connection, false).unwrap();
        assert_eq!((reply.status, reply.text()), (200, "hello".to_owned()), "round {round}: the next request is served:\n{}", server.log.text());
        server.log.wait_until("the group should wake", Duration::from_secs(10), |log| {
            log.matches("a request arrived for an idle group: starting 2 instance(s)").count() >= round
        });
    }
    assert!(!server.log.text().contains("no instance was free"), "{}", server.log.text());
}

#[test]
fn a_worker_task_that_panics_is_logged_counted_and_replaced() {
    // No guest can make a worker task panic; this test-only fault, on only
    // with this variable, panics each instance's task after 2 requests.
    let script = apps().join("features.wsgi");
    let mut command = wasgi_tests::start_command(&[script.to_str().unwrap(), "--instances", "1"]);
    command.env("WASGI_TEST_PANIC_WORKER_AFTER", "2");
    let server = Wasgi::from_command(command).wait_ready();
    let tokens: Vec<String> = (0..5)
        .map(|i| {
            let reply = server.get("/instance");
            assert_eq!(reply.status, 200, "request {i}:\n{}", server.log.text());
            reply.text().split(' ').next().unwrap().to_owned()
        })
        .collect();
    assert_eq!(tokens[0], tokens[1]);
    assert_ne!(tokens[1], tokens[2], "the third request is served by the replacement");
    assert_ne!(tokens[3], tokens[4], "and the fifth by the replacement's replacement");
    let log = server.log.wait_for("(2 worker(s) lost in this group so far)", Duration::from_secs(10));
    assert!(log.contains("the worker task of instance 1 panicked"), "{log}");
    assert!(log.contains("the worker task of instance 2 panicked"), "{log}");
}

#[test]
fn cpu_time_limit_counts_running_not_waiting() {
    let server = features(&["--instances", "2", "--cpu-time-limit", "1", "--request-timeout", "30"]);
    let sleeper = in_background(&server, "/sleep?s=2");
    let started = Instant::now();
    let r = server.get("/spin");
    assert_eq!(r.status, 504);
    assert!(started.elapsed() < Duration::from_secs(15));
    server.log.wait_for("GET /spin exceeded cpu_time_limit (1s)", Duration::from_secs(10));
    let slept = sleeper.join().unwrap();
    assert_eq!((slept.status, slept.text().as_str()), (200, "slept\n"), "two seconds of sleep use no CPU time");
}

#[test]
fn deep_recursion_fails_the_request_not_the_server() {
    let server = features(&["--instances", "1"]);
    let r = server.get("/recurse");
    assert_eq!(r.status, 500);
    server.log.wait_for("RecursionError", Duration::from_secs(10));
    // Recursion in C (the json encoder): a RecursionError, or a trapped
    // instance that is replaced; either way only this request fails.
    let r = server.get("/deep-json?depth=200000");
    assert!(r.status == 500 || r.status == 502, "{} {}", r.status, r.text());
    for _ in 0..3 {
        assert_eq!(server.get("/head").text(), "hello");
    }
}

#[test]
fn graceful_timeout_caps_the_drain_after_sigterm() {
    let mut server = features(&["--instances", "1", "--graceful-timeout", "1"]);
    let stuck = in_background(&server, "/sleep?s=30");
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let status = server.wait(Duration::from_secs(20));
    assert!(status.success(), "{}", server.log.text());
    assert!(started.elapsed() < Duration::from_secs(10), "the drain was not capped");
    assert!(server.log.text().contains("gave up waiting for connections after 1s"), "{}", server.log.text());
    let _ = stuck.join();
}

#[test]
fn listen_backlog_bounds_the_connections_the_kernel_queues() {
    // One connection is served and held; the accept loop waits for it to
    // close, so later clients can only queue in the kernel, up to the backlog.
    let server = features(&["--instances", "1", "--max-connections", "1", "--listen-backlog", "1"]);
    let mut held = server.connect();
    held.write_all(b"GET /head HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(http::read_response(&mut held, false).unwrap().status, 200);
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    let mut queued = Vec::new();
    let mut refused = 0;
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(700)) {
            Ok(s) => queued.push(s),
            Err(_) => refused += 1,
        }
    }
    assert!(queued.len() <= 3, "{} connections queued past a backlog of 1", queued.len());
    assert!(refused >= 5, "only {refused} of 8 connections were held off");
    // Once the held connection closes, the queued ones are served.
    drop(held);
    let mut first = queued.remove(0);
    first.write_all(b"GET /head HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    first.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    assert_eq!(http::read_response(&mut first, false).unwrap().status, 200);
}

#[test]
fn max_queue_turns_away_requests_beyond_the_queue_at_once() {
    let server = features(&["--instances", "1", "--max-queue", "1", "--queue-timeout", "0"]);
    let busy = in_background(&server, "/sleep?s=2");
    std::thread::sleep(Duration::from_millis(400));
    let queued = in_background(&server, "/head");
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let turned_away = server.get("/head");
    assert_eq!(turned_away.status, 503, "{}", turned_away.text());
    assert!(started.elapsed() < Duration::from_secs(1), "a full queue answers at once");
    assert_eq!(turned_away.header("retry-after"), Some("5"));
    assert_eq!(busy.join().unwrap().status, 200);
    assert_eq!(queued.join().unwrap().text(), "hello", "the queued request is served");
    server.log.wait_for("the request queue is full (1 waiting)", Duration::from_secs(10));
}

/// Nothing a guest does blocks the server's threads: guests sleeping, or
/// blocked opening a FIFO that a tenant put in its grant (no writer ever
/// comes), occupy their own instances only. Each blocks as many requests as
/// the server has worker threads; a request to a free instance is still
/// answered while they wait, and request_timeout ends the FIFO readers.
#[test]
fn sleeping_or_blocked_guests_do_not_stall_the_other_instances() {
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let dir = wasgi_tests::TempDir::new("fifo");
    let fifo = dir.path().join("pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let instances = (workers + 1).to_string();
    let server = features(&["--instances", &instances, "--request-timeout", "4", "--grant-read", dir.path().to_str().unwrap()]);

    let sleepers: Vec<_> = (0..workers).map(|_| in_background(&server, "/sleep?s=3")).collect();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.get("/head").text(), "hello");
    assert!(sleepers.iter().all(|s| !s.is_finished()), "the probe was answered only after the sleepers");
    for s in sleepers {
        assert_eq!(s.join().unwrap().status, 200);
    }

    let readers: Vec<_> = (0..workers).map(|_| in_background(&server, &format!("/read-file?path={}", fifo.display()))).collect();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.get("/head").text(), "hello");
    assert!(readers.iter().all(|r| !r.is_finished()));
    for r in readers {
        assert_eq!(r.join().unwrap().status, 504, "request_timeout ends a guest blocked in a file operation");
    }
    server.log.wait_for(&format!("GET /read-file?path={} exceeded request_timeout (4s)", fifo.display()), Duration::from_secs(10));
    // Let the blocked opens finish, so no thread stays stuck after the test.
    for _ in 0..workers {
        let _ = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&fifo);
    }
    drop(server);
}
