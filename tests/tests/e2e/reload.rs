//! reload_on_change (mod_wsgi's WSGIScriptReloading): an edited script is
//! picked up while a load loop runs, with no failed request; a broken edit
//! leaves the old code serving.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasgi_tests::{TempDir, Wasgi};

fn app(version: &str) -> String {
    format!(
        "VERSION = {version:?}\n\
         def application(environ, start_response):\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return [VERSION.encode()]\n"
    )
}

#[test]
fn an_edited_script_is_reloaded_without_failing_a_request() {
    let dir = TempDir::new("reload");
    let script = dir.path().join("app.wsgi");
    std::fs::write(&script, app("one")).unwrap();
    let server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "2", "--reload"]);
    assert_eq!(server.get("/").text(), "one");

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let seen_two = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..3 {
        let (addr, stop, failures, seen_two) = (server.addr.clone(), stop.clone(), failures.clone(), seen_two.clone());
        load.push(std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut done = 0;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && done < 20_000 {
                done += 1;
                let reply = std::net::TcpStream::connect(&addr).and_then(|mut s| {
                    use std::io::Write;
                    s.set_read_timeout(Some(Duration::from_secs(30)))?;
                    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
                    wasgi_tests::http::read_response(&mut s, false)
                });
                match reply {
                    Ok(r) if r.status == 200 && (r.text() == "one" || r.text() == "two") => {
                        if r.text() == "two" {
                            seen_two.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(&script, app("two")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen_two.load(Ordering::Relaxed) < 50 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    assert!(seen_two.load(Ordering::Relaxed) >= 50, "the new code never answered:\n{}", server.log.text());
    assert_eq!(failures.load(Ordering::Relaxed), 0, "requests failed during the reload:\n{}", server.log.text());
    for _ in 0..4 {
        assert_eq!(server.get("/").text(), "two", "every instance runs the new code");
    }

    // A broken edit: the old code keeps serving and the log shows why.
    std::fs::write(&script, "import json\njson.loads('{broken')\n").unwrap();
    server.log.wait_for("keep serving the old code", Duration::from_secs(30));
    server.log.wait_for("JSONDecodeError", Duration::from_secs(10));
    assert_eq!(server.get("/").text(), "two");
}

/// A config with one group per (name, script text), each on its own host.
fn write_config(dir: &std::path::Path, apps: &[(&str, &str)]) -> std::path::PathBuf {
    let mut text = String::from("[[listen]]\naddress = \"127.0.0.1:0\"\n");
    for (name, version) in apps {
        let home = dir.join(name);
        std::fs::create_dir_all(&home).unwrap();
        let script = home.join("app.wsgi");
        if std::fs::read_to_string(&script).ok().as_deref() != Some(app(version).as_str()) {
            std::fs::write(&script, app(version)).unwrap();
        }
        text.push_str(&format!(
            "\n[[group]]\nname = \"{name}\"\ninstances = 1\n\n[[app]]\nhost = \"{name}.example\"\nscript = \"{}\"\ngroup = \"{name}\"\n",
            script.display()
        ));
    }
    let file = dir.join("wasgi.toml");
    std::fs::write(&file, text).unwrap();
    file
}

fn get_host(server: &Wasgi, host: &str) -> (u16, String) {
    let r = server.request(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes());
    (r.status, r.text())
}

#[test]
fn sighup_reloads_the_config_keeping_the_listener_and_refuses_a_broken_one() {
    let dir = TempDir::new("sighup");
    let config = write_config(dir.path(), &[("alpha", "alpha-1"), ("beta", "beta-1")]);
    let server = Wasgi::serve(&config);
    assert_eq!(get_host(&server, "alpha.example").1, "alpha-1");
    assert_eq!(get_host(&server, "beta.example").1, "beta-1");

    // alpha unchanged, beta removed, gamma added.
    write_config(dir.path(), &[("alpha", "alpha-1"), ("gamma", "gamma-1")]);
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    server.log.wait_for("configuration reloaded: 1 group(s) unchanged, 1 started, 1 retired", Duration::from_secs(60));
    assert_eq!(get_host(&server, "gamma.example").1, "gamma-1", "the same listener serves the new group");
    assert_eq!(get_host(&server, "alpha.example").1, "alpha-1");
    assert_eq!(get_host(&server, "beta.example").1, "alpha-1", "beta's host now falls to the default virtual host");

    // A broken config is refused; the running one keeps serving.
    std::fs::write(&config, "[[group]]\nname = \"x\"\nbogus = 1\n").unwrap();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    server.log.wait_for("the new configuration is refused", Duration::from_secs(30));
    server.log.wait_for("wasgi.toml:3: (unknown key)", Duration::from_secs(10));
    assert_eq!(get_host(&server, "gamma.example").1, "gamma-1");
}

/// `wasgi run` has no file to re-read: SIGHUP restarts its instances on the
/// code as it is now (the supervisor's other kind of reload), and the
/// process keeps serving on the same listener.
#[test]
fn sighup_restarts_the_instances_of_wasgi_run() {
    let dir = TempDir::new("run-sighup");
    let script = dir.path().join("app.wsgi");
    std::fs::write(&script, app("one")).unwrap();
    let server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "2"]);
    assert_eq!(server.get("/").text(), "one");
    // Without --reload an edit alone changes nothing.
    std::fs::write(&script, app("two")).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(server.get("/").text(), "one");
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    server.log.wait_for("SIGHUP: restarting the instances", Duration::from_secs(10));
    server.log.wait_for("reloaded: 2 new instance(s)", Duration::from_secs(60));
    for _ in 0..4 {
        assert_eq!(server.get("/").text(), "two", "every instance runs the new code:\n{}", server.log.text());
    }
}
