//! mod_wsgi-era controls that wasgi keeps: `[[app]] allow` / `deny` (Apache's
//! `Require ip`, `Order`/`Allow from`/`Deny from`) and `restrict_stdout`
//! (`WSGIRestrictStdout On`).

use wasgi_tests::{apps, check, TempDir, Wasgi};

fn write_config(dir: &TempDir, apps_toml: &str) -> std::path::PathBuf {
    let features = apps().join("features.wsgi");
    let text = format!(
        "trusted_proxies = [\"127.0.0.1\"]\n\n[[listen]]\naddress = \"127.0.0.1:0\"\n\n[[group]]\nname = \"g\"\ninstances = 1\n\n{}",
        apps_toml.replace("SCRIPT", &features.display().to_string())
    );
    let path = dir.path().join("wasgi.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    path
}

#[test]
fn allow_and_deny_lists_answer_403_to_other_clients() {
    let dir = TempDir::new("access");
    let config = write_config(
        &dir,
        r#"[[app]]
script = "SCRIPT"
group = "g"
allow = ["127.0.0.1", "10.1"]
deny = ["10.1.2.0/24"]

[[app]]
mount = "/closed"
script = "SCRIPT"
group = "g"
deny = ["all"]
"#,
    );
    let (ok, report) = check(&config);
    assert!(ok, "{report}");
    assert!(report.contains("clients  allow 127.0.0.1/32, 10.1.0.0/16; deny 10.1.2.0/24"), "{report}");
    assert!(report.contains("clients  deny all"), "{report}");

    let server = Wasgi::serve(&config);
    assert_eq!(server.get("/instance").status, 200, "loopback is allowed");
    let r = server.get("/closed/instance");
    assert_eq!((r.status, r.text().as_str()), (403, "Forbidden\n"));
    // Behind a trusted proxy the client's address is what counts.
    let forwarded = |xff: &str| {
        server.request(format!("GET /instance HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {xff}\r\nConnection: close\r\n\r\n").as_bytes()).status
    };
    assert_eq!(forwarded("10.1.7.7"), 200);
    assert_eq!(forwarded("10.1.2.9"), 403, "deny wins over allow");
    assert_eq!(forwarded("198.51.100.7"), 403);
    let log = server.log.wait_for("client 198.51.100.7 is not allowed", std::time::Duration::from_secs(10));
    assert!(log.contains("status=403"), "{log}");
}

#[test]
fn a_bad_address_entry_is_refused_with_its_line() {
    let dir = TempDir::new("access-bad");
    let config = write_config(&dir, "[[app]]\nscript = \"SCRIPT\"\ngroup = \"g\"\nallow = [\"intranet.example\"]\n");
    let (ok, report) = check(&config);
    assert!(!ok);
    assert!(report.contains("wasgi.toml:13: app.allow: \"intranet.example\" is not \"all\""), "{report}");
}

#[test]
fn restrict_stdout_makes_print_raise_like_mod_wsgi() {
    let script = apps().join("features.wsgi");
    let server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "1", "--restrict-stdout"]);
    let r = server.get("/print");
    assert_eq!(r.status, 500);
    let log = server.log.wait_for("sys.stdout access restricted by wasgi", std::time::Duration::from_secs(10));
    assert!(log.contains("OSError"), "{log}");
    // Without the flag (the default), print() goes to the log.
    let server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "1"]);
    assert_eq!(server.get("/print").text(), "printed\n");
}

#[test]
fn a_sighup_reload_changes_the_trusted_proxies() {
    let dir = TempDir::new("access-hup");
    let app = "[[app]]\nscript = \"SCRIPT\"\ngroup = \"g\"\n";
    let config = write_config(&dir, app);
    // Start with nobody trusted.
    let text = std::fs::read_to_string(&config).unwrap().replace("trusted_proxies = [\"127.0.0.1\"]", "trusted_proxies = []");
    std::fs::write(&config, &text).unwrap();
    let server = Wasgi::serve(&config);
    let remote_addr = || {
        let r = server.request(b"GET /environ HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.7\r\nConnection: close\r\n\r\n");
        let env: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        env["REMOTE_ADDR"].as_str().unwrap().to_owned()
    };
    assert_eq!(remote_addr(), "127.0.0.1");
    std::fs::write(&config, text.replace("trusted_proxies = []", "trusted_proxies = [\"127.0.0.0/8\"]")).unwrap();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    server.log.wait_for("configuration reloaded", std::time::Duration::from_secs(60));
    assert_eq!(remote_addr(), "198.51.100.7");
}
