//! How frames travel between the host and the bridge: through host calls on
//! wasgi's own CPython 3.13 build (its built-in `_wasgi` module), through the
//! guest's stdin and stdout on the pinned 3.12 build. The suite runs on
//! either (WASGI_INTERPRETER); this test checks the one it runs on.

use std::time::Duration;

use wasgi_tests::{apps, Wasgi};

/// The suite runs on our own build unless WASGI_INTERPRETER names the pinned one.
fn own_build() -> bool {
    !std::env::var("WASGI_INTERPRETER").is_ok_and(|v| matches!(v.trim(), "cpython-3.12" | "cpython-3.12.0" | "pinned"))
}

#[test]
fn the_startup_log_names_the_transport_and_only_host_calls_keep_fd_1_out_of_the_frames() {
    let script = apps().join("features.wsgi");
    let server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "1"]);
    let log = server.log.text();
    let ready = log.lines().find(|l| l.contains("instance(s) ready")).unwrap_or_else(|| panic!("no ready line:\n{log}"));
    let r = server.get("/fd1");
    if own_build() {
        assert!(ready.contains("frames over host calls"), "the own build uses the host calls: {ready}");
        // fd 1 is only the log: raw bytes written there neither break the
        // response nor the instance.
        assert_eq!((r.status, r.text().as_str()), (200, "wrote to fd 1\n"), "{}", server.log.text());
        let log = server.log.wait_for("raw-fd1-bytes", Duration::from_secs(10));
        let line = log.lines().find(|l| l.contains("raw-fd1-bytes")).unwrap();
        assert!(line.contains("app=features.wsgi") && line.contains("request="), "logged as the app's output: {line}");
        assert!(!log.contains("instance lost"), "{log}");
    } else {
        assert!(ready.contains("frames over stdio"), "the pinned build uses stdin/stdout: {ready}");
        // There fd 1 carries the frames: stray bytes break that instance
        // (and only that request), and the log says why.
        assert_eq!(r.status, 502, "{}", r.text());
        server.log.wait_for("something other than the bridge wrote to fd 1", Duration::from_secs(10));
        server.log.wait_for("replacement instance ready", Duration::from_secs(60));
    }
    assert_eq!(server.get("/head").text(), "hello");
}
