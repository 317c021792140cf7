//! What operators parse: the access log (Apache's combined format with the
//! request id, group and duration added, JSON, or a template), request ids
//! from a trusted proxy kept and otherwise made, the error log as JSON, and
//! SIGUSR1 reopening the access log after logrotate moved it.

use std::path::Path;
use std::time::Duration;

use wasgi_tests::{apps, TempDir, Wasgi};

fn start(extra: &[&str]) -> Wasgi {
    let script = apps().join("features.wsgi");
    let mut args = vec![script.to_str().unwrap(), "--instances", "1"];
    args.extend_from_slice(extra);
    Wasgi::start(&args)
}

/// The access log's lines once it has `n` of them.
fn lines_of(file: &Path, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(std::time::Instant::now() < deadline, "{} has {} line(s), not {n}:\n{text}", file.display(), lines.len());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A combined-format line cut into its fields: the quoted ones whole.
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let (field, after) = if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find("\" ").or_else(|| quoted.strip_suffix('"').map(str::len)).unwrap();
            (&quoted[..end], quoted.get(end + 1..).unwrap_or(""))
        } else if let Some(bracketed) = rest.strip_prefix('[') {
            let end = bracketed.find(']').unwrap();
            (&bracketed[..end], &bracketed[end + 1..])
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        out.push(field.to_owned());
        rest = after;
    }
    out
}

#[test]
fn access_lines_are_combined_with_request_id_group_and_duration() {
    let dir = TempDir::new("access-log");
    let file = dir.path().join("access.log");
    let server = start(&["--access-log", file.to_str().unwrap(), "--trusted-proxy", "127.0.0.1"]);

    // A trusted proxy's id is kept: in the environ, the response and the log.
    let r = server.request(
        b"GET /environ?x=1 HTTP/1.1\r\nHost: shop.example\r\nX-Request-Id: edge-42\r\nReferer: http://a.example/\r\nUser-Agent: probe/1.0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some("edge-42"));
    let environ: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(environ["wasgi.request_id"], "edge-42");
    assert_eq!(environ["HTTP_X_REQUEST_ID"], "edge-42");
    // A request with no id gets one; the app's print is logged under it.
    let r = server.get("/print");
    let made = r.header("x-request-id").expect("a made id").to_owned();
    assert_eq!(made.len(), 32, "{made}");
    let log = server.log.wait_for(&format!("request={made}"), Duration::from_secs(10));
    assert!(log.lines().any(|l| l.contains(" wasgi::app: ") && l.contains(&format!("request={made}"))), "{log}");
    // What the server answers itself is logged too, without a group.
    assert_eq!(server.get("/.wasgi/ready").status, 200);
    let r = server.request(b"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(r.status, 400);

    let lines = lines_of(&file, 3);
    assert_eq!(lines.len(), 3, "the readiness probe is not logged:\n{}", lines.join("\n"));
    let first = fields(&lines[0]);
    // %h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %L %G %{ms}T
    assert_eq!(first.len(), 12, "{first:?}");
    assert_eq!(&first[..3], ["127.0.0.1", "-", "-"]);
    assert!(first[3].ends_with(" +0000") && first[3].contains('/'), "{first:?}");
    assert_eq!(first[4], "GET /environ?x=1 HTTP/1.1");
    assert_eq!(first[5], "200");
    assert!(first[6].parse::<u64>().unwrap() > 100, "the body's bytes: {first:?}");
    assert_eq!(&first[7..11], ["http://a.example/", "probe/1.0", "edge-42", "features.wsgi"]);
    assert!(first[11].parse::<f64>().unwrap() > 0.0, "{first:?}");
    let second = fields(&lines[1]);
    assert_eq!(second[9], made);
    let refused = fields(&lines[2]);
    assert_eq!((refused[5].as_str(), refused[10].as_str()), ("400", "-"), "{refused:?}");
}

#[test]
fn an_untrusted_clients_request_id_is_replaced() {
    let server = start(&["--access-log", "off", "--trusted-proxy", "192.0.2.1"]);
    let r = server.request(b"GET /environ HTTP/1.1\r\nHost: x\r\nX-Request-Id: forged\r\nConnection: close\r\n\r\n");
    let id = r.header("x-request-id").unwrap().to_owned();
    assert_ne!(id, "forged");
    let environ: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(environ["HTTP_X_REQUEST_ID"], id.as_str());
    assert_eq!(environ["wasgi.request_id"], id.as_str());
    // --access-log off: nothing but the error log's events.
    assert!(!server.log.text().contains("GET /environ"), "{}", server.log.text());
}

#[test]
fn json_logs_are_one_object_per_line_and_sigusr1_reopens_the_access_log() {
    let dir = TempDir::new("json-log");
    let file = dir.path().join("access.json");
    let server = start(&["--log-format", "json", "--access-log", file.to_str().unwrap(), "--access-log-format", "json"]);
    assert_eq!(server.get("/print").status, 200);
    assert_eq!(server.get("/raise").status, 500);
    server.log.wait_for("RuntimeError", Duration::from_secs(10));

    // The error log: every line an object with a level, a target and a
    // message; the traceback is in one event, its lines in the message.
    let log = server.log.text();
    let events: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(events.iter().all(|e| e["level"].is_string() && e["target"].is_string() && e["timestamp"].is_string()), "{log}");
    assert!(events.iter().any(|e| e["message"].as_str().is_some_and(|m| m.starts_with("serving ")) && e["target"] == "wasgi::run"), "{log}");
    let printed = events.iter().find(|e| e["target"] == "wasgi::app" && e["message"].as_str().is_some_and(|m| m.contains("PRINTED-stdout"))).expect("the app's print");
    assert_eq!(printed["app"], "features.wsgi");
    assert!(printed["request"].as_str().is_some_and(|r| r.len() == 32), "{printed}");

    let lines = lines_of(&file, 2);
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["method"], "GET");
    assert_eq!(first["target"], "/print");
    assert_eq!(first["status"], 200);
    assert_eq!(first["group"], "features.wsgi");
    assert_eq!(first["request_id"], printed["request"]);
    assert!(first["duration_ms"].as_f64().unwrap() > 0.0);
    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(second["status"], 500);

    // logrotate: the file is moved, SIGUSR1, and new lines go to a new file.
    let rotated = dir.path().join("access.json.1");
    std::fs::rename(&file, &rotated).unwrap();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGUSR1) };
    server.log.wait_for("reopened", Duration::from_secs(10));
    assert_eq!(server.get("/probe/after-rotation").status, 200);
    let fresh = lines_of(&file, 1);
    assert!(fresh[0].contains("/probe/after-rotation"), "{fresh:?}");
    assert_eq!(std::fs::read_to_string(&rotated).unwrap().lines().count(), 2, "the moved file keeps its lines and gets no more");
}

#[test]
fn a_template_format_and_a_bad_one() {
    let dir = TempDir::new("template-log");
    let file = dir.path().join("access.log");
    let server = start(&["--access-log", file.to_str().unwrap(), "--access-log-format", "%m %U%q %>s %{Content-Type}o %{X-Trace}i %L"]);
    let r = server.request(b"GET /probe/t?a=1 HTTP/1.1\r\nHost: x\r\nX-Trace: t-9\r\nConnection: close\r\n\r\n");
    let id = r.header("x-request-id").unwrap().to_owned();
    assert_eq!(lines_of(&file, 1)[0], format!("GET /probe/t?a=1 200 text/plain t-9 {id}"));

    let script = apps().join("features.wsgi");
    let (ok, out) = wasgi_tests::run_to_end(wasgi_tests::start_command(&[script.to_str().unwrap(), "--access-log-format", "%h %Z"]));
    assert!(!ok);
    assert!(out.contains("%Z is not a directive wasgi knows"), "{out}");
}
