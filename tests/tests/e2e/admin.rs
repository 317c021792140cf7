//! The admin listener after a known load: /metrics counts each group's
//! requests, bytes, CPU time and limits apart; /status and `wasgi status`
//! show the instances and the request one is serving; /live and /ready
//! answer there, and no app is reachable through it.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use wasgi_tests::{apps, wasgi_bin, TempDir, Wasgi};

/// The admin listener's address, from its log line.
fn admin_addr(server: &Wasgi) -> String {
    let log = server.log.wait_for("admin listener on ", Duration::from_secs(30));
    let line = log.lines().find(|l| l.contains("admin listener on ")).unwrap();
    line.split("admin listener on http://").nth(1).unwrap().split_whitespace().next().unwrap().to_owned()
}

/// Every sample of a scrape: `name{labels}` → value.
fn scrape(admin: &str) -> BTreeMap<String, f64> {
    let r = wasgi_tests::http::get(admin, "/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("application/openmetrics-text"), "{:?}", r.header("content-type"));
    let text = r.text();
    assert!(text.ends_with("# EOF\n"), "{text}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse::<f64>().unwrap_or_else(|_| panic!("{l}")))
        })
        .collect()
}

fn get(server: &Wasgi, host: &str, target: &str) -> u16 {
    server.request(format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).status
}

#[test]
fn metrics_and_status_account_for_each_group() {
    let dir = TempDir::new("admin");
    let script = apps().join("features.wsgi");
    let config = dir.path().join("wasgi.toml");
    std::fs::write(
        &config,
        format!(
            "admin = \"127.0.0.1:0\"\naccess_log = \"off\"\n\n[http]\nmax_body_bytes = 200000\n\n[[listen]]\naddress = \"127.0.0.1:0\"\n\n\
             [[group]]\nname = \"alpha\"\ninstances = 1\n\n[[group]]\nname = \"beta\"\ninstances = 2\ncpu_time_limit = 1\n\n\
             [[app]]\nhost = \"alpha.example\"\nscript = \"{s}\"\ngroup = \"alpha\"\n\n\
             [[app]]\nhost = \"beta.example\"\nmount = \"/b\"\nscript = \"{s}\"\ngroup = \"beta\"\n",
            s = script.display()
        ),
    )
    .unwrap();
    let server = Wasgi::serve(&config);
    let admin = admin_addr(&server);

    for _ in 0..5 {
        assert_eq!(get(&server, "alpha.example", "/probe/a"), 200);
    }
    let upload = vec![b'x'; 100_000];
    let r = server.request(&[format!("POST /upload HTTP/1.1\r\nHost: alpha.example\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", upload.len()).as_bytes(), &upload].concat());
    assert_eq!(r.status, 200);
    let ambiguous = server.request(b"GET /x HTTP/1.1\r\nHost: alpha.example\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(ambiguous.status, 400);
    assert_eq!(get(&server, "beta.example", "/b/probe/b"), 200);
    let large = server.request(b"POST /b/upload HTTP/1.1\r\nHost: beta.example\r\nContent-Length: 300000\r\n\r\n");
    assert_eq!(large.status, 413);
    // A spinning request uses up beta's cpu_time_limit: 504, its instance replaced.
    assert_eq!(get(&server, "beta.example", "/b/spin"), 504);

    let m = scrape(&admin);
    let at = |series: &str| *m.get(series).unwrap_or_else(|| panic!("no {series} in the scrape:\n{m:#?}"));
    assert_eq!(at(r#"wasgi_requests_total{group="alpha",app="features.wsgi",status="2xx"}"#), 6.0);
    assert_eq!(at(r#"wasgi_requests_total{group="(server)",app="",status="4xx"}"#), 1.0, "the 400 is the server's own, refused before routing");
    assert_eq!(at(r#"wasgi_requests_total{group="beta",app="features.wsgi",status="2xx"}"#), 1.0);
    assert_eq!(at(r#"wasgi_requests_total{group="beta",app="features.wsgi",status="5xx"}"#), 1.0);
    assert_eq!(at(r#"wasgi_request_body_bytes_total{group="alpha",app="features.wsgi"}"#), 100_000.0);
    assert_eq!(at(r#"wasgi_request_body_bytes_total{group="beta",app="features.wsgi"}"#), 0.0);
    assert!(at(r#"wasgi_response_body_bytes_total{group="alpha",app="features.wsgi"}"#) >= 5.0 * "probe\n".len() as f64);
    assert_eq!(at(r#"wasgi_request_duration_seconds_count{group="alpha",app="features.wsgi"}"#), 6.0);
    assert_eq!(at(r#"wasgi_queue_wait_seconds_count{group="beta",app="features.wsgi"}"#), 2.0);
    // CPU: beta spun until its limit (a second of epoch ticks while it ran,
    // less CPU on a loaded machine); alpha only served small requests.
    let (alpha_cpu, beta_cpu) = (at(r#"wasgi_cpu_seconds_total{group="alpha",app="features.wsgi"}"#), at(r#"wasgi_cpu_seconds_total{group="beta",app="features.wsgi"}"#));
    assert!(beta_cpu >= 0.25, "beta's CPU: {beta_cpu}");
    assert!(alpha_cpu > 0.0 && alpha_cpu < beta_cpu, "alpha's CPU: {alpha_cpu}, beta's {beta_cpu}");
    assert_eq!(at(r#"wasgi_limit_hits_total{group="beta",app="features.wsgi",limit="cpu_time_limit"}"#), 1.0);
    assert_eq!(at(r#"wasgi_instance_ends_total{group="beta",app="features.wsgi",reason="cpu_time_limit"}"#), 1.0);
    assert_eq!(at(r#"wasgi_limit_hits_total{group="beta",app="features.wsgi",limit="max_body_bytes"}"#), 1.0);
    assert_eq!(at(r#"wasgi_requests_total{group="beta",app="features.wsgi",status="4xx"}"#), 1.0, "the 413 counts for beta");
    assert!(!m.keys().any(|k| k.starts_with("wasgi_limit_hits_total{group=\"alpha\",")), "alpha hit no limit");
    assert_eq!(at(r#"wasgi_instances_configured{group="beta",app="features.wsgi"}"#), 2.0);
    assert!(at(r#"wasgi_memory_bytes{group="alpha",app="features.wsgi"}"#) > 1e6);
    assert!(at(r#"wasgi_memory_peak_bytes{group="alpha",app="features.wsgi"}"#) >= at(r#"wasgi_memory_bytes{group="alpha",app="features.wsgi"}"#));
    assert_eq!(at(r#"wasgi_outbound_connections_total{group="alpha",app="features.wsgi"}"#), 0.0);

    // A request in flight, as /status and `wasgi status` show it.
    let addr = server.addr.clone();
    let slow = std::thread::spawn(move || {
        wasgi_tests::http::request(&addr, b"GET /sleep?s=2 HTTP/1.1\r\nHost: alpha.example\r\nConnection: close\r\n\r\n").status
    });
    std::thread::sleep(Duration::from_millis(600));
    let status: serde_json::Value = serde_json::from_str(&wasgi_tests::http::get(&admin, "/status").text()).unwrap();
    let alpha = status["groups"].as_array().unwrap().iter().find(|g| g["name"] == "alpha").unwrap();
    assert_eq!(alpha["served"], 6);
    let busy = &alpha["instances"][0]["request"];
    assert_eq!(busy["target"], "/sleep?s=2", "{status:#}");
    assert!(busy["running"].as_f64().unwrap() > 0.3, "{status:#}");
    let out = Command::new(wasgi_bin()).args(["status", "--admin", &admin]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("group alpha (features.wsgi): 1 of 1 instance(s) up (1 busy, 0 idle, 0 starting), 0 queued, 6 served"), "{text}");
    assert!(text.contains("group beta (features.wsgi): "), "{text}");
    let row = text.lines().find(|l| l.contains("GET /sleep?s=2 for ")).unwrap_or_else(|| panic!("no busy row:\n{text}"));
    assert!(row.trim_start().starts_with("1  busy"), "{row}");
    assert_eq!(slow.join().unwrap(), 200);

    // `wasgi status` finds the admin listener in the config too; a server
    // that is not there is a clear error.
    let out = Command::new(wasgi_bin()).args(["status", "--admin", "127.0.0.1:1"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the admin listener at 127.0.0.1:1"), "{}", String::from_utf8_lossy(&out.stderr));

    // Probes; nothing of an app through the admin listener.
    assert_eq!(wasgi_tests::http::get(&admin, "/live").status, 200);
    assert_eq!(wasgi_tests::http::get(&admin, "/ready").status, 200);
    assert_eq!(wasgi_tests::http::get(&admin, "/ready/beta").status, 200);
    assert_eq!(wasgi_tests::http::get(&admin, "/ready/gamma").status, 404);
    assert_eq!(wasgi_tests::http::get(&admin, "/probe/a").status, 404);
}
