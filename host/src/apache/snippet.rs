//! `wasgi apache-config`: the Apache side of a wasgi.toml.
//!
//! A pure function from a validated [`Config`] to the text of an Apache
//! configuration file: one `<VirtualHost>` per set of host patterns that
//! share the same routes, a `ProxyPass` per mount to wasgi's listener, the
//! request headers wasgi's trusted forwarding reads, proxy timeouts a little
//! longer than each group's `request_timeout`, and `Alias` lines for static
//! directories.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
#[cfg(test)]
use std::path::Path;

use crate::config::{AppConfig, Config};
use crate::spec::listen::ListenAddr;

/// What the config does not say.
#[derive(Debug, Clone)]
pub struct Options {
    /// The address of each `<VirtualHost>`, as Apache writes it.
    pub vhost_address: String,
    /// Where Apache reaches wasgi; `None`: the config's first `[[listen]]`.
    pub backend: Option<ListenAddr>,
    /// Seconds Apache waits beyond a group's request_timeout, so the client
    /// gets wasgi's 504 (which names the limit in wasgi's log) rather than
    /// Apache's proxy error.
    pub timeout_margin: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { vhost_address: "*:80".into(), backend: None, timeout_margin: 5 }
    }
}

/// The Apache modules the generated text needs.
pub const MODULES: &str = "proxy proxy_http headers alias";

/// How Apache reaches wasgi, and what wasgi sees as the peer.
enum Backend {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Backend {
    fn new(addr: &ListenAddr) -> Result<Backend, String> {
        match addr {
            ListenAddr::Unix(path) => Ok(Backend::Unix(path.clone())),
            ListenAddr::Tcp(a) if a.port() == 0 => {
                Err(format!("the listener {addr} has no fixed port for Apache to reach: give [[listen]] a port, or pass --backend HOST:PORT"))
            }
            ListenAddr::Tcp(a) => {
                // A listener on every address is reached over loopback.
                let ip = match a.ip() {
                    IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                    ip => ip,
                };
                Ok(Backend::Tcp(SocketAddr::new(ip, a.port())))
            }
        }
    }

    /// The `ProxyPass` target for a URL path ("/" or "/blog").
    fn url(&self, path: &str) -> String {
        match self {
            Backend::Tcp(a) => format!("http://{a}{path}"),
            Backend::Unix(p) => format!("unix:{}|http://localhost{path}", p.display()),
        }
    }

    fn describe(&self) -> String {
        match self {
            Backend::Tcp(a) => format!("http://{a}"),
            Backend::Unix(p) => format!("the Unix socket {}", p.display()),
        }
    }
}

/// What wasgi.toml says about believing Apache's forwarding headers: `Ok`
/// with a short note when it trusts the peer Apache connects from, `Err`
/// with what to add when it does not.
pub fn trust(config: &Config, options: &Options) -> Result<String, String> {
    let backend = backend(config, options)?;
    let t = &config.trusted_proxies;
    match backend {
        Backend::Unix(_) if t.unix => Ok("wasgi.toml trusts peers on its Unix socket (trusted_proxies has \"unix\")".into()),
        Backend::Unix(_) => Err("trusted_proxies = [\"unix\"]".into()),
        Backend::Tcp(a) if a.ip().is_loopback() => {
            let apache = a.ip();
            if t.trusts(Some(apache)) {
                Ok(format!("wasgi.toml trusts {apache}, the address Apache connects from (trusted_proxies)"))
            } else {
                Err(format!("trusted_proxies = [\"{apache}\"]"))
            }
        }
        // Apache on another machine: only the user knows its address.
        Backend::Tcp(_) if !t.nets.is_empty() => {
            Ok("wasgi.toml has trusted_proxies: make sure they include the address Apache connects from".into())
        }
        Backend::Tcp(_) => Err("trusted_proxies = [\"ADDRESS-APACHE-CONNECTS-FROM\"]".into()),
    }
}

fn backend(config: &Config, options: &Options) -> Result<Backend, String> {
    let addr = match &options.backend {
        Some(a) => a,
        None => config.listen.first().map(|l| &l.addr).ok_or("the configuration has no [[listen]] address")?,
    };
    Backend::new(addr)
}

/// A route of one virtual host.
struct Mount<'a> {
    path: &'a str,
    app: &'a AppConfig,
    /// Its group's request_timeout.
    request_timeout: Option<std::time::Duration>,
}

/// One `<VirtualHost>`: host patterns that share the same routes.
struct VirtualHost<'a> {
    hosts: Vec<&'a str>,
    mounts: Vec<Mount<'a>>,
}

/// Groups the host patterns of the config into virtual hosts: patterns
/// with identical route tables share one. The `*` host comes first (Apache
/// uses the first virtual host for names no other claims), then hosts named
/// exactly, then wildcards, longest suffix first, as wasgi's router prefers
/// them.
fn virtual_hosts(config: &Config) -> Vec<VirtualHost<'_>> {
    let mut patterns: Vec<&str> = Vec::new();
    for app in &config.apps {
        for h in &app.hosts {
            if !patterns.contains(&h.as_str()) {
                patterns.push(h);
            }
        }
    }
    let mut vhosts: Vec<VirtualHost<'_>> = Vec::new();
    for pattern in patterns {
        let mut mounts: Vec<Mount<'_>> = config
            .apps
            .iter()
            .filter(|a| a.hosts.iter().any(|h| h == pattern))
            .map(|app| Mount {
                path: &app.mount,
                app,
                request_timeout: config.groups.iter().find(|g| g.name == app.group).and_then(|g| g.limits.request_timeout),
            })
            .collect();
        // Apache takes the first ProxyPass that matches: longest first.
        mounts.sort_by(|a, b| b.path.len().cmp(&a.path.len()).then(a.path.cmp(b.path)));
        let same = |v: &VirtualHost<'_>| {
            v.mounts.len() == mounts.len() && v.mounts.iter().zip(&mounts).all(|(a, b)| a.path == b.path && std::ptr::eq(a.app, b.app))
        };
        match vhosts.iter_mut().find(|v| same(v)) {
            Some(v) => v.hosts.push(pattern),
            None => vhosts.push(VirtualHost { hosts: vec![pattern], mounts }),
        }
    }
    let rank = |v: &VirtualHost<'_>| -> (u8, usize) {
        if v.hosts.contains(&"*") {
            (0, 0)
        } else if v.hosts.iter().any(|h| !h.starts_with("*.")) {
            (1, 0)
        } else {
            (2, usize::MAX - v.hosts.iter().map(|h| h.len()).max().unwrap_or(0))
        }
    };
    vhosts.sort_by_key(rank);
    vhosts
}

/// Quotes an Apache argument when it needs it.
fn arg(s: &str) -> String {
    if !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '#' || c == '\\') {
        s.to_owned()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// The Apache configuration for `config`.
pub fn generate(config: &Config, options: &Options) -> Result<String, String> {
    let backend = backend(config, options)?;
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "# The Apache side of wasgi, generated by `wasgi apache-config` from {}.", config.file.display());
    let _ = writeln!(w, "#");
    let _ = writeln!(w, "# Needs mod_proxy, mod_proxy_http, mod_headers (and mod_alias for Alias lines):");
    let _ = writeln!(w, "#     a2enmod {MODULES}        (Debian, Ubuntu; elsewhere, LoadModule lines)");
    let _ = writeln!(w, "# Apache forwards each app's mount to wasgi at {}.", backend.describe());
    if let Backend::Unix(_) = backend {
        let _ = writeln!(w, "# Apache's user must be able to connect to it: see `mode` in [[listen]].");
    }
    let _ = writeln!(w, "#");
    match trust(config, options) {
        Ok(note) => {
            let _ = writeln!(w, "# Forwarding: {note},");
            let _ = writeln!(w, "# so wasgi takes the client's address, scheme and host from the X-Forwarded-* headers below.");
        }
        Err(add) => {
            let _ = writeln!(w, "# !!! wasgi.toml has no trusted_proxies entry for Apache. Add, at its top level:");
            let _ = writeln!(w, "# !!!     {add}");
            let _ = writeln!(w, "# !!! Until then wasgi ignores X-Forwarded-*: every request seems to come from");
            let _ = writeln!(w, "# !!! Apache's address, over plain http, and allow/deny lists see Apache, not the client.");
        }
    }

    for vhost in virtual_hosts(config) {
        let _ = writeln!(w);
        write_vhost(w, &vhost, &backend, options)?;
    }
    Ok(out)
}

fn write_vhost(w: &mut String, vhost: &VirtualHost<'_>, backend: &Backend, options: &Options) -> Result<(), String> {
    let named: Vec<&str> = vhost.hosts.iter().copied().filter(|h| *h != "*").collect();
    let _ = writeln!(w, "<VirtualHost {}>", options.vhost_address);
    if vhost.hosts.contains(&"*") {
        let _ = writeln!(w, "    # Every host name no other VirtualHost claims: keep this VirtualHost first,");
        let _ = writeln!(w, "    # as Apache's default for its address.");
    }
    // ServerName cannot be a wildcard: the first plain name, else the
    // wildcard's domain (a ServerAlias carries the wildcard itself).
    let server_name = named.iter().find(|h| !h.starts_with("*.")).copied();
    match server_name {
        Some(name) => {
            let _ = writeln!(w, "    ServerName {name}");
        }
        None => {
            if let Some(first) = named.first() {
                let _ = writeln!(w, "    ServerName {}", first.trim_start_matches("*."));
            }
        }
    }
    let aliases: Vec<&str> = named.iter().copied().filter(|h| Some(*h) != server_name).collect();
    if !aliases.is_empty() {
        let _ = writeln!(w, "    ServerAlias {}", aliases.join(" "));
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "    ProxyPreserveHost On");
    let _ = writeln!(w, "    # mod_proxy_http adds X-Forwarded-For, -Host and -Server; wasgi also reads these:");
    let _ = writeln!(w, "    RequestHeader set X-Forwarded-Proto expr=%{{REQUEST_SCHEME}}");
    let _ = writeln!(w, "    RequestHeader set X-Forwarded-Port expr=%{{SERVER_PORT}}");
    let _ = writeln!(w, "    # Apache writes no RFC 7239 Forwarded header, and wasgi prefers it: drop a client's.");
    let _ = writeln!(w, "    RequestHeader unset Forwarded");

    // Static directories of every app of this host, each URL path once.
    let mut statics: BTreeMap<&str, (&PathBuf, &AppConfig)> = BTreeMap::new();
    for m in &vhost.mounts {
        for (url, dir) in &m.app.static_dirs {
            match statics.get(url.as_str()) {
                Some((other, app)) if *other != dir => {
                    return Err(format!(
                        "{}: host {}: static {url} is {} for the app on line {} and {} for the app on line {}",
                        m.app.script.display(),
                        vhost.hosts.join(", "),
                        other.display(),
                        app.line,
                        dir.display(),
                        m.app.line
                    ))
                }
                _ => {
                    statics.insert(url, (dir, m.app));
                }
            }
        }
    }
    if !statics.is_empty() {
        let _ = writeln!(w);
        let _ = writeln!(w, "    # Static files, served by Apache itself ([[app]] static in wasgi.toml).");
        // Longest first, so a nested path is excluded before its parent.
        let mut urls: Vec<&&str> = statics.keys().collect();
        urls.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        for url in &urls {
            let _ = writeln!(w, "    ProxyPass {url} !");
        }
        for url in urls {
            let dir = statics[*url].0.display().to_string();
            let _ = writeln!(w, "    Alias {url} {}", arg(&dir));
            // A Location, so a file (robots.txt) works as well as a directory.
            let _ = writeln!(w, "    <Location {url}>");
            let _ = writeln!(w, "        Require all granted");
            let _ = writeln!(w, "    </Location>");
        }
    }

    for m in &vhost.mounts {
        let path = if m.path.is_empty() { "/" } else { m.path };
        let _ = writeln!(w);
        let _ = writeln!(w, "    # {} (group {:?})", m.app.script.display(), m.app.group);
        if !m.app.access.is_open() {
            let _ = writeln!(w, "    # wasgi applies this app's allow/deny to the client's address Apache forwards.");
        }
        let target = backend.url(path);
        let timeout = m.request_timeout.map(|t| t.as_secs() + options.timeout_margin);
        match timeout {
            Some(t) => {
                let _ = writeln!(w, "    ProxyPass {path} {} timeout={t}", arg(&target));
            }
            None => {
                let _ = writeln!(w, "    # request_timeout is off: Apache's own Timeout (60 s by default) bounds the wait.");
                let _ = writeln!(w, "    ProxyPass {path} {}", arg(&target));
            }
        }
        let _ = writeln!(w, "    ProxyPassReverse {path} {}", arg(&target));
    }
    let _ = writeln!(w, "</VirtualHost>");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::from_text(Path::new("/etc/wasgi/wasgi.toml"), text).unwrap()
    }

    fn generate_default(text: &str) -> String {
        generate(&config(text), &Options::default()).unwrap()
    }

    const TENANTS: &str = r#"
trusted_proxies = ["127.0.0.1"]

[[listen]]
address = "0.0.0.0:8000"

[[group]]
name = "shop"
request_timeout = 30

[[group]]
name = "slow"
request_timeout = 0

[[app]]
host = ["shop.example", "www.shop.example"]
script = "/srv/shop/shop.wsgi"
group = "shop"
static = { "/static" = "/srv/shop/static", "/static/big" = "/srv/big files" }

[[app]]
host = ["shop.example", "www.shop.example"]
mount = "/reports/"
script = "/srv/shop/reports.wsgi"
group = "slow"

[[app]]
host = "*.blog.example"
script = "/srv/blog/blog.wsgi"
group = "shop"

[[app]]
host = "*"
mount = "/status"
script = "/srv/status/status.wsgi"
group = "shop"
"#;

    #[test]
    fn virtual_hosts_mounts_timeouts_and_statics() {
        let text = generate_default(TENANTS);
        let expected_shop = r#"<VirtualHost *:80>
    ServerName shop.example
    ServerAlias www.shop.example

    ProxyPreserveHost On
    # mod_proxy_http adds X-Forwarded-For, -Host and -Server; wasgi also reads these:
    RequestHeader set X-Forwarded-Proto expr=%{REQUEST_SCHEME}
    RequestHeader set X-Forwarded-Port expr=%{SERVER_PORT}
    # Apache writes no RFC 7239 Forwarded header, and wasgi prefers it: drop a client's.
    RequestHeader unset Forwarded

    # Static files, served by Apache itself ([[app]] static in wasgi.toml).
    ProxyPass /static/big !
    ProxyPass /static !
    Alias /static/big "/srv/big files"
    <Location /static/big>
        Require all granted
    </Location>
    Alias /static /srv/shop/static
    <Location /static>
        Require all granted
    </Location>

    # /srv/shop/reports.wsgi (group "slow")
    # request_timeout is off: Apache's own Timeout (60 s by default) bounds the wait.
    ProxyPass /reports http://127.0.0.1:8000/reports
    ProxyPassReverse /reports http://127.0.0.1:8000/reports

    # /srv/shop/shop.wsgi (group "shop")
    ProxyPass / http://127.0.0.1:8000/ timeout=35
    ProxyPassReverse / http://127.0.0.1:8000/
</VirtualHost>
"#;
        assert!(text.contains(expected_shop), "{text}");
        // The catch-all first, then exact names, then wildcards.
        let order: Vec<usize> = ["# Every host name no other VirtualHost claims", "ServerName shop.example", "ServerName blog.example"]
            .iter()
            .map(|needle| text.find(needle).unwrap_or_else(|| panic!("{needle} missing from\n{text}")))
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(text.contains("    ServerName blog.example\n    ServerAlias *.blog.example\n"), "{text}");
        assert!(text.contains("    ProxyPass /status http://127.0.0.1:8000/status timeout=35\n"), "{text}");
        assert!(text.contains("wasgi.toml trusts 127.0.0.1, the address Apache connects from"), "{text}");
        assert!(!text.contains("!!!"), "{text}");
        assert_eq!(text.matches("<VirtualHost *:80>").count(), 3, "{text}");
    }

    #[test]
    fn host_sets_that_overlap_get_their_own_virtual_hosts() {
        let text = generate_default(
            "[[group]]\nname = \"g\"\n\n[[app]]\nhost = [\"a.example\", \"b.example\"]\nscript = \"/srv/a.wsgi\"\ngroup = \"g\"\n\n\
             [[app]]\nhost = \"a.example\"\nmount = \"/admin\"\nscript = \"/srv/admin.wsgi\"\ngroup = \"g\"\n",
        );
        let a = text.split("<VirtualHost").find(|v| v.contains("ServerName a.example")).unwrap();
        let b = text.split("<VirtualHost").find(|v| v.contains("ServerName b.example")).unwrap();
        assert!(a.contains("ProxyPass /admin ") && a.contains("ProxyPass / "), "{text}");
        assert!(!b.contains("ProxyPass /admin ") && b.contains("ProxyPass / "), "{text}");
    }

    #[test]
    fn unix_sockets_backends_and_missing_trust() {
        let text = "[[listen]]\naddress = \"unix:/run/wasgi/wasgi.sock\"\n\n[[group]]\nname = \"g\"\n\n[[app]]\nhost = \"a.example\"\nmount = \"/app\"\nscript = \"/srv/a.wsgi\"\ngroup = \"g\"\n";
        let out = generate_default(text);
        assert!(out.contains("    ProxyPass /app unix:/run/wasgi/wasgi.sock|http://localhost/app timeout=65\n"), "{out}");
        assert!(out.contains("# Apache's user must be able to connect to it: see `mode` in [[listen]].\n"), "{out}");
        assert!(!out.contains("wasgi applies this app's allow/deny"), "{out}");
        let limited = generate_default(&text.replace("group = \"g\"\n", "group = \"g\"\nallow = [\"10.0.0.0/8\"]\n"));
        assert!(limited.contains("    # wasgi applies this app's allow/deny to the client's address Apache forwards.\n"), "{limited}");
        assert!(out.contains("# !!!     trusted_proxies = [\"unix\"]\n"), "{out}");
        assert_eq!(trust(&config(text), &Options::default()), Err("trusted_proxies = [\"unix\"]".into()));
        let trusted = format!("trusted_proxies = [\"unix\"]\n{text}");
        assert!(generate_default(&trusted).contains("# Forwarding: wasgi.toml trusts peers on its Unix socket"));

        let options = Options { backend: Some("[::1]:9000".parse().unwrap()), vhost_address: "192.0.2.1:443".into(), ..Default::default() };
        let out = generate(&config(text), &options).unwrap();
        assert!(out.contains("<VirtualHost 192.0.2.1:443>"), "{out}");
        assert!(out.contains("ProxyPass /app http://[::1]:9000/app timeout=65"), "{out}");
        assert!(out.contains("# !!!     trusted_proxies = [\"::1\"]"), "{out}");

        let options = Options { backend: Some("127.0.0.1:0".parse().unwrap()), ..Default::default() };
        let e = generate(&config(text), &options).unwrap_err();
        assert!(e.contains("has no fixed port for Apache to reach"), "{e}");
    }

    #[test]
    fn conflicting_static_directories_are_refused() {
        let text = "[[group]]\nname = \"g\"\n\n[[app]]\nhost = \"a.example\"\nscript = \"/srv/a.wsgi\"\ngroup = \"g\"\nstatic = { \"/s\" = \"/srv/one\" }\n\n\
                    [[app]]\nhost = \"a.example\"\nmount = \"/x\"\nscript = \"/srv/x.wsgi\"\ngroup = \"g\"\nstatic = { \"/s\" = \"/srv/two\" }\n";
        let e = generate(&config(text), &Options::default()).unwrap_err();
        assert!(e.contains("static /s is /srv/"), "{e}");
    }
}
