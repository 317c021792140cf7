//! What an app learns about its host inside the sandbox (issue 15): the
//! user and group it runs as (`os.getuid`, `pwd`, `grp`, `getpass`), the
//! host's name (`socket.gethostname`, `platform`), its CPUs, and the IANA
//! time zones (`zoneinfo`, with no tzdata installed by the app), on both
//! interpreters, with and without a snapshot.
//!
//! WASI has none of these: without wasgi's answers the app below fails at
//! its imports (`from os import getuid`, `import pwd`) and `ZoneInfo("UTC")`
//! raises ZoneInfoNotFoundError.

use std::path::{Path, PathBuf};

use wasgi_tests::{check, own_interpreter, TempDir, Wasgi};

/// Asks everything at import, the way pkg_resources, platformdirs and
/// Celery do, and again per request; each answer on its own line.
const FACTS_APP: &str = r#"import os
from os import getuid, getgid
import pwd, grp, getpass, socket, platform

AT_IMPORT = f"{pwd.getpwuid(getuid()).pw_name}:{grp.getgrgid(getgid()).gr_name}"

def application(environ, start_response):
    lines = [
        "user=" + pwd.getpwuid(os.getuid()).pw_name,
        "group=" + grp.getgrgid(os.getgid()).gr_name,
        "getuser=" + getpass.getuser(),
        "hostname=" + socket.gethostname(),
        "node=" + platform.node(),
        f"cpu_count={os.cpu_count()}",
        "platform=" + platform.platform(),
        "home=" + pwd.getpwnam(getpass.getuser()).pw_dir,
        "expanduser=" + os.path.expanduser("~"),
        f"ids={os.geteuid()},{os.getegid()},{os.getgroups()}",
        "members=" + ",".join(grp.getgrnam(grp.getgrgid(os.getgid()).gr_name).gr_mem),
        "at_import=" + AT_IMPORT,
    ]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["\n".join(lines).encode()]
"#;

/// Time zones, with no tzdata package anywhere the app can import it from.
const ZONES_APP: &str = r#"import importlib.util
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

UTC = ZoneInfo("UTC")

def application(environ, start_response):
    tokyo = datetime(2024, 1, 1, 12, tzinfo=timezone.utc).astimezone(ZoneInfo("Asia/Tokyo"))
    paris = datetime.now(ZoneInfo("Europe/Paris"))
    lines = [
        f"tzdata_installed={importlib.util.find_spec('tzdata') is not None}",
        f"utc={UTC}",
        f"tokyo={tokyo.isoformat()}",
        f"paris_offset={paris.utcoffset()}",
        f"paris_summer={datetime(2024, 7, 1, 12, tzinfo=ZoneInfo('Europe/Paris')).utcoffset()}",
    ]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["\n".join(lines).encode()]
"#;

/// The host's own name, what guests see unless a group says otherwise.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    assert_eq!(unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) }, 0);
    let len = buf.iter().position(|&b| b == 0).unwrap();
    String::from_utf8(buf[..len].to_vec()).unwrap()
}

/// The app's answer as `key=value` pairs.
fn facts(server: &Wasgi, host: &str) -> Vec<(String, String)> {
    let r = server.request(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes());
    assert_eq!(r.status, 200, "{host}: {}\n{}", r.text(), server.log.text());
    r.text().lines().map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).unwrap_or_else(|| panic!("{l}"))).collect()
}

fn get<'a>(facts: &'a [(String, String)], key: &str) -> &'a str {
    facts.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no {key} in {facts:?}"))
}

/// A wasgi.toml whose groups each serve `app` at host NAME.example, with
/// `extra` lines in the group; policies/users/NAME.toml and
/// policies/groups/NAME.toml exist (empty) for every user and group named.
fn write_config(dir: &Path, app: &str, groups: &[(&str, &str)]) -> PathBuf {
    let mut text = String::from("[[listen]]\naddress = \"127.0.0.1:0\"\n");
    for kind in ["users", "groups"] {
        std::fs::create_dir_all(dir.join("policies").join(kind)).unwrap();
    }
    for (name, extra) in groups {
        let home = dir.join(name);
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join("app.wsgi"), app).unwrap();
        for line in extra.lines() {
            for (key, kind) in [("user = ", "users"), ("group = ", "groups")] {
                if let Some(value) = line.strip_prefix(key) {
                    std::fs::write(dir.join("policies").join(kind).join(format!("{}.toml", value.trim_matches('"'))), "").unwrap();
                }
            }
        }
        text.push_str(&format!("\n[[group]]\nname = \"{name}\"\ninstances = 1\n{extra}\n"));
        text.push_str(&format!("\n[[app]]\nhost = \"{name}.example\"\nscript = \"{}\"\ngroup = \"{name}\"\n", home.join("app.wsgi").display()));
    }
    let file = dir.join("wasgi.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// Each group's guests are its `user` and `group`, at home in its home, on
/// the host it names (or the server's), consistently through every API that
/// tells, from the import on: on the pinned 3.12, on our 3.13 and on a 3.13
/// snapshot (what the bridge installs is in the snapshot too).
#[test]
fn each_group_is_its_configured_user_on_its_host() {
    own_interpreter();
    let dir = TempDir::new("hostfacts");
    let config = write_config(
        dir.path(),
        FACTS_APP,
        &[
            ("alice", "user = \"alice\"\ngroup = \"staff\"\nhostname = \"web1.example.com\"\ninterpreter = \"cpython-3.12\""),
            ("bob", "user = \"bob\"\ninterpreter = \"cpython-3.13\""),
            ("carol", "user = \"carol\"\ngroup = \"staff\"\ninterpreter = \"cpython-3.13\"\nsnapshot = true"),
        ],
    );
    let server = Wasgi::serve(&config);
    let host = host_name();
    for (name, user, group, hostname) in [
        ("alice", "alice", "staff", "web1.example.com"),
        ("bob", "bob", "bob", host.as_str()),
        ("carol", "carol", "staff", host.as_str()),
    ] {
        let f = facts(&server, &format!("{name}.example"));
        let home = dir.path().join(name).display().to_string();
        assert_eq!(get(&f, "user"), user, "{name}: {f:?}");
        assert_eq!(get(&f, "group"), group, "{name}: {f:?}");
        assert_eq!(get(&f, "getuser"), user, "{name}: {f:?}");
        assert_eq!(get(&f, "at_import"), format!("{user}:{group}"), "{name}: {f:?}");
        assert_eq!(get(&f, "members"), user, "{name}: {f:?}");
        assert_eq!(get(&f, "hostname"), hostname, "{name}: {f:?}");
        assert_eq!(get(&f, "node"), hostname, "{name}: {f:?}");
        // One instance is one thread of execution.
        assert_eq!(get(&f, "cpu_count"), "1", "{name}: {f:?}");
        assert!(get(&f, "platform").starts_with("wasi-"), "{name}: {f:?}");
        assert_eq!(get(&f, "home"), home, "{name}: {f:?}");
        assert_eq!(get(&f, "expanduser"), home, "{name}: {f:?}");
        assert_eq!(get(&f, "ids"), "1000,1000,[1000]", "{name}: {f:?}");
    }
}

/// `wasgi run` has no user to name: the guest is user and group `wasgi`,
/// on the server's host name.
#[test]
fn run_is_user_wasgi_on_the_servers_host() {
    let dir = TempDir::new("hostfacts-run");
    let script = dir.path().join("app.wsgi");
    std::fs::write(&script, FACTS_APP).unwrap();
    let server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "1"]);
    let f = facts(&server, "localhost");
    assert_eq!(get(&f, "user"), "wasgi", "{f:?}");
    assert_eq!(get(&f, "group"), "wasgi", "{f:?}");
    assert_eq!(get(&f, "getuser"), "wasgi", "{f:?}");
    assert_eq!(get(&f, "hostname"), host_name(), "{f:?}");
    assert_eq!(get(&f, "home"), dir.path().display().to_string(), "{f:?}");
}

/// `wasgi check` refuses a hostname that is not one, naming the line.
#[test]
fn check_refuses_a_hostname_that_is_not_one() {
    let dir = TempDir::new("hostfacts-check");
    let config = write_config(dir.path(), FACTS_APP, &[("alice", "hostname = \"web 1\"")]);
    let (ok, out) = check(&config);
    assert!(!ok, "{out}");
    assert!(out.contains("wasgi.toml:7: group \"alice\": hostname: \"web 1\": use a host name"), "{out}");
}

/// The IANA database is there for every guest, though the app installed no
/// tzdata: UTC, Tokyo, and Paris in winter and summer.
#[test]
fn time_zones_work_without_tzdata_on_both_interpreters() {
    own_interpreter();
    let dir = TempDir::new("hostfacts-zones");
    let config = write_config(
        dir.path(),
        ZONES_APP,
        &[
            ("pinned", "interpreter = \"cpython-3.12\""),
            ("own", "interpreter = \"cpython-3.13\""),
            ("snap", "interpreter = \"cpython-3.13\"\nsnapshot = true"),
        ],
    );
    let server = Wasgi::serve(&config);
    for name in ["pinned", "own", "snap"] {
        let f = facts(&server, &format!("{name}.example"));
        assert_eq!(get(&f, "tzdata_installed"), "False", "{name}: {f:?}");
        assert_eq!(get(&f, "utc"), "UTC", "{name}: {f:?}");
        assert_eq!(get(&f, "tokyo"), "2024-01-01T21:00:00+09:00", "{name}: {f:?}");
        assert!(["1:00:00", "2:00:00"].contains(&get(&f, "paris_offset")), "{name}: {f:?}");
        assert_eq!(get(&f, "paris_summer"), "2:00:00", "{name}: {f:?}");
    }
}
