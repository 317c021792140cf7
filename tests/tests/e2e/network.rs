//! Outbound connections by capability (issue 17): a guest reaches what its
//! group's `[[connect]]` grants (or `wasgi run --connect`) allow, through the
//! ordinary `socket` module, and nothing else; every refusal is a
//! PermissionError in the app and a log line that says which grant would
//! allow it. These tests use peers the test itself runs on loopback; the
//! real databases and drivers have their own tests.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasgi_tests::{check, own_interpreter, TempDir, Wasgi};

/// Connects where the query says (`host`, `port`, or `unix`), sends one line
/// and answers with the line it got back, or with the error's type and text
/// (502).
pub const CLIENT_APP: &str = r#"import socket
from urllib.parse import parse_qs

def application(environ, start_response):
    q = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    try:
        if "unix" in q:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(q["unix"])
        else:
            s = socket.create_connection((q.get("host", "127.0.0.1"), int(q["port"])), timeout=5)
        with s:
            s.sendall(b"hello\n")
            line = s.makefile("rb").readline()
        status, body = "200 OK", line
    except Exception as e:
        status, body = "502 Bad Gateway", f"{type(e).__name__}: {e}".encode()
    start_response(status, [("Content-Type", "text/plain")])
    return [body]
"#;

/// A line-echo server on loopback (`echo: LINE`), one thread per connection,
/// stopped when dropped.
pub struct EchoServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl EchoServer {
    pub fn start() -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        std::thread::spawn(move || echo(stream));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        EchoServer { port, stop }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn echo(stream: TcpStream) {
    stream.set_nonblocking(false).unwrap();
    let mut writer = stream.try_clone().unwrap();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        if writer.write_all(format!("echo: {line}\n").as_bytes()).is_err() {
            return;
        }
    }
}

/// Writes `source` as `dir`/app.wsgi; its path.
pub fn write_app(dir: &Path, source: &str) -> String {
    let script = dir.join("app.wsgi");
    std::fs::write(&script, source).unwrap();
    script.display().to_string()
}

/// A granted address is reached; the port next to it, and an address asked
/// for through a name no grant names, are refused, and the log says what
/// would allow each.
#[test]
fn a_granted_address_is_reached_and_every_other_is_refused_with_the_grant_that_would_allow_it() {
    own_interpreter();
    let (granted, other) = (EchoServer::start(), EchoServer::start());
    let dir = TempDir::new("net-grant");
    let script = write_app(dir.path(), CLIENT_APP);
    let grant = format!("127.0.0.1:{}", granted.port);
    let server = Wasgi::start(&[&script, "--instances", "1", "--connect", &grant]);

    let r = server.get(&format!("/?port={}", granted.port));
    assert_eq!((r.status, r.text().as_str()), (200, "echo: hello\n"), "{}", server.log.text());

    let r = server.get(&format!("/?port={}", other.port));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().starts_with("PermissionError"), "{}", r.text());
    // The fix is the record's last line: waited for, so the whole record is in.
    let log = server.log.wait_for(&format!("wasgi run --connect 127.0.0.1:{}", other.port), Duration::from_secs(10));
    assert!(log.contains(&format!("denied: connecting to 127.0.0.1:{}: no [[connect]] grant allows it", other.port)), "{log}");
    assert!(log.contains(&format!("connect grants: {grant} (--connect {grant})")), "{log}");

    // A name is looked up only if a grant names it.
    let r = server.get(&format!("/?host=localhost&port={}", granted.port));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().starts_with("PermissionError"), "{}", r.text());
    server.log.wait_for("denied: looking up \"localhost\": no [[connect]] grant names it", Duration::from_secs(10));
}

/// A name grant lets the guest look the name up and connect to what it
/// resolved to, on the granted port only.
#[test]
fn a_name_grant_reaches_the_addresses_the_name_resolves_to() {
    own_interpreter();
    let peer = EchoServer::start();
    let dir = TempDir::new("net-name");
    let script = write_app(dir.path(), CLIENT_APP);
    let server = Wasgi::start(&[&script, "--instances", "1", "--connect", &format!("localhost:{}", peer.port)]);
    let r = server.get(&format!("/?host=localhost&port={}", peer.port));
    assert_eq!((r.status, r.text().as_str()), (200, "echo: hello\n"), "{}", server.log.text());
    // The same address, asked for directly, is not what the grant names... but
    // this instance looked localhost up, so its answer is the name's.
    let r = server.get(&format!("/?port={}", peer.port));
    assert_eq!((r.status, r.text().as_str()), (200, "echo: hello\n"), "{}", server.log.text());
    // Another port of the same name is not granted.
    let other = EchoServer::start();
    let r = server.get(&format!("/?host=localhost&port={}", other.port));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().starts_with("PermissionError"), "{}", r.text());
    let log = server.log.wait_for(&format!("--connect localhost:{}", other.port), Duration::from_secs(10));
    assert!(log.contains(&format!("denied: connecting to 127.0.0.1:{} (the address of localhost)", other.port)), "{log}");
}

/// Without a grant the guest has no network, and says how to grant it.
#[test]
fn without_a_grant_the_app_is_told_how_to_grant_a_connection() {
    own_interpreter();
    let peer = EchoServer::start();
    let dir = TempDir::new("net-none");
    let script = write_app(dir.path(), CLIENT_APP);
    let server = Wasgi::start(&[&script, "--instances", "1"]);
    let r = server.get(&format!("/?port={}", peer.port));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("[[connect]]"), "{}", r.text());
}

/// A group holds at most `max_connections` open at once; past it the guest
/// gets EMFILE, and closing one makes room again.
#[test]
fn max_connections_holds_for_the_group() {
    own_interpreter();
    let peer = EchoServer::start();
    let dir = TempDir::new("net-max");
    let app = r#"import socket, errno
from urllib.parse import parse_qs
held = []

def application(environ, start_response):
    q = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    lines = []
    for i in range(int(q["n"])):
        try:
            held.append(socket.create_connection(("127.0.0.1", int(q["port"])), timeout=5))
            lines.append("ok")
        except OSError as e:
            lines.append(errno.errorcode.get(e.errno, str(e.errno)))
    if q.get("close"):
        while held:
            held.pop().close()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [" ".join(lines).encode()]
"#;
    let script = write_app(dir.path(), app);
    let server = Wasgi::start(&[&script, "--instances", "1", "--connect", &format!("127.0.0.1:{}", peer.port), "--max-outbound-connections", "2"]);
    let r = server.get(&format!("/?port={}&n=3&close=1", peer.port));
    assert_eq!((r.status, r.text().as_str()), (200, "ok ok EMFILE"), "{}", server.log.text());
    server.log.wait_for("already holds 2 open connection(s), its max_connections", Duration::from_secs(10));
    let r = server.get(&format!("/?port={}&n=2", peer.port));
    assert_eq!((r.status, r.text().as_str()), (200, "ok ok"), "closed connections make room: {}", server.log.text());
}

/// The host descriptors a guest's connections use are closed when it closes
/// them, and when its instance ends with them open (request isolation ends
/// the instance with every request).
#[test]
fn no_host_descriptor_outlives_its_connection() {
    own_interpreter();
    let peer = EchoServer::start();
    let dir = TempDir::new("net-fds");
    let app = r#"import socket
from urllib.parse import parse_qs
leaked = []

def application(environ, start_response):
    q = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", int(q["port"])), timeout=5)
        s.sendall(b"x\n")
        s.makefile("rb").readline()
        if q.get("leak"):
            leaked.append(s)
        else:
            s.close()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done"]
"#;
    let script = write_app(dir.path(), app);
    let fds = |server: &Wasgi| std::fs::read_dir(format!("/proc/{}/fd", server.child.id())).unwrap().count();
    // The server's descriptors once they are back to `before`, or after 5 s.
    let settled = |server: &Wasgi, before: usize| {
        let mut now = fds(server);
        for _ in 0..50 {
            if now <= before {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            now = fds(server);
        }
        now
    };
    let grant = format!("127.0.0.1:{}", peer.port);

    let server = Wasgi::start(&[&script, "--instances", "1", "--connect", &grant]);
    assert_eq!(server.get(&format!("/?port={}", peer.port)).status, 200);
    let before = fds(&server);
    for _ in 0..10 {
        assert_eq!(server.get(&format!("/?port={}", peer.port)).text(), "done");
    }
    // The server closes the test client's last connection a moment after
    // the response (once its access line is written): wait for that, not
    // for a leak. (Fewer is fine.)
    let now = settled(&server, before);
    assert!(now <= before, "closed connections leave no descriptor behind: {before} descriptors before, {now} after 50 connections");
    drop(server);

    let server = Wasgi::start(&[&script, "--instances", "1", "--connect", &grant, "--isolation", "request"]);
    assert_eq!(server.get(&format!("/?port={}&leak=1", peer.port)).status, 200);
    let before = fds(&server);
    for _ in 0..10 {
        assert_eq!(server.get(&format!("/?port={}&leak=1", peer.port)).text(), "done");
    }
    // The last request's instance may still be winding down.
    let now = settled(&server, before);
    assert!(now <= before, "connections left open die with their instance: {before} descriptors before, {now} after");
}

/// `wasgi check` lists each group's connect grants with their origin, and a
/// grant that does not parse is an error naming the file and line.
#[test]
fn check_lists_connect_grants_and_names_a_bad_one() {
    let dir = TempDir::new("net-check");
    std::fs::create_dir_all(dir.path().join("policies/users")).unwrap();
    let script = write_app(dir.path(), CLIENT_APP);
    let policy = dir.path().join("policies/users/alice.toml");
    std::fs::write(&policy, "[[connect]]\nto = \"db.internal:5432\"\n\n[[connect]]\nto = \"10.0.0.0/8:6379-6380\"\n\n[limits]\nmax_connections = 7\n").unwrap();
    let config = dir.path().join("wasgi.toml");
    std::fs::write(&config, format!("[[group]]\nname = \"a\"\nuser = \"alice\"\ninstances = 1\n\n[[app]]\nscript = \"{script}\"\ngroup = \"a\"\n")).unwrap();
    let (ok, out) = check(&config);
    assert!(ok, "{out}");
    let row = |grant: &str, line: usize| {
        out.lines().any(|l| l.trim_start().starts_with(grant) && l.trim_end().ends_with(&format!("{}:{line}", policy.display())))
    };
    assert!(row("db.internal:5432", 2), "{out}");
    assert!(row("10.0.0.0/8:6379-6380", 5), "{out}");
    assert!(out.contains("at most 7 open at once"), "{out}");

    std::fs::write(&policy, "[[connect]]\nto = \"db.internal:5432\"\n\n[[connect]]\nto = \"db.internal\"\n").unwrap();
    let (ok, out) = check(&config);
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("{}:5", policy.display())) && out.contains("connect[1].to") && out.contains("no :PORT"), "{out}");
}

/// With connect grants, `app.run()` at import is still a server start: the
/// start fails naming the file and line, as without them.
#[test]
fn app_run_at_import_is_refused_with_grants_too() {
    let packages = wasgi_tests::flask_packages();
    let script = wasgi_tests::apps().join("app_run.wsgi");
    let server = Wasgi::spawn(&[script.to_str().unwrap(), "--python-path", packages.to_str().unwrap(), "--instances", "1", "--connect", "127.0.0.1:5432"]);
    let log = server.log.wait_for("if __name__ == '__main__':", Duration::from_secs(120));
    assert!(log.contains(&format!("{}:11", script.display())), "file:line of app.run(): {log}");
}

/// Fetches `url` with urllib (no client timeout unless `timeout` is given)
/// and answers with the body, or the error's type and text (502).
const FETCH_APP: &str = r#"import urllib.request
from urllib.parse import parse_qs

def application(environ, start_response):
    q = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    try:
        kw = {"timeout": float(q["timeout"])} if "timeout" in q else {}
        status, body = "200 OK", urllib.request.urlopen(q["url"], **kw).read()
    except Exception as e:
        status, body = "502 Bad Gateway", f"{type(e).__name__}: {e}".encode()
    start_response(status, [("Content-Type", "text/plain")])
    return [body]
"#;

/// A peer that resets mid-response is an error in the app; one that stalls
/// is cut by the request's own timeout (504, the limit named), and the group
/// serves the next request; a granted name that does not resolve is the
/// usual gaierror.
#[test]
fn resets_stalls_and_unresolvable_names_are_ordinary_errors() {
    own_interpreter();
    let peer = wasgi_tests::servers::HttpServer::start(None);
    let dir = TempDir::new("net-faults");
    let script = write_app(dir.path(), FETCH_APP);
    let grant = format!("127.0.0.1:{}", peer.port);
    let server = Wasgi::start(&[&script, "--instances", "1", "--connect", &grant, "--connect", "no-such-host.invalid:80", "--request-timeout", "3"]);
    let base = format!("http://127.0.0.1:{}", peer.port);

    let r = server.get(&format!("/?url={base}/reset"));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(["ConnectionResetError", "IncompleteRead", "RemoteDisconnected"].iter().any(|e| r.text().contains(e)), "{}", r.text());

    let started = std::time::Instant::now();
    let r = server.get(&format!("/?url={base}/slow?s=30"));
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(20), "the stall was cut by request_timeout, not by the peer");
    server.log.wait_for("exceeded request_timeout (3s)", Duration::from_secs(10));

    let r = server.get(&format!("/?url={base}/hello"));
    assert_eq!((r.status, r.text().as_str()), (200, wasgi_tests::servers::HELLO_BODY), "the group serves on: {}", server.log.text());

    let r = server.get("/?url=http://no-such-host.invalid/");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("Name or service not known"), "{}", r.text());
}

/// A guest that opens connections in a loop, keeping them, is stopped at the
/// group's limit with EMFILE; the server's own descriptors stay bounded, and
/// the next request (after the instance let them go) connects again.
#[test]
fn a_guest_hoarding_connections_hits_the_limit_and_the_host_is_unharmed() {
    own_interpreter();
    let peer = EchoServer::start();
    let dir = TempDir::new("net-hoard");
    let app = r#"import socket, errno
from urllib.parse import parse_qs

def application(environ, start_response):
    q = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    held, failed = [], {}
    for _ in range(int(q["n"])):
        try:
            held.append(socket.create_connection(("127.0.0.1", int(q["port"])), timeout=5))
        except OSError as e:
            name = errno.errorcode.get(e.errno, str(e.errno))
            failed[name] = failed.get(name, 0) + 1
    for s in held:
        s.close()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"held={len(held)} failed={sorted(failed.items())}".encode()]
"#;
    let script = write_app(dir.path(), app);
    let server = Wasgi::start(&[&script, "--instances", "1", "--connect", &format!("127.0.0.1:{}", peer.port)]);
    let fds = || std::fs::read_dir(format!("/proc/{}/fd", server.child.id())).unwrap().count();
    let before = fds();
    let r = server.get(&format!("/?port={}&n=2000", peer.port));
    assert_eq!((r.status, r.text().as_str()), (200, "held=100 failed=[('EMFILE', 1900)]"), "{}", server.log.text());
    let after = fds();
    assert!(after <= before + 5, "every connection was closed: {before} descriptors before, {after} after");
    let r = server.get(&format!("/?port={}&n=3", peer.port));
    assert_eq!((r.status, r.text().as_str()), (200, "held=3 failed=[]"), "{}", server.log.text());
}

/// A grant that does not parse is refused at start, naming the flag.
#[test]
fn a_connect_flag_that_does_not_parse_is_refused() {
    let dir = TempDir::new("net-badflag");
    let script = write_app(dir.path(), CLIENT_APP);
    let (ok, out) = wasgi_tests::run_to_end(wasgi_tests::start_command(&[&script, "--connect", "db.internal"]));
    assert!(!ok, "{out}");
    assert!(out.contains("--connect") && out.contains("no :PORT"), "{out}");
}

/// The pinned 3.12 build has no host calls for connections: a group with
/// grants is warned about at start, and its app gets the no-network error
/// naming the interpreter it needs.
#[test]
fn the_pinned_interpreter_says_connect_grants_need_cpython_313() {
    let peer = EchoServer::start();
    let dir = TempDir::new("net-pinned");
    let script = write_app(dir.path(), CLIENT_APP);
    let grant = format!("127.0.0.1:{}", peer.port);
    let server = Wasgi::start(&[&script, "--instances", "1", "--interpreter", "cpython-3.12", "--connect", &grant]);
    server.log.wait_for("has connect grants, but runs cpython-3.12", Duration::from_secs(10));
    let r = server.get(&format!("/?port={}", peer.port));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("connect grants need the cpython-3.13"), "{}", r.text());
}

/// The socket API a client uses, in the real guest: non-blocking connect
/// with selectors, SO_ERROR, select and poll, MSG_PEEK, names, options,
/// shutdown, a receive timeout, asyncio streams, and the clear refusals
/// (listening, UDP).
const SOCKET_API_APP: &str = r#"import asyncio, errno, select, selectors, socket
from urllib.parse import parse_qs

def run(port):
    out = []
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    # On loopback the connect may be done by the time it returns (0), as on Linux.
    code = s.connect_ex(("127.0.0.1", port))
    out.append("connect_ex=" + ("ok" if code in (0, errno.EINPROGRESS) else errno.errorcode.get(code, str(code))))
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_WRITE)
    out.append(f"writable={bool(sel.select(timeout=5))}")
    sel.unregister(s)
    out.append(f"so_error={s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)}")
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    out.append(f"peer={s.getpeername() == ('127.0.0.1', port)} local={s.getsockname()[0]}")
    s.sendall(b"one\n")
    r, _, _ = select.select([s], [], [], 5)
    out.append(f"select={len(r)}")
    out.append("peek=" + s.recv(5, socket.MSG_PEEK).decode())
    p = select.poll()
    p.register(s, select.POLLIN)
    out.append(f"poll={[bool(ev & select.POLLIN) for _, ev in p.poll(5000)]}")
    out.append("recv=" + s.recv(100).decode().strip())
    try:
        s.recv(100)
    except BlockingIOError:
        out.append("nonblocking=BlockingIOError")
    s.setblocking(True)
    s.settimeout(0.3)
    try:
        s.recv(100)
    except socket.timeout as e:
        out.append(f"timeout={type(e).__name__}")
    s.sendall(b"two\n")
    s.shutdown(socket.SHUT_WR)
    s.settimeout(5)
    data = b""
    while chunk := s.recv(100):
        data += chunk
    out.append("after_shutdown=" + data.decode().strip() + "+EOF")
    s.close()
    out.append(f"closed_fileno={s.fileno()}")

    async def streams():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"three\n")
        await writer.drain()
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return line.decode().strip()
    out.append("asyncio=" + asyncio.run(streams()))

    for what, attempt in (("listen", lambda: socket.create_server(("127.0.0.1", 8080))),
                          ("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))):
        try:
            attempt()
            out.append(f"{what}=allowed?!")
        except OSError as e:
            out.append(f"{what}={e.strerror}")
    return "\n".join(out)

def application(environ, start_response):
    q = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [run(int(q["port"])).encode()]
"#;

#[test]
fn the_socket_api_of_a_client_works_in_the_guest() {
    own_interpreter();
    let peer = EchoServer::start();
    let dir = TempDir::new("net-api");
    let script = write_app(dir.path(), SOCKET_API_APP);
    let server = Wasgi::start(&[&script, "--instances", "1", "--connect", &format!("127.0.0.1:{}", peer.port)]);
    let r = server.get(&format!("/?port={}", peer.port));
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log.text());
    let expected = [
        "connect_ex=ok",
        "writable=True",
        "so_error=0",
        "peer=True local=127.0.0.1",
        "select=1",
        "peek=echo:",
        "poll=[True]",
        "recv=echo: one",
        "nonblocking=BlockingIOError",
        "timeout=TimeoutError",
        "after_shutdown=echo: two+EOF",
        "closed_fileno=-1",
        "asyncio=echo: three",
        // (create_server adds "(while attempting to bind on address ...)", as CPython's does.)
        "listen=wasgi: servers cannot run in the sandbox: only outbound client connections are possible",
        "udp=wasgi: UDP is not available in the sandbox",
    ];
    let text = r.text();
    let got: Vec<&str> = text.lines().map(|l| l.split(" (while attempting").next().unwrap()).collect();
    assert_eq!(got, expected, "{}", server.log.text());
}

/// The host calls taken directly, with what a hostile app could hand them:
/// handles it does not hold, a garbage address, an oversized poll, a huge
/// name. Each is an ordinary OSError; the instance serves on.
#[test]
fn the_host_calls_refuse_bad_arguments_without_harm() {
    own_interpreter();
    let peer = EchoServer::start();
    let dir = TempDir::new("net-hostile");
    let app = r#"import errno, _wasgi

def attempt(call):
    try:
        call()
        return "ok?!"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))

def application(environ, start_response):
    out = [
        "send=" + attempt(lambda: _wasgi.net_send(12345, b"x", 0)),
        "recv=" + attempt(lambda: _wasgi.net_recv_into(-7, bytearray(10), 0, 0, 0)),
        "close=" + attempt(lambda: _wasgi.net_close(99, 3)),
        "name=" + attempt(lambda: _wasgi.net_name(4, True)),
        "connect=" + attempt(lambda: _wasgi.net_connect(b"\xff not an address", 80, 1000)),
        "poll=" + attempt(lambda: _wasgi.net_poll(bytearray(8 * 100_000), 0)),
        "resolve=" + attempt(lambda: _wasgi.net_resolve(b"a" * 100_000)),
    ]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [" ".join(out).encode()]
"#;
    let script = write_app(dir.path(), app);
    let server = Wasgi::start(&[&script, "--instances", "1", "--connect", &format!("127.0.0.1:{}", peer.port)]);
    for _ in 0..2 {
        let r = server.get("/");
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "send=EBADF recv=EBADF close=EBADF name=EBADF connect=EINVAL poll=EINVAL resolve=EACCES"),
            "{}",
            server.log.text()
        );
    }
}
