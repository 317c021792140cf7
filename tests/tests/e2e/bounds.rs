//! Everything a guest hands the host is bounded: a response head (headers
//! counted and measured), a log record (cut to 16 KiB), the rate of log
//! records (a burst, then a steady rate; the rest dropped and counted), and
//! no log line a client or tenant writes can pass for another record. Each
//! test runs on both interpreters: frames over stdio on the pinned 3.12, host
//! calls on our 3.13.

use wasgi_tests::{apps, own_interpreter, pinned_interpreter, Wasgi};

/// `bounds.wsgi` with one instance on each interpreter, in turn.
fn on_each_interpreter(mut test: impl FnMut(&Wasgi, &str)) {
    for interpreter in ["cpython-3.12", "cpython-3.13"] {
        if interpreter == "cpython-3.13" {
            own_interpreter();
        } else {
            pinned_interpreter();
        }
        let script = apps().join("bounds.wsgi");
        let mut server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "1", "--interpreter", interpreter]);
        test(&server, interpreter);
        server.terminate();
    }
}

/// Log lines of the app (`wasgi::app`), with the request id they carry.
fn app_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(" wasgi::app: ")).collect()
}

#[test]
fn a_response_head_over_the_limits_is_a_500_that_the_log_explains() {
    on_each_interpreter(|server, on| {
        // Through start_response: the app's call raises, the traceback says where.
        let r = server.get("/many-headers?n=10000");
        assert_eq!(r.status, 500, "{on}: {}", server.log.text());
        server.log.wait_for("10000 response headers: wasgi passes at most 100", std::time::Duration::from_secs(10));
        // One 10 MiB header: a 500, not a broken instance.
        let r = server.get("/huge-header");
        assert_eq!(r.status, 500, "{on}: {}", server.log.text());
        server.log.wait_for("wasgi passes at most 65536", std::time::Duration::from_secs(10));
        // Around the bridge, more headers than HeaderMap can hold: the host
        // refuses the head (it would panic appending the 32,769th).
        let r = server.get("/raw-head?n=40000");
        assert_eq!(r.status, 500, "{on}: {}", server.log.text());
        server.log.wait_for("invalid response head: it has 40000 headers, over the limit of 100", std::time::Duration::from_secs(10));
        let r = server.get("/raw-head?n=101");
        assert_eq!(r.status, 500, "{on}: {}", server.log.text());
        assert_eq!(server.get("/raw-head?n=100").status, 200, "{on}: {}", server.log.text());
        let log = server.log.text();
        assert!(!log.contains("instance lost") && !log.contains("panicked"), "{on}: {log}");
    });
}

#[test]
fn a_10_mib_log_record_is_cut_to_16_kib_with_a_marker() {
    on_each_interpreter(|server, on| {
        // A line on stderr (print), and a record the bridge logs (a traceback).
        assert_eq!(server.get("/big-line").status, 200, "{on}: {}", server.log.text());
        assert_eq!(server.get("/big-record").status, 500, "{on}: {}", server.log.text());
        let log = server.log.wait_for("ValueError: big:", std::time::Duration::from_secs(10));
        for start in ["big:xxx", "ValueError: big:yyy"] {
            let line = log.lines().find(|l| l.contains(start)).unwrap_or_else(|| panic!("{on}: no {start} line:\n{log}"));
            assert!(line.len() < 17 * 1024, "{on}: a {}-byte line", line.len());
            assert!(line.contains("more bytes dropped: a log record is at most 16384 bytes]"), "{on}: {}", &line[line.len() - 300..]);
        }
        assert!(!log.contains("instance lost"), "{on}: {log}");
    });
}

#[test]
fn a_log_flood_is_rate_limited_and_what_was_dropped_is_counted() {
    on_each_interpreter(|server, on| {
        assert_eq!(server.get("/flood?n=10000").status, 200, "{on}: {}", server.log.text());
        // The count is said when the request ends: in the error log
        // (stderr), in no set order with the access line (stdout), so the
        // test waits for it.
        let counts = |log: &str| {
            let logged = app_lines(log).iter().filter(|l| l.contains("flood line ")).count();
            let dropped: usize = app_lines(log)
                .iter()
                .filter_map(|l| l.split(" log record(s) of this instance dropped").next().filter(|_| l.contains("dropped: over")))
                .map(|head| head.rsplit(' ').next().unwrap().parse::<usize>().unwrap())
                .sum();
            (logged, dropped)
        };
        let log = server.log.wait_until("every flood record logged or counted", std::time::Duration::from_secs(10), |log| {
            let (logged, dropped) = counts(log);
            logged + dropped >= 10000
        });
        let (logged, dropped) = counts(&log);
        assert!(logged >= 1000 && logged < 5000, "{on}: a burst of 1000, then 200/s: {logged} logged");
        assert_eq!(logged + dropped, 10000, "{on}: every record is logged or counted:\n{}", &log[log.len().saturating_sub(2000)..]);
        // The instance still logs afterwards, once its budget refills.
        assert_eq!(server.get("/").status, 200);
    });
}

#[test]
fn a_crlf_in_the_path_cannot_forge_a_log_line() {
    let forged = "2025-01-01T00:00:00.000000Z%20%20INFO%20wasgi::access:%20FORGED%20status=200";
    on_each_interpreter(|server, on| {
        let r = server.get(&format!("/crlf%0D%0A{forged}"));
        assert_eq!(r.status, 500, "{on}: {}", server.log.text());
        server.log.wait_for("ValueError: raised:", std::time::Duration::from_secs(10));
        // print() and wsgi.errors reach the log by their own way (the
        // guest's stderr), in no set order with the access line: wait for
        // all four.
        let log = server.log.wait_until("four lines showing the client's text", std::time::Duration::from_secs(10), |text| {
            text.lines().filter(|l| l.contains("FORGED")).count() >= 4
        });
        let mut seen = 0;
        for line in log.lines().filter(|l| l.contains("FORGED")) {
            // Each line that shows the client's text begins with the real
            // tags of its writer: a timestamp, a level and wasgi::app (or it
            // is the access log's own line, the client's address first, where
            // the path stays percent-encoded).
            let at = line.find("FORGED").unwrap();
            let head = &line[..at];
            assert!(line.starts_with(|c: char| c.is_ascii_digit()) && !head.starts_with("2025-01-01"), "{on}: forged line: {line}");
            assert!(head.contains(" wasgi::app: ") || (head.starts_with("127.0.0.1 - - [") && head.ends_with("\"GET /crlf%0D%0A2025-01-01T00:00:00.000000Z%20%20INFO%20wasgi::access:%20")), "{on}: {line}");
            seen += 1;
        }
        assert!(seen >= 4, "{on}: print, wsgi.errors, the exception and the access log:\n{log}");
        // The carriage return is shown, escaped, not obeyed.
        assert!(log.contains("/crlf\\r"), "{on}: {log}");
    });
}
