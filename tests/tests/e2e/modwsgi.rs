//! The same environ as mod_wsgi: one probe app (tests/apps/environ_probe.wsgi)
//! served by Apache + mod_wsgi in daemon mode and by Apache → wasgi
//! (mod_proxy_http, `ProxyPreserveHost On`, wasgi trusting 127.0.0.1), both
//! with a mount at /sub. Every request goes to both; the two environs are
//! compared key by key (keys, values, and the types of the non-str values)
//! and so are the request bodies the app read.
//!
//! A difference passes only if docs/mod_wsgi-differences.md lists it, with
//! its reason, in its ```differences block; an entry there that no request
//! shows is stale and fails the test too, so the document and wasgi cannot
//! drift apart.

use std::cell::Cell;
use std::collections::BTreeMap;

use serde_json::Value;
use wasgi_tests::apache::{make_traversable, Apache};
use wasgi_tests::{apps, http, root, TempDir, Wasgi};

const DOC: &str = "docs/mod_wsgi-differences.md";

/// One line of the document's ```differences block:
/// `KEY: reason` or `KEY (request, request): reason`; a KEY ending in `*`
/// is a prefix.
struct Entry {
    line: usize,
    key: String,
    requests: Option<Vec<String>>,
    used: Cell<bool>,
}

impl Entry {
    fn covers(&self, request: &str, key: &str) -> bool {
        let key_matches = match self.key.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => key == self.key,
        };
        key_matches && self.requests.as_ref().is_none_or(|r| r.iter().any(|n| n == request))
    }

    fn label(&self) -> String {
        match &self.requests {
            Some(r) => format!("{} ({})", self.key, r.join(", ")),
            None => self.key.clone(),
        }
    }
}

fn read_entries() -> Vec<Entry> {
    let text = std::fs::read_to_string(root().join(DOC)).unwrap_or_else(|e| panic!("{DOC}: {e}"));
    let mut entries = Vec::new();
    let mut inside = false;
    let mut seen_block = false;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let trimmed = line.trim();
        if !inside {
            if trimmed == "```differences" {
                assert!(!seen_block, "{DOC}:{n}: a second ```differences block");
                inside = true;
                seen_block = true;
            }
            continue;
        }
        if trimmed == "```" {
            inside = false;
            continue;
        }
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (head, reason) = trimmed.split_once(": ").unwrap_or_else(|| panic!("{DOC}:{n}: expected `KEY: reason` or `KEY (request, ...): reason`, got {trimmed:?}"));
        assert!(reason.trim().len() >= 10, "{DOC}:{n}: {head}: give the reason, not just a word");
        let (key, requests) = match head.split_once(" (") {
            Some((key, rest)) => {
                let names = rest.strip_suffix(')').unwrap_or_else(|| panic!("{DOC}:{n}: unclosed request list in {head:?}"));
                (key, Some(names.split(',').map(|s| s.trim().to_owned()).collect::<Vec<_>>()))
            }
            None => (head, None),
        };
        assert!(!key.contains(' ') && !key.is_empty(), "{DOC}:{n}: {key:?} is not an environ key");
        entries.push(Entry { line: n, key: key.to_owned(), requests, used: Cell::new(false) });
    }
    assert!(seen_block && !inside, "{DOC} needs one closed ```differences block");
    entries
}

/// A request both servers get, byte for byte: `\n` in the head becomes CRLF.
struct Probe {
    name: &'static str,
    raw: Vec<u8>,
}

fn probe(name: &'static str, head: &[u8], body: &[u8]) -> Probe {
    let mut raw = Vec::new();
    for &b in head {
        if b == b'\n' {
            raw.extend_from_slice(b"\r\n");
        } else {
            raw.push(b);
        }
    }
    raw.extend_from_slice(body);
    Probe { name, raw }
}

fn probes() -> Vec<Probe> {
    let binary: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
    let binary_head = format!(
        "POST /sub/upload HTTP/1.1\nHost: app.example\nContent-Type: application/octet-stream\nContent-Length: {}\n\n",
        binary.len()
    );
    vec![
        probe("get", b"GET /probe HTTP/1.1\nHost: app.example\nUser-Agent: probe/1.0\nAccept: */*\n\n", b""),
        probe("mount-exact", b"GET /sub HTTP/1.1\nHost: app.example\n\n", b""),
        probe("mount-slash", b"GET /sub/ HTTP/1.1\nHost: app.example\n\n", b""),
        probe("mount-path-query", b"GET /sub/a/b?x=1&y=2&x=3 HTTP/1.1\nHost: app.example\n\n", b""),
        probe("mount-prefix-only", b"GET /subway/x HTTP/1.1\nHost: app.example\n\n", b""),
        probe("encoded-slash", b"GET /sub/a%2Fb/c%20d?path=%2Fa%2Fb HTTP/1.1\nHost: app.example\n\n", b""),
        probe("unicode-encoded", b"GET /sub/caf%C3%A9/%e2%82%ac?q=caf%C3%A9&r=%E2%82%AC HTTP/1.1\nHost: app.example\n\n", b""),
        probe("unicode-raw", b"GET /sub/caf\xc3\xa9/\xe2\x82\xac?q=caf\xc3\xa9 HTTP/1.1\nHost: app.example\n\n", b""),
        probe("dot-segments", b"GET /sub/a/./b/../c//d/%2e%2E/e HTTP/1.1\nHost: app.example\n\n", b""),
        probe("query-odd", b"GET /q?a=1&a=2&empty=&flag&sp=a+b%20c&amp=%26&eq=x=y&pct=%zz&&;x HTTP/1.1\nHost: app.example\n\n", b""),
        probe(
            "post-form",
            b"POST /sub/form?x=1 HTTP/1.1\nHost: app.example\nContent-Type: application/x-www-form-urlencoded; charset=utf-8\nContent-Length: 23\n\n",
            b"name=caf%C3%A9&empty=&x",
        ),
        probe("post-binary", binary_head.as_bytes(), &binary),
        probe(
            "post-chunked",
            b"POST /sub/chunked HTTP/1.1\nHost: app.example\nContent-Type: text/plain\nTransfer-Encoding: chunked\n\n",
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        ),
        probe("post-empty", b"POST /sub/empty HTTP/1.1\nHost: app.example\nContent-Length: 0\n\n", b""),
        probe(
            "repeated-headers",
            b"GET /sub/headers HTTP/1.1\nHost: app.example\nX-Multi: a\nX-Multi: b, c\nCookie: a=1\nCookie: b=2\n\
              Accept: text/html\nAccept: application/json\nX-Empty:\nX_Under: dropped\nX.Dotted: dropped\n\
              Proxy: http://evil.example:8080\n\n",
            b"",
        ),
        probe("latin1-header", b"GET /sub/latin1 HTTP/1.1\nHost: app.example\nX-Latin: caf\xe9\n\n", b""),
        probe("authorization", b"GET /sub/auth HTTP/1.1\nHost: app.example\nAuthorization: Basic dXNlcjpwYXNz\n\n", b""),
        probe("authorization-passed", b"GET /pass/auth HTTP/1.1\nHost: app.example\nAuthorization: Bearer abc.def\n\n", b""),
        probe("proxy-authorization", b"GET /sub/auth HTTP/1.1\nHost: app.example\nProxy-Authorization: Basic dXNlcjpwYXNz\n\n", b""),
        probe("https-forwarded", b"GET /sub/secure?x=1 HTTP/1.1\nHost: app.example\nX-Forwarded-Proto: https\n\n", b""),
        probe(
            "https-forwarded-port",
            b"GET /sub/secure HTTP/1.1\nHost: app.example\nX-Forwarded-Proto: https\nX-Forwarded-Port: 443\n\n",
            b"",
        ),
        probe("head", b"HEAD /sub/head?x=1 HTTP/1.1\nHost: app.example\n\n", b""),
        probe("host-with-port", b"GET /sub/p HTTP/1.1\nHost: App.Example:8080\n\n", b""),
        probe("host-ipv6", b"GET /sub/p HTTP/1.1\nHost: [::1]:8443\n\n", b""),
        probe("host-trailing-dot", b"GET /sub/p HTTP/1.1\nHost: app.example.\n\n", b""),
        probe("host-ip", b"GET /sub/p HTTP/1.1\nHost: 127.0.0.1\n\n", b""),
        probe("http10-no-host", b"GET /sub/old HTTP/1.0\n\n", b""),
    ]
}

/// The probe's report from a response: its X-Probe-N headers (JSON in
/// pieces), which a HEAD response carries too.
fn report(server: &str, probe: &Probe, response: &http::Response) -> Value {
    assert_eq!(response.status, 200, "{server}: {}: status {} {}", probe.name, response.status, response.text());
    let mut json = String::new();
    for i in 0.. {
        match response.header(&format!("x-probe-{i}")) {
            Some(piece) => json.push_str(piece),
            None => break,
        }
    }
    assert!(!json.is_empty(), "{server}: {}: no X-Probe-0 header: {response:?}", probe.name);
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{server}: {}: {e}: {json}", probe.name))
}

/// The probe script in a directory Apache's user (www-data, when the tests
/// run as root) can read, shared by both setups so SCRIPT_FILENAME agrees.
fn app_dir() -> (TempDir, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("modwsgi-app");
    make_traversable(dir.path());
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = dir.path().join("probe.wsgi");
    std::fs::copy(apps().join("environ_probe.wsgi"), &script).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    (dir, script)
}

/// mod_wsgi in daemon mode with its defaults (one process, 15 threads),
/// the probe at /, at /sub and at /pass (which sees the Authorization
/// header). The TLS-terminating front proxy of the
/// https-forwarded probes is the test client at 127.0.0.1, which mod_wsgi
/// trusts the way its documentation says (WSGITrustedProxies /
/// WSGITrustedProxyHeaders).
fn modwsgi_site(dir: &std::path::Path, script: &std::path::Path) -> String {
    format!(
        "<VirtualHost 127.0.0.1:*>\n\
         ServerName app.example\n\
         AllowEncodedSlashes On\n\
         WSGIDaemonProcess probe\n\
         WSGIProcessGroup probe\n\
         WSGIApplicationGroup %{{GLOBAL}}\n\
         WSGIChunkedRequest On\n\
         WSGITrustedProxies 127.0.0.1\n\
         WSGITrustedProxyHeaders X-Forwarded-Proto X-Forwarded-Port\n\
         WSGIScriptAlias /sub {script}\n\
         WSGIScriptAlias /pass {script}\n\
         WSGIScriptAlias / {script}\n\
         <Location /pass>\n\
         WSGIPassAuthorization On\n\
         </Location>\n\
         <Directory {dir}>\n\
         Require all granted\n\
         </Directory>\n\
         </VirtualHost>\n",
        script = script.display(),
        dir = dir.display(),
    )
}

/// Apache in front of wasgi: each WSGIScriptAlias becomes a ProxyPass to
/// the same path on wasgi, where an app is mounted at that path.
fn proxy_site(wasgi: &str) -> String {
    format!(
        "<VirtualHost 127.0.0.1:*>\n\
         ServerName app.example\n\
         AllowEncodedSlashes On\n\
         ProxyPreserveHost On\n\
         ProxyPass /sub http://{wasgi}/sub\n\
         ProxyPass /pass http://{wasgi}/pass\n\
         ProxyPass / http://{wasgi}/\n\
         </VirtualHost>\n"
    )
}

fn wasgi_config(script: &std::path::Path) -> String {
    format!(
        "trusted_proxies = [\"127.0.0.1\"]\n\n\
         [[listen]]\naddress = \"127.0.0.1:0\"\n\n\
         [[group]]\nname = \"probe\"\ninstances = 1\n\n\
         [[app]]\nhost = \"*\"\nmount = \"/\"\nscript = \"{script}\"\ngroup = \"probe\"\n\n\
         [[app]]\nhost = \"*\"\nmount = \"/sub\"\nscript = \"{script}\"\ngroup = \"probe\"\n\n\
         [[app]]\nhost = \"*\"\nmount = \"/pass\"\nscript = \"{script}\"\ngroup = \"probe\"\npass_authorization = true\n",
        script = script.display()
    )
}

fn show(value: Option<&Value>) -> String {
    match value {
        None => "(absent)".to_owned(),
        Some(Value::String(s)) => format!("{s:?}"),
        Some(v) => v.to_string(),
    }
}

#[test]
fn the_environ_is_mod_wsgis() {
    let entries = read_entries();
    let probes = probes();
    for entry in &entries {
        for name in entry.requests.iter().flatten() {
            assert!(probes.iter().any(|p| p.name == name), "{DOC}:{}: no request is named {name:?}", entry.line);
        }
    }

    let (dir, script) = app_dir();
    let config = dir.path().join("wasgi.toml");
    std::fs::write(&config, wasgi_config(&script)).unwrap();
    let wasgi = Wasgi::serve(&config);
    let modwsgi = Apache::new("modwsgi");
    let modwsgi = modwsgi.start(&modwsgi_site(dir.path(), &script));
    let proxy = Apache::new("modwsgi-proxy").start(&proxy_site(&wasgi.addr));

    let mut unlisted = Vec::new();
    let mut compared = 0;
    for probe in &probes {
        let theirs = report("mod_wsgi", probe, &modwsgi.request(&probe.raw));
        let ours = report("wasgi", probe, &proxy.request(&probe.raw));
        assert_eq!(
            theirs["body"], ours["body"],
            "{}: the app read different bodies (mod_wsgi, then wasgi)\nwasgi's log:\n{}",
            probe.name,
            wasgi.log.text()
        );
        let (theirs, ours) = (theirs["environ"].as_object().unwrap(), ours["environ"].as_object().unwrap());
        let keys: BTreeMap<&String, ()> = theirs.keys().chain(ours.keys()).map(|k| (k, ())).collect();
        for key in keys.keys() {
            compared += 1;
            let (a, b) = (theirs.get(*key), ours.get(*key));
            if a == b {
                continue;
            }
            let covering: Vec<&Entry> = entries.iter().filter(|e| e.covers(probe.name, key)).collect();
            if covering.is_empty() {
                unlisted.push(format!("{}: {key}: mod_wsgi {} / wasgi {}", probe.name, show(a), show(b)));
            }
            for entry in covering {
                entry.used.set(true);
            }
        }
    }
    assert!(compared > 500, "too few keys compared ({compared})");
    let stale: Vec<String> = entries
        .iter()
        .filter(|e| !e.used.get())
        .map(|e| format!("{DOC}:{}: {} never differs: remove it (or fix the request names)", e.line, e.label()))
        .collect();
    let mut problems = Vec::new();
    if !unlisted.is_empty() {
        problems.push(format!(
            "differences from mod_wsgi that {DOC} does not list (fix wasgi, or list them with the reason):\n  {}",
            unlisted.join("\n  ")
        ));
    }
    if !stale.is_empty() {
        problems.push(format!("stale entries:\n  {}", stale.join("\n  ")));
    }
    assert!(problems.is_empty(), "{}\n\nmod_wsgi's error log:\n{}", problems.join("\n\n"), modwsgi.error_log());
    drop(dir);
}
