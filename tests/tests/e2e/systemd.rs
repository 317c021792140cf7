//! Under systemd: readiness and watchdog notifications on NOTIFY_SOCKET
//! (Type=notify), and socket activation: a listening socket handed over as
//! systemd does (descriptor 3, LISTEN_FDS, LISTEN_PID) is served, so a
//! restart loses no connection; and through systemd's own
//! systemd-socket-activate where it is installed.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasgi_tests::{apps, cache_dir, setup, wasgi_bin, TempDir, Wasgi};

/// `wasgi run features.wsgi` started as systemd starts a service: through a
/// shell that sets the variables naming its own pid, then execs wasgi.
/// `socket`, if given, becomes descriptor 3 with LISTEN_FDS=1.
fn as_a_service(socket: Option<&TcpListener>, env: &[(&str, String)], listen: &str) -> Command {
    setup();
    let script = apps().join("features.wsgi");
    let mut shell = String::from("WATCHDOG_PID=$$ ");
    if socket.is_some() {
        shell.push_str("LISTEN_PID=$$ LISTEN_FDS=1 ");
    }
    shell.push_str("exec \"$0\" \"$@\"");
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(shell).arg(wasgi_bin());
    cmd.args(["run", script.to_str().unwrap(), "--instances", "1", "--listen", listen, "--cache-dir", cache_dir().to_str().unwrap()]);
    cmd.env("NO_COLOR", "1").env_remove("WASGI_LOG").env_remove("WASGI_PYTHON_WASM");
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(socket) = socket {
        let fd = socket.as_raw_fd();
        // SAFETY: between fork and exec, only async-signal-safe calls.
        unsafe {
            cmd.pre_exec(move || {
                if fd != 3 && libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Kept across exec, as systemd passes it.
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// The notifications that arrive on `socket` within `timeout` until one
/// contains `until`.
fn notifications_until(socket: &UnixDatagram, until: &str, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        socket.set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)))).unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = message.lines().any(|l| l == until);
                seen.push(message);
                if done {
                    return seen;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no {until} within {timeout:?}; got {seen:?}");
}

#[test]
fn readiness_reloads_watchdog_and_stopping_are_notified() {
    let dir = TempDir::new("notify");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let env = [("NOTIFY_SOCKET", path.display().to_string()), ("WATCHDOG_USEC", "400000".to_owned())];
    let mut server = Wasgi::from_command(as_a_service(None, &env, "127.0.0.1:0")).wait_ready();

    let ready = notifications_until(&socket, "READY=1", Duration::from_secs(30));
    let last = ready.last().unwrap();
    assert!(last.contains("STATUS=serving 1 group(s) on http://127.0.0.1:"), "{ready:?}");
    // Ready only once the app serves.
    assert_eq!(server.get("/probe/ready").status, 200);
    // The watchdog: every half interval (200 ms here).
    let pings = notifications_until(&socket, "WATCHDOG=1", Duration::from_secs(5));
    assert!(pings.iter().all(|m| !m.contains("READY=1")), "{pings:?}");

    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    let reload = notifications_until(&socket, "RELOADING=1", Duration::from_secs(10));
    let reloading = reload.last().unwrap();
    assert!(reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")), "{reloading}");
    notifications_until(&socket, "READY=1", Duration::from_secs(60));

    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    notifications_until(&socket, "STOPPING=1", Duration::from_secs(10));
    assert!(server.wait(Duration::from_secs(60)).success());
}

#[test]
fn a_handed_over_socket_keeps_its_connections_across_a_restart() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut first = Wasgi::from_command(as_a_service(Some(&listener), &[], &addr)).wait_ready();
    assert!(first.log.text().contains(&format!("listening on http://{addr} as handed over by systemd")), "{}", first.log.text());
    assert_eq!(first.addr, addr);
    assert_eq!(first.get("/probe/first").status, 200);
    assert_eq!(first.terminate().code(), Some(0));

    // No server now: the kernel still accepts into the socket's queue.
    let mut client = std::net::TcpStream::connect(&addr).expect("the handed-over socket still takes connections");
    client.write_all(b"GET /probe/queued HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let second = Wasgi::from_command(as_a_service(Some(&listener), &[], &addr)).wait_ready();
    client.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("probe\n"), "{reply}");
    second.log.wait_for("APP-CALLED GET /probe/queued", Duration::from_secs(10));

    // A socket no listener names is an error, not a silent second port.
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let (ok, out) = wasgi_tests::run_to_end(as_a_service(Some(&other), &[], &addr));
    assert!(!ok);
    assert!(out.contains("systemd handed over a socket on http://127.0.0.1:") && out.contains("that no [[listen]] (or --listen) names"), "{out}");
}

#[test]
fn systemd_socket_activate_starts_wasgi_on_the_first_connection() {
    if Command::new("systemd-socket-activate").arg("--version").output().is_err() {
        eprintln!("systemd-socket-activate is not installed: skipped");
        return;
    }
    setup();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let script = apps().join("features.wsgi");
    let mut activator = Command::new("systemd-socket-activate")
        .args(["-l", &addr, "-E", "NO_COLOR=1"])
        .arg(wasgi_bin())
        .args(["run", script.to_str().unwrap(), "--instances", "1", "--listen", &addr, "--cache-dir", cache_dir().to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The socket is there before wasgi is; the first connection starts it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut client = loop {
        match std::net::TcpStream::connect(&addr) {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "systemd-socket-activate never listened on {addr}: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    client.write_all(b"GET /probe/activated HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    client.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    unsafe { libc::kill(activator.id() as i32, libc::SIGTERM) };
    let status = activator.wait().unwrap();
    let mut log = String::new();
    activator.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}\n{log}");
    assert!(log.contains("as handed over by systemd"), "{log}");
    assert!(status.success(), "{log}");
}

#[test]
fn the_example_units_verify_and_the_example_config_serves() {
    let dir = TempDir::new("systemd-example");
    let examples = wasgi_tests::root().join("examples/systemd");
    // The units, as systemd reads them (with the binary where it is here).
    if Command::new("systemd-analyze").arg("--version").output().is_ok() {
        for unit in ["wasgi.service", "wasgi.socket"] {
            let text = std::fs::read_to_string(examples.join(unit)).unwrap();
            std::fs::write(dir.path().join(unit), text.replace("/usr/local/bin/wasgi", wasgi_bin().to_str().unwrap())).unwrap();
        }
        let out = Command::new("systemd-analyze").arg("verify").arg(dir.path().join("wasgi.socket")).arg(dir.path().join("wasgi.service")).output().unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify:\n{said}");
    } else {
        eprintln!("systemd-analyze is not installed: the units were not verified");
    }

    // The example wasgi.toml, with this machine's paths and free ports.
    let ca = crate::tls::Authority::new(dir.path());
    let (cert, key) = ca.issue("shop");
    let app = dir.path().join("srv/shop");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("shop.wsgi"), "def application(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [('shop over ' + environ['wsgi.url_scheme'] + '\\n').encode()]\n").unwrap();
    let log = dir.path().join("access.log");
    let text = std::fs::read_to_string(examples.join("wasgi.toml"))
        .unwrap()
        .replace("0.0.0.0:80\"", "127.0.0.1:0\"")
        .replace("0.0.0.0:443\"", "127.0.0.1:0\"")
        .replace("127.0.0.1:9000", "127.0.0.1:0")
        .replace("/etc/wasgi/tls/fullchain.pem", cert.to_str().unwrap())
        .replace("/etc/wasgi/tls/privkey.pem", key.to_str().unwrap())
        .replace("/var/log/wasgi/access.log", log.to_str().unwrap())
        .replace("/srv/shop", app.to_str().unwrap());
    let config = dir.path().join("wasgi.toml");
    std::fs::write(&config, text).unwrap();
    let server = Wasgi::serve(&config);
    let r = server.request(b"GET / HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "shop over http\n"));
    let serving = server.log.wait_for("on https://", Duration::from_secs(30));
    let https = serving.split("on https://").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let port = https.rsplit(':').next().unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert"])
        .arg(ca.ca_file())
        .args(["--resolve", &format!("shop.example.com:{port}:127.0.0.1"), &format!("https://shop.example.com:{port}/")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "shop over https\n", "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&log).unwrap_or_default().lines().count() < 2 {
        assert!(Instant::now() < deadline, "the access log: {:?}", std::fs::read_to_string(&log));
        std::thread::sleep(Duration::from_millis(20));
    }
}
