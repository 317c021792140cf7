//! `wasgi import-apache`: an Apache configuration that uses mod_wsgi, turned
//! into a wasgi.toml, the capability policies its groups name, the Apache
//! side for the new setup (from [`super::snippet`]) and a list of whatever
//! could not be mapped, each with its file, line and reason.
//!
//! | Apache / mod_wsgi | wasgi |
//! |---|---|
//! | `WSGIDaemonProcess` | `[[group]]` (processes × threads → `instances`, limits, paths) |
//! | `WSGIScriptAlias` in a `<VirtualHost>` | `[[app]]` with the host's ServerName/ServerAlias |
//! | `WSGIProcessGroup` (option, Location, Directory, VirtualHost, server) | `[[app]] group`; none or `%{GLOBAL}`: an "embedded" group |
//! | `WSGIScriptReloading` (default On) | `reload_on_change` |
//! | `WSGIRestrictStdout` | `restrict_stdout` |
//! | `WSGIPassAuthorization`, `pass-authorization=` | `[[app]] pass_authorization` |
//! | `Order`/`Allow`/`Deny`, `Require` | `[[app]] allow` / `deny` |
//! | `Alias` in the virtual host | `[[app]] static` |
//! | `user=` / `group=` | `policies/users/*.toml`, `policies/groups/*.toml` |

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use ipnet::IpNet;

use super::conf::{flatten, Directive, Reader};
use super::snippet;
use crate::config::{normalise_host, normalise_mount, AppConfig, Config, GroupConfig};
use crate::spec::limits::{HttpLimits, Limits};
use crate::spec::listen::{Listen, ListenAddr};
use crate::spec::proxies::TrustedProxies;

/// What the Apache configuration does not say.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where wasgi will listen (and Apache forward to).
    pub listen: ListenAddr,
    /// For relative `Include` paths before any `ServerRoot` directive.
    pub server_root: Option<PathBuf>,
    /// The output directory (named in the generated files).
    pub out: PathBuf,
    /// Passed to the snippet generator.
    pub vhost_address: String,
}

/// Something in the Apache configuration, where it is, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// `file:line`
    pub at: String,
    /// The directive (or its option) as written.
    pub what: String,
    pub why: String,
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.at, self.what, self.why)
    }
}

/// The result of an import: files to write and what to tell the user.
#[derive(Debug)]
pub struct Imported {
    /// Path relative to the output directory, and contents.
    pub files: Vec<(PathBuf, String)>,
    /// Settings with no wasgi equivalent.
    pub unmapped: Vec<Item>,
    /// Settings mapped with a difference worth knowing.
    pub notes: Vec<Item>,
    /// Other directives of the imported virtual hosts, which the new Apache
    /// snippet does not repeat.
    pub not_repeated: Vec<Item>,
    /// Paths the configuration names that do not exist on this machine.
    pub missing: Vec<Item>,
    /// Directories the WSGI scripts put on `sys.path` themselves, granted
    /// read-only (the script's file and line, and where the grant went).
    pub granted: Vec<Item>,
    pub groups: usize,
    pub apps: usize,
}

// ---------------------------------------------------------------- model

/// A value and the directive it came from.
#[derive(Clone)]
struct Val<'a> {
    value: String,
    from: &'a Directive,
}

/// mod_wsgi settings of one scope: the server, a virtual host, a
/// `<Directory>` or a `<Location>`.
#[derive(Default, Clone)]
struct Settings<'a> {
    process_group: Option<Val<'a>>,
    application_group: Option<Val<'a>>,
    callable: Option<Val<'a>>,
    reloading: Option<Val<'a>>,
    pass_authorization: Option<Val<'a>>,
    /// Order/Allow/Deny/Require/Satisfy and Require* sections.
    access: Vec<&'a Directive>,
}

impl<'a> Settings<'a> {
    fn overlay(&mut self, other: &Settings<'a>) {
        for (mine, theirs) in [
            (&mut self.process_group, &other.process_group),
            (&mut self.application_group, &other.application_group),
            (&mut self.callable, &other.callable),
            (&mut self.reloading, &other.reloading),
            (&mut self.pass_authorization, &other.pass_authorization),
        ] {
            if theirs.is_some() {
                *mine = theirs.clone();
            }
        }
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Kind {
    Directory,
    Location,
}

struct Container<'a> {
    kind: Kind,
    /// Normalised: `/srv/app` (Directory), `/admin` (Location).
    path: String,
    settings: Settings<'a>,
    vhost: Option<usize>,
}

struct VHost<'a> {
    directive: &'a Directive,
    hosts: Vec<String>,
    settings: Settings<'a>,
    /// `Alias URL DIR`: (url, dir, directive).
    aliases: Vec<(String, String, &'a Directive)>,
}

struct ScriptAlias<'a> {
    mount: String,
    script: String,
    options: Vec<(String, String)>,
    directive: &'a Directive,
    vhost: Option<usize>,
}

/// A `[[group]]` as it will be written.
struct Group {
    name: String,
    /// The WSGIDaemonProcess line, or why this group exists.
    origin: String,
    /// `key = value  # comment` lines, in order.
    lines: Vec<(String, String, String)>,
    user: Option<String>,
    unix_group: Option<String>,
    /// The policy name: `user=`, else the group's own name.
    policy: String,
    python_path: Vec<String>,
    venv: Option<String>,
    /// Directories its apps' scripts put on sys.path: (path, why), granted read-only.
    script_grants: Vec<(String, String)>,
    home: Option<String>,
    /// For the in-memory Config the snippet is generated from.
    request_timeout: Option<Duration>,
    /// Per app: WSGIScriptReloading and where it was set.
    reloading: Vec<(bool, String)>,
    apps: usize,
    embedded: bool,
}

/// An `[[app]]` as it will be written.
struct App {
    origin: String,
    hosts: Vec<String>,
    mount: String,
    script: String,
    callable: Option<String>,
    group: usize,
    /// WSGIPassAuthorization On, and where it was said.
    pass_authorization: Option<String>,
    allow: Vec<String>,
    deny: Vec<String>,
    statics: Vec<(String, String)>,
    vhost: Option<usize>,
}

/// Who may reach an app: allowed = (allow is None or matches allow) and not deny.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Access {
    allow: Option<Vec<String>>,
    deny: Vec<String>,
}

impl Access {
    fn everyone() -> Access {
        Access { allow: None, deny: Vec::new() }
    }

    fn nobody() -> Access {
        Access { allow: None, deny: vec!["all".into()] }
    }

    fn is_nobody(&self) -> bool {
        self.deny.iter().any(|d| d == "all") || self.allow.as_ref().is_some_and(|a| a.is_empty())
    }

    fn normal(self) -> Access {
        if self.is_nobody() {
            Access::nobody()
        } else {
            self
        }
    }
}

// ---------------------------------------------------------------- helpers

/// `C:\dir\app.wsgi`, `C:/dir`, `\\server\share`.
fn is_windows_path(p: &str) -> bool {
    let b = p.as_bytes();
    (b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && (b[2] == b'\\' || b[2] == b'/')) || p.starts_with("\\\\")
}

/// A path for comparisons: forward slashes, no trailing slash, and lower
/// case for Windows paths (their file systems ignore case).
fn norm_path(p: &str) -> String {
    let windows = is_windows_path(p);
    let mut s = if windows { p.replace('\\', "/").to_ascii_lowercase() } else { p.to_owned() };
    while s.len() > 1 && s.ends_with('/') {
        s.pop();
    }
    s
}

/// The directory of a file path, Windows paths included, as written.
fn parent_of(p: &str) -> String {
    let cut = if is_windows_path(p) { p.rfind(['\\', '/']) } else { p.rfind('/') };
    match cut {
        Some(0) => "/".into(),
        Some(i) if is_windows_path(p) && i == 2 => p[..3].to_owned(),
        Some(i) => p[..i].to_owned(),
        None => p.to_owned(),
    }
}

fn trim_dir(p: &str) -> String {
    let mut s = p.to_owned();
    while s.len() > 1 && (s.ends_with('/') || (is_windows_path(p) && s.ends_with('\\') && s.len() > 3)) {
        s.pop();
    }
    s
}

/// Is `path` inside the directory `dir` (both normalised)?
fn within(path: &str, dir: &str) -> bool {
    dir == "/" || path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// TOML basic string.
fn q(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| q(s)).collect::<Vec<_>>().join(", "))
}

/// A name usable as a policy file name.
fn file_name(name: &str) -> String {
    let cleaned: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    let cleaned = cleaned.trim_start_matches('.').to_owned();
    if cleaned.is_empty() {
        "unnamed".into()
    } else {
        cleaned
    }
}

/// `10.1` → `10.1.0.0/16`, `192.168.1.0/255.255.255.0` → `192.168.1.0/24`,
/// addresses and CIDR blocks as they are; host names are `None`.
fn address(entry: &str) -> Option<String> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    if let Ok(net) = entry.parse::<IpNet>() {
        return Some(net.to_string());
    }
    if let Some((ip, mask)) = entry.split_once('/') {
        let ip: std::net::Ipv4Addr = ip.parse().ok()?;
        let mask: std::net::Ipv4Addr = mask.parse().ok()?;
        let bits = u32::from(mask);
        if bits.leading_ones() + bits.trailing_zeros() != 32 {
            return None;
        }
        return Some(IpNet::new(IpAddr::V4(ip), bits.leading_ones() as u8).ok()?.trunc().to_string());
    }
    crate::spec::access::apache_prefix(entry).map(|net| net.to_string())
}

fn overlaps(a: &str, b: &str) -> bool {
    let net = |s: &str| s.parse::<IpNet>().ok().or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from));
    match (net(a), net(b)) {
        (Some(a), Some(b)) => a.contains(&b) || b.contains(&a),
        _ => a == b,
    }
}

/// The numeric options of WSGIDaemonProcess that map one to one onto a
/// `[[group]]` key (all in seconds, or a count).
const SAME_NAME: &[(&str, &str)] = &[
    ("maximum-requests", "maximum_requests"),
    ("inactivity-timeout", "inactivity_timeout"),
    ("request-timeout", "request_timeout"),
    ("cpu-time-limit", "cpu_time_limit"),
    ("queue-timeout", "queue_timeout"),
    ("startup-timeout", "startup_timeout"),
];

/// WSGIDaemonProcess options with no wasgi equivalent, and why.
fn daemon_option_reason(key: &str) -> &'static str {
    match key {
        "supplementary-groups" => "a group has one user and one group policy; add what the other Unix groups could read to the user's policy",
        "umask" => "files the app creates get the umask of the wasgi process",
        "chroot" => "not needed: the sandbox shows the app only its granted directories",
        "stack-size" => "the guest's stack size is wasgi's own",
        "shutdown-timeout" | "deadlock-timeout" | "eviction-timeout" | "restart-interval" => "no wasgi equivalent",
        "connect-timeout" | "socket-timeout" | "response-socket-timeout" => {
            "concerns the socket between Apache and the daemon; wasgi's client timeouts are [http] header_read_timeout and body_read_timeout"
        }
        "header-buffer-size" | "response-buffer-size" | "receive-buffer-size" | "send-buffer-size" => "wasgi sizes its own buffers",
        "cpu-priority" => "no per-group priority: run wasgi under nice instead",
        "socket-user" | "script-user" => "wasgi has no daemon sockets or script ownership checks",
        "python-eggs" => "egg caches are not used by wasgi's interpreter",
        "server-metrics" => "no wasgi equivalent",
        "python-interpreter" | "python-path-prefix" => "no wasgi equivalent",
        _ => "not a WSGIDaemonProcess option wasgi knows",
    }
}

/// mod_wsgi directives other than the mapped ones: Ok(note) when nothing is
/// lost, Err(reason) when something is.
fn other_wsgi_directive(d: &Directive) -> Result<&'static str, &'static str> {
    let name = d.name.to_ascii_lowercase();
    match name.as_str() {
        "wsgisocketprefix" | "wsgisocketrotation" | "wsgiacceptmutex" => Ok("not needed: wasgi has no daemon sockets"),
        "wsgilazyinitialization" | "wsgiverbosedebugging" | "wsgidestroyinterpreter" => Ok("not needed under wasgi"),
        "wsgirestrictembedded" => Ok("not needed: wasgi has no embedded mode"),
        "wsgirestrictsignal" => Ok("not needed: a guest's signal handlers cannot affect the server"),
        "wsgirestrictstdin" => Ok("the app cannot read wasgi's standard input in any case"),
        "wsgichunkedrequest" => Ok("wasgi accepts chunked request bodies"),
        "wsgiimportscript" => Ok("each instance imports its app's script when it starts"),
        "wsgiaccessscript" | "wsgiauthuserscript" | "wsgiauthgroupscript" => {
            Err("Apache authentication through a Python script: wasgi does not run code for Apache; use an Apache auth provider or move the check into the app")
        }
        "wsgihandlerscript" | "wsgidispatchscript" => Err("no wasgi equivalent: each app is one script at one mount"),
        "wsgierroroverride" => Err("no wasgi equivalent (Apache's error pages for the app's errors)"),
        "wsgimapheadtoget" => Err("no wasgi equivalent: the app sees HEAD requests as they are"),
        "wsgienablesendfile" => Err("no wasgi equivalent: wsgi.file_wrapper responses are streamed"),
        "wsgipythoneggs" => Err("egg caches are not used by wasgi's interpreter"),
        "wsgitrustedproxyheaders" => Ok("wasgi believes X-Forwarded-For/-Host/-Proto/-Port from trusted proxies by default (trusted_proxy_headers); apache-wasgi.conf sets -Proto and -Port from Apache's own view, so the headers mod_wsgi read are now Apache's to vouch for"),
        _ => Err("no wasgi equivalent"),
    }
}

fn is_access(d: &Directive) -> bool {
    ["Order", "Allow", "Deny", "Require", "Satisfy", "RequireAll", "RequireAny", "RequireNone"].iter().any(|n| d.is(n))
}

// ---------------------------------------------------------------- access

/// Maps access-control directives of one section onto allow/deny lists.
fn map_access(directives: &[&Directive], unmapped: &mut Vec<Item>) -> Option<Access> {
    let modern: Vec<&Directive> = directives.iter().copied().filter(|d| d.is("Require") || d.children.is_some()).collect();
    let item = |d: &Directive, why: &str| Item { at: d.at(), what: d.text(), why: why.to_owned() };
    if !modern.is_empty() {
        for d in directives.iter().filter(|d| !d.is("Require") && d.children.is_none()) {
            unmapped.push(item(d, "Apache 2.2 access control next to 2.4 Require lines: only the Require lines are mapped"));
        }
        return require_any(&modern, unmapped);
    }
    // Apache 2.2: Order, Allow from, Deny from. Default order: deny,allow.
    let mut allow_first = false;
    let mut allows: Vec<String> = Vec::new();
    let mut denies: Vec<String> = Vec::new();
    let mut ok = true;
    for d in directives {
        if d.is("Order") {
            let order = d.args.join("").to_ascii_lowercase();
            allow_first = match order.as_str() {
                "allow,deny" | "mutual-failure" => true,
                "deny,allow" => false,
                _ => {
                    unmapped.push(item(d, "unknown Order"));
                    ok = false;
                    false
                }
            };
        } else if d.is("Allow") || d.is("Deny") {
            if !d.args.first().is_some_and(|a| a.eq_ignore_ascii_case("from")) {
                unmapped.push(item(d, "expected `from`"));
                ok = false;
                continue;
            }
            let into = if d.is("Allow") { &mut allows } else { &mut denies };
            for entry in &d.args[1..] {
                if entry.eq_ignore_ascii_case("all") {
                    into.push("all".into());
                } else if let Some(a) = address(entry) {
                    into.push(a);
                } else if entry.starts_with("env=") {
                    unmapped.push(item(d, &format!("{entry}: environment-variable access control has no wasgi equivalent")));
                    ok = false;
                } else {
                    unmapped.push(item(d, &format!("{entry}: host names are not mapped (wasgi matches addresses and CIDR blocks)")));
                    ok = false;
                }
            }
        } else if d.is("Satisfy") {
            unmapped.push(item(d, "Satisfy combines access control with authentication, which stays in Apache"));
        }
    }
    if !ok {
        return None;
    }
    let all = |v: &Vec<String>| v.iter().any(|e| e == "all");
    let access = if allow_first {
        // allowed = matches Allow and not Deny.
        if allows.is_empty() {
            Access::nobody()
        } else {
            Access { allow: if all(&allows) { None } else { Some(allows) }, deny: denies }
        }
    } else {
        // allowed = matches Allow, or does not match Deny.
        if all(&allows) || denies.is_empty() {
            Access::everyone()
        } else if all(&denies) {
            Access { allow: Some(allows), deny: Vec::new() }
        } else if allows.iter().any(|a| denies.iter().any(|d| overlaps(a, d))) {
            let d = directives.iter().find(|d| d.is("Order")).or(directives.first()).unwrap();
            unmapped.push(item(
                d,
                &format!(
                    "Order deny,allow with Allow from {} inside Deny from {}: \"deny wins\" lists cannot say this; write allow/deny by hand",
                    allows.join(" "),
                    denies.join(" ")
                ),
            ));
            return None;
        } else {
            // Allowed addresses outside the denied ones were allowed anyway.
            Access { allow: None, deny: denies }
        }
    };
    Some(access.normal())
}

/// A `Require` line: Ok((access, negated)).
fn require_line(d: &Directive, unmapped: &mut Vec<Item>) -> Option<(Access, bool)> {
    let mut args: Vec<&str> = d.args.iter().map(String::as_str).collect();
    let negated = args.first().is_some_and(|a| a.eq_ignore_ascii_case("not"));
    if negated {
        args.remove(0);
    }
    let kind = args.first().map(|a| a.to_ascii_lowercase()).unwrap_or_default();
    let item = |why: String| Item { at: d.at(), what: d.text(), why };
    let access = match (kind.as_str(), &args[1.min(args.len())..]) {
        ("all", [v]) if v.eq_ignore_ascii_case("granted") => Access::everyone(),
        ("all", [v]) if v.eq_ignore_ascii_case("denied") => Access::nobody(),
        ("local", []) => Access { allow: Some(vec!["127.0.0.0/8".into(), "::1".into()]), deny: Vec::new() },
        ("ip", entries) if !entries.is_empty() => {
            let mut nets = Vec::new();
            for e in entries {
                match address(e) {
                    Some(a) => nets.push(a),
                    None => {
                        unmapped.push(item(format!("{e} is not an address or CIDR block")));
                        return None;
                    }
                }
            }
            Access { allow: Some(nets), deny: Vec::new() }
        }
        _ => {
            unmapped.push(item(format!(
                "Require {kind}: only `all`, `ip` and `local` are mapped; authentication and other checks stay in Apache"
            )));
            return None;
        }
    };
    if negated {
        // `Require not ip X`: everyone except X.
        match access.allow {
            Some(nets) => Some((Access { allow: None, deny: nets }, true)),
            None => {
                unmapped.push(item("only `Require not ip` is mapped".into()));
                None
            }
        }
    } else {
        Some((access, false))
    }
}

fn require_item(d: &Directive, unmapped: &mut Vec<Item>) -> Option<(Access, bool)> {
    if d.is("RequireAll") {
        require_all(&d.children().iter().collect::<Vec<_>>(), unmapped).map(|a| (a, false))
    } else if d.is("RequireAny") {
        require_any(&d.children().iter().collect::<Vec<_>>(), unmapped).map(|a| (a, false))
    } else if d.is("Require") {
        require_line(d, unmapped)
    } else {
        unmapped.push(Item { at: d.at(), what: d.text(), why: "not mapped (only Require, RequireAll and RequireAny are)".into() });
        None
    }
}

/// `<RequireAny>` (and bare Require lines): a client allowed by any of them.
fn require_any(items: &[&Directive], unmapped: &mut Vec<Item>) -> Option<Access> {
    let mut result: Option<Access> = None;
    for d in items {
        let (a, negated) = require_item(d, unmapped)?;
        if negated {
            unmapped.push(Item { at: d.at(), what: d.text(), why: "`Require not` only counts inside <RequireAll>".into() });
            return None;
        }
        result = Some(match result {
            None => a,
            Some(r) if r.is_nobody() => a,
            Some(r) if a.is_nobody() => r,
            Some(r) if r == Access::everyone() || a == Access::everyone() => Access::everyone(),
            Some(r) if r.deny.is_empty() && a.deny.is_empty() => {
                let mut nets = r.allow.unwrap_or_default();
                nets.extend(a.allow.unwrap_or_default());
                Access { allow: Some(nets), deny: Vec::new() }
            }
            Some(_) => {
                unmapped.push(Item {
                    at: d.at(),
                    what: d.text(),
                    why: "this combination of denials inside <RequireAny> cannot be written as allow/deny lists".into(),
                });
                return None;
            }
        });
    }
    result.map(Access::normal)
}

/// `<RequireAll>`: a client allowed by every one of them.
fn require_all(items: &[&Directive], unmapped: &mut Vec<Item>) -> Option<Access> {
    let mut result = Access::everyone();
    for d in items {
        let (a, _) = require_item(d, unmapped)?;
        result.deny.extend(a.deny);
        result.allow = match (result.allow, a.allow) {
            (None, x) | (x, None) => x,
            (Some(x), Some(y)) if x == y => Some(x),
            (Some(_), Some(_)) => {
                unmapped.push(Item {
                    at: d.at(),
                    what: d.text(),
                    why: "two different address lists that must both match cannot be written as one allow list".into(),
                });
                return None;
            }
        };
    }
    Some(result.normal())
}

// ---------------------------------------------------------------- scanning

struct Importer<'a> {
    server: Settings<'a>,
    python_home: Option<Val<'a>>,
    python_path: Option<Val<'a>>,
    restrict_stdout: Option<Val<'a>>,
    python_optimize: Option<Val<'a>>,
    trusted: Vec<(String, &'a Directive)>,
    vhosts: Vec<VHost<'a>>,
    containers: Vec<Container<'a>>,
    aliases: Vec<ScriptAlias<'a>>,
    daemons: Vec<&'a Directive>,
    /// Directives whose meaning is carried into the result.
    consumed: HashSet<*const Directive>,
    unmapped: Vec<Item>,
    notes: Vec<Item>,
}

fn item(d: &Directive, why: impl Into<String>) -> Item {
    Item { at: d.at(), what: d.text(), why: why.into() }
}

impl<'a> Importer<'a> {
    fn consume(&mut self, d: &'a Directive) {
        self.consumed.insert(d as *const Directive);
    }

    fn scan(&mut self, list: &'a [Directive], vhost: Option<usize>) {
        for d in flatten(list) {
            if d.is("VirtualHost") && d.children.is_some() {
                if vhost.is_some() {
                    self.unmapped.push(item(d, "a VirtualHost inside a VirtualHost"));
                    continue;
                }
                self.vhosts.push(VHost { directive: d, hosts: Vec::new(), settings: Settings::default(), aliases: Vec::new() });
                let index = self.vhosts.len() - 1;
                self.scan(d.children(), Some(index));
                self.finish_vhost(index);
            } else if d.children.is_some() {
                self.container(d, vhost);
            } else if d.is("ServerName") || d.is("ServerAlias") {
                if let Some(v) = vhost {
                    self.consume(d);
                    let names: Vec<String> = if d.is("ServerName") { d.args.iter().take(1).cloned().collect() } else { d.args.clone() };
                    for name in names {
                        // `https://www.example.com:443` → www.example.com
                        let name = name.split("://").last().unwrap_or_default();
                        let name = match name.rsplit_once(':') {
                            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
                            _ => name,
                        };
                        match normalise_host(name) {
                            Some(h) if h != "*" || d.is("ServerAlias") => {
                                if !self.vhosts[v].hosts.contains(&h) {
                                    self.vhosts[v].hosts.push(h);
                                }
                            }
                            _ => self.unmapped.push(item(d, format!("{name}: wasgi matches host names, `*.domain` and `*` only"))),
                        }
                    }
                }
            } else if d.is("Alias") {
                if let Some(v) = vhost {
                    match d.args.as_slice() {
                        [url, dir] => {
                            self.consume(d);
                            self.vhosts[v].aliases.push((url.clone(), dir.clone(), d));
                        }
                        _ => self.unmapped.push(item(d, "expected Alias URL-PATH DIRECTORY")),
                    }
                }
            } else if d.name.len() > 4 && d.name[..4].eq_ignore_ascii_case("wsgi") {
                self.consume(d);
                self.wsgi(d, vhost, None);
            }
        }
    }

    fn finish_vhost(&mut self, index: usize) {
        let v = &mut self.vhosts[index];
        // No ServerName or ServerAlias: every host, as Apache's default.
        if v.hosts.is_empty() {
            v.hosts.push("*".into());
        }
    }

    /// A `<Directory>`, `<Location>` or other section.
    fn container(&mut self, d: &'a Directive, vhost: Option<usize>) {
        let kind = if d.is("Directory") {
            Some(Kind::Directory)
        } else if d.is("Location") {
            Some(Kind::Location)
        } else {
            None
        };
        let regex = d.args.first().is_some_and(|a| a == "~");
        let contents = flatten(d.children());
        let wsgi: Vec<&Directive> = contents.iter().copied().filter(|c| c.name.len() > 4 && c.name[..4].eq_ignore_ascii_case("wsgi")).collect();
        let (Some(kind), false, Some(path)) = (kind, regex, d.args.first()) else {
            for c in wsgi {
                self.unmapped.push(item(c, format!("inside {}: only <Directory PATH> and <Location PATH> sections are mapped", d.text())));
            }
            return;
        };
        let mut index = self.containers.len();
        self.containers.push(Container {
            kind,
            path: if kind == Kind::Directory { norm_path(path) } else { path.clone() },
            settings: Settings::default(),
            vhost,
        });
        for c in contents {
            if c.name.len() > 4 && c.name[..4].eq_ignore_ascii_case("wsgi") {
                self.consume(c);
                self.wsgi(c, vhost, Some(index));
            } else if is_access(c) {
                self.containers[index].settings.access.push(c);
            }
            index = self.containers.len() - 1;
        }
    }

    /// A mod_wsgi directive at the server, virtual-host or section level.
    fn wsgi(&mut self, d: &'a Directive, vhost: Option<usize>, container: Option<usize>) {
        let settings: &mut Settings<'a> = match (container, vhost) {
            (Some(c), _) => &mut self.containers[c].settings,
            (None, Some(v)) => &mut self.vhosts[v].settings,
            (None, None) => &mut self.server,
        };
        let first = || Val { value: d.args.first().cloned().unwrap_or_default(), from: d };
        let name = d.name.to_ascii_lowercase();
        match name.as_str() {
            "wsgiprocessgroup" => settings.process_group = Some(first()),
            "wsgiapplicationgroup" => settings.application_group = Some(first()),
            "wsgicallableobject" => settings.callable = Some(first()),
            "wsgiscriptreloading" => settings.reloading = Some(first()),
            "wsgipassauthorization" => settings.pass_authorization = Some(first()),
            "wsgidaemonprocess" if container.is_none() => self.daemons.push(d),
            "wsgiscriptalias" | "wsgiscriptaliasmatch" if container.is_none() => self.script_alias(d, vhost),
            "wsgipythonhome" => self.python_home = Some(first()),
            "wsgipythonpath" => self.python_path = Some(first()),
            "wsgirestrictstdout" => self.restrict_stdout = Some(first()),
            "wsgipythonoptimize" => self.python_optimize = Some(first()),
            "wsgitrustedproxies" => {
                for a in &d.args {
                    match address(a) {
                        Some(net) => self.trusted.push((net, d)),
                        None => self.unmapped.push(item(d, format!("{a} is not an address or CIDR block"))),
                    }
                }
            }
            _ => match other_wsgi_directive(d) {
                Ok(note) => self.notes.push(item(d, note)),
                Err(why) => self.unmapped.push(item(d, why)),
            },
        }
    }

    fn script_alias(&mut self, d: &'a Directive, vhost: Option<usize>) {
        let (Some(url), Some(script)) = (d.args.first(), d.args.get(1)) else {
            self.unmapped.push(item(d, "expected a URL path and a script"));
            return;
        };
        let url = if d.is("WSGIScriptAliasMatch") {
            // Only a literal prefix: ^/path, with no groups in the script.
            let literal = url.strip_prefix('^').unwrap_or(url).replace("\\.", ".");
            let plain = literal.starts_with('/') && literal.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b));
            let plain = plain && !url.replace("\\.", "").contains('.');
            if !plain || script.contains('$') {
                self.unmapped.push(item(d, "a regular expression: wasgi mounts are literal paths; add an [[app]] per mount"));
                return;
            }
            self.notes.push(item(d, format!("the pattern is a literal prefix: mounted at {literal}")));
            literal
        } else {
            url.clone()
        };
        let Some(mount) = normalise_mount(&url) else {
            self.unmapped.push(item(d, format!("{url}: not a mount wasgi accepts (an absolute URL path)")));
            return;
        };
        if script.ends_with('/') || script.ends_with('\\') || Path::new(script).is_dir() {
            self.unmapped.push(item(d, "a directory of scripts: wasgi serves one script per mount; add an [[app]] for each script"));
            return;
        }
        let mut options = Vec::new();
        for option in &d.args[2..] {
            match option.split_once('=') {
                Some((k, v)) => options.push((k.to_ascii_lowercase(), v.trim_matches(['"', '\'']).to_owned())),
                None => self.unmapped.push(item(d, format!("{option}: not an option=value"))),
            }
        }
        self.aliases.push(ScriptAlias { mount, script: script.clone(), options, directive: d, vhost });
    }
}

// ---------------------------------------------------------------- mapping

/// Reads `file` (and what it includes) and maps it.
pub fn import(file: &Path, options: &Options) -> Result<Imported> {
    let tree = Reader::new(options.server_root.clone()).read(file)?;
    map(&tree, file, options)
}

fn map(tree: &[Directive], file: &Path, options: &Options) -> Result<Imported> {
    let mut im = Importer {
        server: Settings::default(),
        python_home: None,
        python_path: None,
        restrict_stdout: None,
        python_optimize: None,
        trusted: Vec::new(),
        vhosts: Vec::new(),
        containers: Vec::new(),
        aliases: Vec::new(),
        daemons: Vec::new(),
        consumed: HashSet::new(),
        unmapped: Vec::new(),
        notes: Vec::new(),
    };
    im.scan(tree, None);
    if im.aliases.is_empty() {
        anyhow::bail!("{}: no WSGIScriptAlias found (followed every Include): nothing to import", file.display());
    }

    let mut groups: Vec<Group> = Vec::new();
    let mut graceful: Option<(i64, String)> = None;
    let mut backlog: Option<(i64, String)> = None;
    for d in im.daemons.clone() {
        let mut unmapped = Vec::new();
        let mut notes = Vec::new();
        match daemon(d, &im, &mut graceful, &mut backlog, &mut unmapped, &mut notes) {
            Some(g) if groups.iter().any(|o| o.name == g.name) => im.unmapped.push(item(d, format!("a second WSGIDaemonProcess named {:?}", g.name))),
            Some(g) => groups.push(g),
            None => {}
        }
        im.unmapped.extend(unmapped);
        im.notes.extend(notes);
    }

    // Apps, with the settings that apply to each.
    let mut apps: Vec<App> = Vec::new();
    let mut routes: BTreeMap<(String, String), String> = BTreeMap::new();
    let aliases = std::mem::take(&mut im.aliases);
    for a in &aliases {
        let mut hosts = match a.vhost {
            Some(v) => im.vhosts[v].hosts.clone(),
            None => {
                // Outside any VirtualHost: the main server, whose aliases every virtual host inherits.
                let mut hosts = vec!["*".to_owned()];
                for v in &im.vhosts {
                    if !aliases.iter().any(|b| b.vhost.is_some() && std::ptr::eq(im.vhosts[b.vhost.unwrap()].directive, v.directive) && b.mount == a.mount) {
                        hosts.extend(v.hosts.iter().filter(|h| *h != "*").cloned());
                    }
                }
                if hosts.len() > 1 {
                    im.notes.push(item(a.directive, "outside any VirtualHost: mapped to every host (virtual hosts inherit it)"));
                }
                hosts
            }
        };
        // Apache uses the first virtual host that claims a name: later ones never see it.
        hosts.retain(|h| match routes.get(&(h.clone(), a.mount.clone())) {
            Some(first) => {
                im.unmapped.push(item(a.directive, format!("host {h} at {} is already served by {first} (Apache uses the first)", if a.mount.is_empty() { "/" } else { &a.mount })));
                false
            }
            None => true,
        });
        if hosts.is_empty() {
            continue;
        }
        for h in &hosts {
            routes.insert((h.clone(), a.mount.clone()), a.directive.at());
        }

        // Settings: server < virtual host < Directory (shorter first) < Location < the alias's own options.
        let script_norm = norm_path(&a.script);
        let mount_url = if a.mount.is_empty() { "/".to_owned() } else { a.mount.clone() };
        let in_scope = |c: &Container<'_>| c.vhost.is_none() || c.vhost == a.vhost;
        let mut dirs: Vec<usize> = (0..im.containers.len())
            .filter(|&i| {
                let c = &im.containers[i];
                in_scope(c) && c.kind == Kind::Directory && within(&script_norm, &c.path)
            })
            .collect();
        dirs.sort_by_key(|&i| (im.containers[i].vhost.is_some(), im.containers[i].path.matches('/').count()));
        let locs: Vec<usize> = (0..im.containers.len())
            .filter(|&i| {
                let c = &im.containers[i];
                in_scope(c) && c.kind == Kind::Location && mount_url.starts_with(c.path.trim_end_matches('/')) 
            })
            .collect();
        let mut settings = im.server.clone();
        if let Some(v) = a.vhost {
            settings.overlay(&im.vhosts[v].settings);
        }
        let mut access_from: Option<usize> = None;
        for &i in dirs.iter().chain(&locs) {
            settings.overlay(&im.containers[i].settings);
            if !im.containers[i].settings.access.is_empty() {
                access_from = Some(i);
            }
        }
        let option = |key: &str| a.options.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        for (k, v) in &a.options {
            if !["process-group", "application-group", "callable-object", "pass-authorization"].contains(&k.as_str()) {
                im.notes.push(Item { at: a.directive.at(), what: format!("{k}={v}"), why: "not a WSGIScriptAlias option wasgi knows".into() });
            }
        }

        // The group.
        let process_group = option("process-group").or(settings.process_group.as_ref().map(|v| v.value.clone()));
        let group = match process_group.as_deref() {
            None | Some("%{GLOBAL}") | Some("") => embedded(&mut groups, &im, a.directive),
            Some(name) if name.starts_with("%{") => {
                im.unmapped.push(item(a.directive, format!("WSGIProcessGroup {name} is chosen per request; mapped to the embedded group")));
                embedded(&mut groups, &im, a.directive)
            }
            Some(name) => match groups.iter().position(|g| g.name == name && !g.embedded) {
                Some(i) => i,
                None => {
                    im.unmapped.push(item(a.directive, format!("WSGIProcessGroup {name} names no WSGIDaemonProcess; mapped to the embedded group")));
                    embedded(&mut groups, &im, a.directive)
                }
            },
        };
        groups[group].apps += 1;
        if groups[group].embedded {
            im.notes.push(item(
                a.directive,
                format!("no daemon process group (mod_wsgi's embedded mode): served by the group {:?}, with its own policy", groups[group].name),
            ));
        }
        if let Some(app_group) = option("application-group").or(settings.application_group.as_ref().map(|v| v.value.clone())) {
            if app_group != "%{GLOBAL}" {
                let at = settings.application_group.as_ref().map_or(a.directive.at(), |v| v.from.at());
                im.notes.push(Item {
                    at,
                    what: format!("WSGIApplicationGroup {app_group}"),
                    why: "each wasgi instance runs one app in one interpreter (%{GLOBAL}); apps never share an interpreter".into(),
                });
            }
        }
        let reloading = match &settings.reloading {
            Some(v) => (!v.value.eq_ignore_ascii_case("off"), v.from.at()),
            None => (true, "mod_wsgi's default".into()),
        };
        groups[group].reloading.push(reloading);
        let callable = option("callable-object").or(settings.callable.as_ref().map(|v| v.value.clone())).filter(|c| c != "application");
        // Off by default, in wasgi as in mod_wsgi: the app sees no credentials.
        let pass_authorization = match (option("pass-authorization"), &settings.pass_authorization) {
            (Some(v), _) => v.eq_ignore_ascii_case("on").then(|| format!("pass-authorization={v} ({})", a.directive.at())),
            (None, Some(v)) => v.value.eq_ignore_ascii_case("on").then(|| format!("{} ({})", v.from.text(), v.from.at())),
            (None, None) => None,
        };

        // Who may reach it.
        let mut access = Access::everyone();
        if let Some(i) = access_from {
            let directives = im.containers[i].settings.access.clone();
            if let Some(mapped) = map_access(&directives, &mut im.unmapped) {
                access = mapped;
            }
            for d in directives {
                im.consume(d);
            }
        }

        apps.push(App {
            origin: format!("{}: {}", a.directive.at(), a.directive.text()),
            hosts,
            mount: a.mount.clone(),
            script: a.script.clone(),
            callable,
            group,
            pass_authorization,
            allow: access.allow.unwrap_or_default().into_iter().filter(|a| a != "all").collect(),
            deny: access.deny,
            statics: Vec::new(),
            vhost: a.vhost,
        });
    }

    // Static aliases go to the app that would otherwise serve their URLs.
    for (v, vhost) in im.vhosts.iter().enumerate() {
        for (url, dir, d) in &vhost.aliases {
            let Some(url_norm) = normalise_mount(url).filter(|u| !u.is_empty()) else {
                im.unmapped.push(item(d, "an Alias of the whole site is not a static directory"));
                continue;
            };
            let owner = apps
                .iter_mut()
                .filter(|app| app.vhost == Some(v) && (app.mount.is_empty() || url_norm == app.mount || url_norm.starts_with(&format!("{}/", app.mount))))
                .max_by_key(|app| app.mount.len());
            match owner {
                Some(app) => app.statics.push((url_norm, trim_dir(dir))),
                None => {
                    if let Some(app) = apps.iter_mut().find(|app| app.vhost == Some(v)) {
                        app.statics.push((url_norm, trim_dir(dir)));
                    }
                }
            }
        }
    }

    // The new snippet's VirtualHost address is one for all.
    for (v, vhost) in im.vhosts.iter().enumerate() {
        let address = vhost.directive.args.join(" ");
        if apps.iter().any(|a| a.vhost == Some(v)) && address != options.vhost_address && address != "*" {
            im.notes.push(item(vhost.directive, format!("apache-wasgi.conf uses <VirtualHost {}> (--vhost-address)", options.vhost_address)));
        }
    }

    // Directives of the imported virtual hosts that the new snippet does not repeat.
    let mut not_repeated = Vec::new();
    for (v, vhost) in im.vhosts.iter().enumerate() {
        if apps.iter().any(|a| a.vhost == Some(v)) {
            leftovers(vhost.directive.children(), &im.consumed, None, &mut not_repeated);
        }
    }

    // Groups: reload_on_change from their apps.
    for g in groups.iter_mut() {
        if g.reloading.is_empty() {
            continue;
        }
        let on = g.reloading.iter().filter(|r| r.0).count();
        let value = on > 0;
        let from: Vec<&str> = g.reloading.iter().filter(|r| r.0 == value).map(|r| r.1.as_str()).collect();
        let mut from: Vec<&str> = from.into_iter().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        from.truncate(3);
        g.lines.push((
            "reload_on_change".into(),
            value.to_string(),
            format!("WSGIScriptReloading {} ({})", if value { "On" } else { "Off" }, from.join(", ")),
        ));
        if on > 0 && on < g.reloading.len() {
            im.notes.push(Item {
                at: g.origin.split(": ").next().unwrap_or_default().to_owned(),
                what: format!("group {}", g.name),
                why: "its apps had WSGIScriptReloading On and Off: reload_on_change is set for the whole group".into(),
            });
        }
    }
    if let Some(v) = &im.restrict_stdout {
        let on = !v.value.eq_ignore_ascii_case("off");
        for g in groups.iter_mut() {
            g.lines.push(("restrict_stdout".into(), on.to_string(), format!("WSGIRestrictStdout {} ({})", v.value, v.from.at())));
        }
    }

    let granted = script_paths(&apps, &mut groups, &mut im.unmapped);

    // Apache followed symlinks in these paths; wasgi refuses them in a grant
    // unless told to resolve them once (grant_dir). Say so on the group, and
    // in the notes, rather than leave `wasgi check` to fail.
    for (i, g) in groups.iter_mut().enumerate() {
        let mut paths: Vec<String> = apps.iter().filter(|a| a.group == i).map(|a| parent_of(&a.script)).collect();
        paths.extend(g.python_path.iter().cloned());
        paths.extend(g.venv.iter().cloned());
        paths.extend(g.script_grants.iter().map(|(p, _)| p.clone()));
        if let Some((link, target)) = paths.iter().find_map(|p| symlink_in(p)) {
            g.lines.push((
                "follow_symlinks".into(),
                "true".into(),
                format!("{} is a symlink (to {target}): Apache followed it; wasgi resolves it once at start", link.display()),
            ));
            im.notes.push(Item {
                at: g.origin.split(": ").next().unwrap_or_default().to_owned(),
                what: format!("group {}: follow_symlinks = true", g.name),
                why: format!(
                    "{} is a symlink (to {target}); whoever can change it decides what the group sees at the next start: \
                     name the real directory instead if that is not you",
                    link.display()
                ),
            });
        }
    }

    let mut missing = Vec::new();
    let mut exists = |path: &str, what: String, at: &str| {
        if is_windows_path(path) || !Path::new(path).exists() {
            let why = if is_windows_path(path) {
                "a Windows path: give the path of the same directory or file on this machine".to_owned()
            } else if !Path::new(path).is_absolute() {
                "not an absolute path".to_owned()
            } else {
                "does not exist on this machine".to_owned()
            };
            missing.push(Item { at: at.to_owned(), what: format!("{path} ({what})"), why });
        }
    };
    for app in &apps {
        let at = app.origin.split(": ").next().unwrap_or_default();
        exists(&app.script, "script".into(), at);
        for (url, dir) in &app.statics {
            exists(dir, format!("static {url}"), at);
        }
    }
    for g in &groups {
        let at = g.origin.split(": ").next().unwrap_or_default();
        for p in &g.python_path {
            exists(p, format!("python_path of group {}", g.name), at);
        }
        if let Some(v) = &g.venv {
            exists(v, format!("venv of group {}", g.name), at);
        }
        if let Some(h) = &g.home {
            exists(h, format!("home of group {}", g.name), at);
        }
    }

    let mut trusted: Vec<String> = match &options.listen {
        ListenAddr::Unix(_) => vec!["unix".into()],
        ListenAddr::Tcp(a) if a.ip().is_ipv6() => vec!["::1".into()],
        ListenAddr::Tcp(_) => vec!["127.0.0.1".into()],
    };
    for (net, _) in &im.trusted {
        if !trusted.contains(net) {
            trusted.push(net.clone());
        }
    }

    let wasgi_toml = render_config(file, options, &groups, &apps, &trusted, &graceful, &backlog, &im.trusted);
    let mut files = vec![(PathBuf::from("wasgi.toml"), wasgi_toml)];
    files.extend(render_policies(&groups, &apps));

    // The Apache side, from the same generator `wasgi apache-config` uses.
    let config = in_memory_config(options, &groups, &apps, &trusted, &backlog);
    let snippet_options = snippet::Options { vhost_address: options.vhost_address.clone(), ..Default::default() };
    let apache = snippet::generate(&config, &snippet_options).map_err(|e| anyhow::anyhow!("{e}"))?;
    files.push((PathBuf::from("apache-wasgi.conf"), apache));

    // In the order of the files and lines they come from.
    let key = |i: &Item| {
        let (file, line) = i.at.rsplit_once(':').unwrap_or((&i.at, "0"));
        (file.to_owned(), line.parse::<usize>().unwrap_or(0))
    };
    for items in [&mut im.unmapped, &mut im.notes] {
        items.sort_by_key(key);
    }
    let mut imported = Imported {
        files,
        unmapped: im.unmapped,
        notes: im.notes,
        not_repeated,
        missing,
        granted,
        groups: groups.len(),
        apps: apps.len(),
    };
    let report = unmapped_text(file, &imported);
    imported.files.push((PathBuf::from("UNMAPPED.txt"), report));
    Ok(imported)
}

/// What each app's script puts on sys.path itself (the guide's
/// `sys.path.insert(0, '/path/to/libs')`, `activate_this.py`): mod_wsgi's
/// daemon could read those directories, the sandbox only what is granted, so
/// each becomes a read-only grant of the app's group (a virtualenv becomes
/// the group's `venv` when it has none). What cannot be resolved from the
/// text, or does not exist here, goes to `unmapped` with the script's line.
/// Returns what was granted, for the summary.
fn script_paths(apps: &[App], groups: &mut [Group], unmapped: &mut Vec<Item>) -> Vec<Item> {
    use crate::config::wsgi_script::{scan, Kind};
    let mut granted = Vec::new();
    let mut seen: HashSet<(String, usize)> = HashSet::new();
    for app in apps {
        if is_windows_path(&app.script) || !seen.insert((app.script.clone(), app.group)) {
            continue;
        }
        let g = &mut groups[app.group];
        let policy = format!("policies/users/{}.toml", g.policy);
        let source = match std::fs::read(&app.script) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            // A missing script is listed with the paths that must exist.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                unmapped.push(Item {
                    at: app.script.clone(),
                    what: "the WSGI script".into(),
                    why: format!("cannot read it ({e}) to find the directories it puts on sys.path: grant those read-only in {policy}"),
                });
                continue;
            }
        };
        for found in scan(&app.script, &source) {
            let at = format!("{}:{}", app.script, found.line);
            // `with open(activate_this) as f:` reads better without its colon.
            let what = found.text.strip_suffix(':').unwrap_or(&found.text).to_owned();
            let path = match found.path {
                Ok(p) if Path::new(&p).is_dir() => p,
                Ok(p) => {
                    let problem = if Path::new(&p).exists() { "is not a directory (a zip or egg?)" } else { "does not exist on this machine" };
                    let why = format!(
                        "{p} ({}) {problem}: correct the script or the path, then grant the directory in {policy} ([[grant]] path = {}, access = \"read\")",
                        found.kind.describe(),
                        q(&p)
                    );
                    unmapped.push(Item { at, what, why });
                    continue;
                }
                Err(why) => {
                    let why = format!(
                        "{why}: the directory it puts on sys.path is not known from the text; grant it read-only in {policy} ([[grant]] path = \"...\", access = \"read\")"
                    );
                    unmapped.push(Item { at, what, why });
                    continue;
                }
            };
            let venv_here = found.kind == Kind::ActivateThis && !crate::config::plan::venv_site_packages(Path::new(&path)).is_empty();
            let why = if venv_here && g.venv.as_deref() == Some(path.as_str()) {
                format!("{path}: already the group's venv")
            } else if venv_here && g.venv.is_none() {
                g.lines.push(("venv".into(), q(&path), format!("activate_this.py in {at}: granted read-only, its site-packages on sys.path")));
                g.venv = Some(path.clone());
                format!("venv = {} in group {:?}: the virtualenv is granted read-only and its site-packages put on sys.path", q(&path), g.name)
            } else {
                if !g.script_grants.iter().any(|(p, _)| *p == path) {
                    g.script_grants.push((path.clone(), format!("{at}: {what}")));
                }
                format!("{path}: granted read-only in {policy}")
            };
            granted.push(Item { at, what, why });
        }
    }
    granted
}

/// The index of the group for apps without a daemon process group.
fn embedded(groups: &mut Vec<Group>, im: &Importer<'_>, first_use: &Directive) -> usize {
    if let Some(i) = groups.iter().position(|g| g.embedded) {
        return i;
    }
    let mut name = "embedded".to_owned();
    while groups.iter().any(|g| g.name == name) {
        name.push('_');
    }
    let mut g = Group {
        name: name.clone(),
        origin: format!("{}: embedded mode (no WSGIProcessGroup, or %{{GLOBAL}})", first_use.at()),
        lines: Vec::new(),
        user: None,
        unix_group: None,
        policy: name,
        python_path: Vec::new(),
        venv: None,
        script_grants: Vec::new(),
        home: None,
        request_timeout: Limits::default().request_timeout,
        reloading: Vec::new(),
        apps: 0,
        embedded: true,
    };
    server_python(&mut g, im);
    groups.push(g);
    groups.len() - 1
}

/// WSGIPythonHome / WSGIPythonPath / WSGIPythonOptimize for a group without its own.
fn server_python(g: &mut Group, im: &Importer<'_>) {
    if g.venv.is_none() {
        if let Some(v) = &im.python_home {
            g.venv = Some(trim_dir(&v.value));
            g.lines.push(("venv".into(), q(&trim_dir(&v.value)), format!("WSGIPythonHome ({})", v.from.at())));
        }
    }
    if g.python_path.is_empty() {
        if let Some(v) = &im.python_path {
            g.python_path = split_path(&v.value);
            g.lines.push(("python_path".into(), list(&g.python_path), format!("WSGIPythonPath ({})", v.from.at())));
        }
    }
    if let Some(v) = &im.python_optimize {
        g.lines.push(("env".into(), format!("{{ PYTHONOPTIMIZE = {} }}", q(&v.value)), format!("WSGIPythonOptimize ({})", v.from.at())));
    }
}

/// mod_wsgi's python-path: `:`-separated (`;` on Windows).
fn split_path(value: &str) -> Vec<String> {
    let sep = if is_windows_path(value) || value.contains(';') { ';' } else { ':' };
    value.split(sep).map(str::trim).filter(|s| !s.is_empty()).map(trim_dir).collect()
}

/// One WSGIDaemonProcess → a group.
fn daemon(
    d: &Directive,
    im: &Importer<'_>,
    graceful: &mut Option<(i64, String)>,
    backlog: &mut Option<(i64, String)>,
    unmapped: &mut Vec<Item>,
    notes: &mut Vec<Item>,
) -> Option<Group> {
    let Some(name) = d.args.first() else {
        unmapped.push(item(d, "no process group name"));
        return None;
    };
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    let wasgi_name = if valid { name.clone() } else { file_name(name) };
    if !valid {
        notes.push(item(d, format!("the group is named {wasgi_name:?}: wasgi group names use letters, digits, '-', '_' and '.'")));
    }
    let mut g = Group {
        name: wasgi_name.clone(),
        origin: format!("{}: {}", d.at(), d.text()),
        lines: Vec::new(),
        user: None,
        unix_group: None,
        policy: file_name(&wasgi_name),
        python_path: Vec::new(),
        venv: None,
        script_grants: Vec::new(),
        home: None,
        request_timeout: Limits::default().request_timeout,
        reloading: Vec::new(),
        apps: 0,
        embedded: false,
    };
    let mut processes: Option<i64> = None;
    let mut threads: Option<i64> = None;
    let mut memory: Option<(i64, &str)> = None;
    let mut env: Vec<(String, String)> = Vec::new();
    let option_item = |k: &str, v: &str, why: &str| Item { at: d.at(), what: format!("WSGIDaemonProcess {name} {k}={v}"), why: why.to_owned() };
    for option in &d.args[1..] {
        let Some((key, value)) = option.split_once('=') else {
            unmapped.push(Item { at: d.at(), what: format!("WSGIDaemonProcess {name} {option}"), why: "not an option=value".into() });
            continue;
        };
        let key = key.to_ascii_lowercase();
        let value = value.trim_matches(['"', '\'']);
        let number = || value.parse::<i64>().ok().filter(|n| *n >= 0);
        let bad_number = |unmapped: &mut Vec<Item>| unmapped.push(option_item(&key, value, "not a whole number of 0 or more"));
        match key.as_str() {
            "processes" | "threads" => match number() {
                Some(n) if n >= 1 => *(if key == "processes" { &mut processes } else { &mut threads }) = Some(n),
                _ => bad_number(unmapped),
            },
            "user" => g.user = Some(value.to_owned()),
            "group" => g.unix_group = Some(value.to_owned()),
            "display-name" => notes.push(option_item(&key, value, "kept as a comment: wasgi names instances after their group")),
            "home" => g.home = Some(trim_dir(value)),
            "python-home" => g.venv = Some(trim_dir(value)),
            "python-path" => g.python_path = split_path(value),
            "lang" => env.push(("LANG".into(), value.to_owned())),
            "locale" => env.push(("LC_ALL".into(), value.to_owned())),
            "memory-limit" | "virtual-memory-limit" => match number() {
                Some(n) if memory.is_none_or(|(m, _)| n < m) => memory = Some((n, if key == "memory-limit" { "memory-limit" } else { "virtual-memory-limit" })),
                Some(_) => {}
                None => bad_number(unmapped),
            },
            "graceful-timeout" => match number() {
                Some(n) => {
                    if graceful.as_ref().is_none_or(|(m, _)| n > *m) {
                        *graceful = Some((n, d.at()));
                    }
                }
                None => bad_number(unmapped),
            },
            "listen-backlog" => match number() {
                Some(n) if n >= 1 => {
                    if backlog.as_ref().is_none_or(|(m, _)| n > *m) {
                        *backlog = Some((n, d.at()));
                    }
                }
                _ => bad_number(unmapped),
            },
            k => match SAME_NAME.iter().find(|(apache, _)| *apache == k) {
                Some((_, wasgi)) => match number() {
                    Some(n) => {
                        if *wasgi == "request_timeout" {
                            g.request_timeout = (n > 0).then(|| Duration::from_secs(n as u64));
                        }
                        g.lines.push(((*wasgi).into(), n.to_string(), format!("{k}={value}")));
                    }
                    None => bad_number(unmapped),
                },
                None => unmapped.push(option_item(k, value, daemon_option_reason(k))),
            },
        }
    }
    let (p, t) = (processes.unwrap_or(1), threads.unwrap_or(15));
    let mut head = vec![(
        "instances".to_owned(),
        (p * t).to_string(),
        format!(
            "processes={p} × threads={t}{}: each guest is single-threaded",
            if threads.is_none() { " (mod_wsgi's default)" } else { "" }
        ),
    )];
    g.policy = file_name(g.user.as_deref().unwrap_or(&wasgi_name));
    head.push((
        "user".into(),
        q(&g.policy),
        match &g.user {
            Some(u) => format!("user={u}: policies/users/{}.toml", g.policy),
            None => format!("no user= (mod_wsgi used Apache's user): policies/users/{}.toml, named after the group", g.policy),
        },
    ));
    if let Some(group) = &g.unix_group {
        head.push(("group".into(), q(&file_name(group)), format!("group={group}: policies/groups/{}.toml", file_name(group))));
    }
    if let Some(v) = &g.venv {
        head.push(("venv".into(), q(v), "python-home".into()));
    }
    if !g.python_path.is_empty() {
        head.push(("python_path".into(), list(&g.python_path), "python-path".into()));
    }
    if let Some(h) = &g.home {
        head.push(("home".into(), q(h), "home: the working directory".into()));
    }
    if let Some((bytes, key)) = memory {
        let mib = ((bytes as u64).div_ceil(1 << 20)).max(1);
        head.push(("memory_limit".into(), mib.to_string(), format!("{key}={bytes} bytes, in MiB")));
    }
    if !env.is_empty() {
        let pairs: Vec<String> = env.iter().map(|(k, v)| format!("{k} = {}", q(v))).collect();
        head.push(("env".into(), format!("{{ {} }}", pairs.join(", ")), "lang= / locale=".into()));
    }
    head.append(&mut g.lines);
    g.lines = head;
    server_python(&mut g, im);
    Some(g)
}

/// Directives of a virtual host that were not carried over.
fn leftovers(list: &[Directive], consumed: &HashSet<*const Directive>, inside: Option<&Directive>, out: &mut Vec<Item>) {
    for d in flatten(list) {
        if consumed.contains(&(d as *const Directive)) {
            continue;
        }
        if d.children.is_some() {
            leftovers(d.children(), consumed, Some(d), out);
            continue;
        }
        let why = match inside {
            Some(section) => format!("inside {}", section.text()),
            None => "in the VirtualHost".into(),
        };
        out.push(item(d, why));
    }
}

// ---------------------------------------------------------------- output

#[allow(clippy::too_many_arguments)]
fn render_config(
    file: &Path,
    options: &Options,
    groups: &[Group],
    apps: &[App],
    trusted: &[String],
    graceful: &Option<(i64, String)>,
    backlog: &Option<(i64, String)>,
    from_wsgi: &[(String, &Directive)],
) -> String {
    let mut w = String::new();
    let _ = writeln!(w, "# wasgi.toml imported from {} by `wasgi import-apache`.", file.display());
    let _ = writeln!(w, "# Check it:  wasgi check --config {}", options.out.join("wasgi.toml").display());
    let _ = writeln!(w, "# What could not be mapped is listed in UNMAPPED.txt, with file and line.");
    let _ = writeln!(w);
    let mut why = match &options.listen {
        ListenAddr::Unix(_) => "Apache, on the Unix socket (apache-wasgi.conf)".to_owned(),
        ListenAddr::Tcp(_) => "Apache, over loopback (apache-wasgi.conf)".to_owned(),
    };
    if let Some((_, d)) = from_wsgi.first() {
        let _ = write!(why, "; the rest from WSGITrustedProxies ({})", d.at());
    }
    let _ = writeln!(w, "trusted_proxies = {}   # {why}", list(trusted));
    if let Some((secs, at)) = graceful {
        let _ = writeln!(w, "graceful_timeout = {secs}   # the largest graceful-timeout ({at})");
    }
    if let Some((n, at)) = backlog {
        let _ = writeln!(w, "\n[http]\nlisten_backlog = {n}   # the largest listen-backlog ({at})");
    }
    let _ = writeln!(w, "\n[[listen]]\naddress = {}", q(options.listen.to_string().trim_start_matches("http://")));
    if let ListenAddr::Unix(_) = options.listen {
        let _ = writeln!(w, "# mode = \"0660\"   # let Apache's user (through the socket's group) connect");
    }

    for g in groups {
        let _ = writeln!(w);
        let _ = writeln!(w, "# {}", g.origin);
        if g.embedded {
            let _ = writeln!(w, "# mod_wsgi ran these apps inside Apache's own processes; here they get a group of their");
            let _ = writeln!(w, "# own, with wasgi's default number of instances (one per core).");
        }
        if g.apps == 0 {
            let _ = writeln!(w, "# No WSGIScriptAlias uses this group.");
        }
        let _ = writeln!(w, "[[group]]");
        let _ = writeln!(w, "name = {}", q(&g.name));
        if g.embedded {
            let _ = writeln!(w, "user = {}   # its own policy: policies/users/{}.toml", q(&g.policy), g.policy);
        }
        for (key, value, comment) in &g.lines {
            let _ = writeln!(w, "{key} = {value}   # {comment}");
        }
    }
    for app in apps {
        let _ = writeln!(w);
        let _ = writeln!(w, "# {}", app.origin);
        let _ = writeln!(w, "[[app]]");
        let _ = writeln!(w, "host = {}", list(&app.hosts));
        let _ = writeln!(w, "mount = {}", q(if app.mount.is_empty() { "/" } else { &app.mount }));
        let _ = writeln!(w, "script = {}", q(&app.script));
        if let Some(c) = &app.callable {
            let _ = writeln!(w, "callable = {}", q(c));
        }
        let _ = writeln!(w, "group = {}", q(&groups[app.group].name));
        if let Some(origin) = &app.pass_authorization {
            let _ = writeln!(w, "pass_authorization = true   # {origin}");
        }
        if !app.allow.is_empty() {
            let _ = writeln!(w, "allow = {}", list(&app.allow));
        }
        if !app.deny.is_empty() {
            let _ = writeln!(w, "deny = {}", list(&app.deny));
        }
        if !app.statics.is_empty() {
            let pairs: Vec<String> = app.statics.iter().map(|(u, d)| format!("{} = {}", q(u), q(d))).collect();
            let _ = writeln!(w, "static = {{ {} }}   # Alias lines: Apache serves these (apache-wasgi.conf)", pairs.join(", "));
        }
    }
    w
}

/// The first symlink on `path` on this machine, and where it leads.
fn symlink_in(path: &str) -> Option<(PathBuf, String)> {
    match crate::spec::grant_dir::GrantDir::open(Path::new(path), false) {
        Err(crate::spec::grant_dir::GrantDirError::Symlink { link, target }) => Some((link, target)),
        _ => None,
    }
}

/// policies/users/*.toml from the directories each group's apps use, and
/// policies/groups/*.toml for the Unix groups named.
fn render_policies(groups: &[Group], apps: &[App]) -> Vec<(PathBuf, String)> {
    /// The groups that use a policy, and its grants: (path, why).
    type Policy = (Vec<String>, Vec<(String, String)>);
    let mut users: BTreeMap<String, Policy> = BTreeMap::new();
    let mut unix_groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        let entry = users.entry(g.policy.clone()).or_default();
        entry.0.push(g.name.clone());
        let mut add = |path: &str, why: String| {
            if !entry.1.iter().any(|(p, _)| p == path) {
                entry.1.push((path.to_owned(), why));
            }
        };
        for app in apps.iter().filter(|a| a.group == i) {
            add(&parent_of(&app.script), format!("the directory of {}", app.script));
        }
        for p in &g.python_path {
            add(p, format!("python-path of group {}", g.name));
        }
        if let Some(v) = &g.venv {
            add(v, format!("the venv of group {} (python-home, or the activate_this.py its script runs)", g.name));
        }
        for (p, why) in &g.script_grants {
            add(p, format!("put on sys.path by {why}"));
        }
        if let Some(h) = &g.home {
            add(h, format!("home of group {}: read-only here; if the app writes there, make it access = \"write\"", g.name));
        }
        if let Some(u) = &g.unix_group {
            unix_groups.entry(file_name(u)).or_default().push(g.name.clone());
        }
    }
    let mut files = Vec::new();
    for (name, (users_of, grants)) in users {
        let mut w = String::new();
        let _ = writeln!(w, "# Imported by `wasgi import-apache` for group(s) {}.", users_of.join(", "));
        let _ = writeln!(w, "# What their apps read, as the Apache configuration names it. Nothing else is visible");
        let _ = writeln!(w, "# inside the sandbox: grant write access explicitly where the app writes (uploads, a");
        let _ = writeln!(w, "# SQLite database, logs), with access = \"write\" on that directory.");
        // A grant inside another grant of the same file adds nothing.
        let norms: Vec<String> = grants.iter().map(|(p, _)| norm_path(p)).collect();
        for (i, (path, why)) in grants.iter().enumerate() {
            if norms.iter().enumerate().any(|(j, other)| j != i && other != &norms[i] && within(&norms[i], other)) {
                let _ = writeln!(w, "\n# {path} ({why}) is inside another grant below.");
                continue;
            }
            let _ = writeln!(w, "\n# {why}");
            let _ = writeln!(w, "[[grant]]\npath = {}\naccess = \"read\"", q(path));
            if let Some((link, target)) = symlink_in(path) {
                let _ = writeln!(w, "follow_symlinks = true   # {} is a symlink (to {target}): resolved once at start", link.display());
            }
        }
        files.push((PathBuf::from("policies/users").join(format!("{name}.toml")), w));
    }
    for (name, members) in unix_groups {
        let mut w = String::new();
        let _ = writeln!(w, "# Imported by `wasgi import-apache`: the Unix group {name:?} of WSGIDaemonProcess {}.", members.join(", "));
        let _ = writeln!(w, "# Grants here are shared by every wasgi group that names group = {name:?}, added to");
        let _ = writeln!(w, "# its user policy. The Apache configuration does not say which directories the Unix");
        let _ = writeln!(w, "# group could reach: add them here if the apps share any.");
        let _ = writeln!(w, "#");
        let _ = writeln!(w, "# [[grant]]\n# path = \"/srv/shared\"\n# access = \"read\"");
        files.push((PathBuf::from("policies/groups").join(format!("{name}.toml")), w));
    }
    files
}

/// The imported configuration as [`Config`], for the snippet generator
/// (without reading the written file, whose paths may not exist here).
fn in_memory_config(options: &Options, groups: &[Group], apps: &[App], trusted: &[String], backlog: &Option<(i64, String)>) -> Config {
    let mut trusted_proxies = TrustedProxies::default();
    for t in trusted {
        let _ = trusted_proxies.add(t);
    }
    let mut http = HttpLimits::default();
    if let Some((n, _)) = backlog {
        http.listen_backlog = *n as u32;
    }
    Config {
        input: crate::config::Input::File,
        file: options.out.join("wasgi.toml"),
        policies: options.out.join("policies"),
        listen: vec![Listen { addr: options.listen.clone(), socket_mode: None }],
        groups: groups
            .iter()
            .map(|g| GroupConfig {
                instances: 1,
                user: Some(g.policy.clone()),
                group: g.unix_group.clone(),
                limits: Limits { request_timeout: g.request_timeout, ..Limits::default() },
                snapshot: true,
                ..GroupConfig::named(g.name.clone())
            })
            .collect(),
        apps: apps
            .iter()
            .map(|a| AppConfig {
                hosts: a.hosts.clone(),
                mount: a.mount.clone(),
                script: PathBuf::from(&a.script),
                callable: a.callable.clone().unwrap_or_else(|| "application".into()),
                group: groups[a.group].name.clone(),
                static_dirs: a.statics.iter().map(|(u, d)| (u.clone(), PathBuf::from(d))).collect(),
                pass_authorization: a.pass_authorization.is_some(),
                access: {
                    let mut access = crate::spec::access::Access::default();
                    for (entries, deny) in [(&a.allow, false), (&a.deny, true)] {
                        for e in entries {
                            let _ = access.add(e, deny);
                        }
                    }
                    access
                },
                line: 0,
            })
            .collect(),
        http,
        graceful_timeout: Duration::from_secs(30),
        trusted_proxies,
    }
}

fn section(w: &mut String, title: &str, items: &[Item]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(w, "\n{title}");
    for i in items {
        let _ = writeln!(w, "  {i}");
    }
}

/// UNMAPPED.txt: everything that did not carry over unchanged.
fn unmapped_text(file: &Path, imported: &Imported) -> String {
    let mut w = String::new();
    let _ = writeln!(w, "What `wasgi import-apache` did not map from {}.", file.display());
    if imported.unmapped.is_empty() {
        let _ = writeln!(w, "\nEvery mod_wsgi setting was mapped.");
    }
    section(&mut w, "Not mapped (no wasgi equivalent: check whether the apps rely on it):", &imported.unmapped);
    section(&mut w, "Mapped with a difference:", &imported.notes);
    section(&mut w, "Paths that must exist on this machine (wasgi check reports them until they do):", &imported.missing);
    section(
        &mut w,
        "Apache directives of these virtual hosts that apache-wasgi.conf does not repeat (keep them in Apache):",
        &imported.not_repeated,
    );
    w
}

impl Imported {
    /// Writes the files under `out`; returns their paths.
    pub fn write(&self, out: &Path) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        for (rel, text) in &self.files {
            let path = out.join(rel);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            }
            std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
            written.push(path);
        }
        Ok(written)
    }

    /// What the user reads after an import: the files written, what did not
    /// map, what `wasgi check` will say, and the next commands.
    pub fn summary(&self, source: &Path, out: &Path, written: &[PathBuf], check: Option<&str>) -> String {
        let mut w = String::new();
        let _ = writeln!(w, "Imported {} ({} group(s), {} app(s)). Wrote:", source.display(), self.groups, self.apps);
        for p in written {
            let _ = writeln!(w, "  {}", p.display());
        }
        section(&mut w, "Not mapped (also in UNMAPPED.txt):", &self.unmapped);
        section(&mut w, "Mapped with a difference:", &self.notes);
        section(&mut w, "Paths that must exist on this machine:", &self.missing);
        section(&mut w, "Directories the WSGI scripts put on sys.path, now granted read-only:", &self.granted);
        if !self.not_repeated.is_empty() {
            let _ = writeln!(
                w,
                "\n{} other Apache directive(s) of these virtual hosts are not repeated in apache-wasgi.conf (listed in UNMAPPED.txt).",
                self.not_repeated.len()
            );
        }
        if let Some(problems) = check {
            let _ = writeln!(w, "\n`wasgi check` will report, until those are fixed:");
            for line in problems.lines() {
                let _ = writeln!(w, "  {line}");
            }
        }
        let config = out.join("wasgi.toml");
        let _ = writeln!(w, "\nNext:");
        let _ = writeln!(w, "  1. wasgi check --config {}", config.display());
        let _ = writeln!(w, "  2. wasgi serve --config {}", config.display());
        let _ = writeln!(
            w,
            "  3. put {} into Apache in place of the mod_wsgi lines (Debian: copy it to /etc/apache2/sites-available/, a2enmod {}, a2ensite), then apachectl -t && apachectl graceful",
            out.join("apache-wasgi.conf").display(),
            snippet::MODULES
        );
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import_text(text: &str) -> Imported {
        let tree = Reader::new(None).parse(text, Path::new("/etc/apache2/site.conf")).unwrap();
        let options = Options {
            listen: "127.0.0.1:8000".parse().unwrap(),
            server_root: None,
            out: PathBuf::from("/tmp/out"),
            vhost_address: "*:80".into(),
        };
        map(&tree, Path::new("/etc/apache2/site.conf"), &options).unwrap()
    }

    fn file<'a>(im: &'a Imported, name: &str) -> &'a str {
        &im.files.iter().find(|(p, _)| p == Path::new(name)).unwrap_or_else(|| panic!("no {name}: {:?}", im.files.iter().map(|f| &f.0).collect::<Vec<_>>())).1
    }

    fn access(text: &str) -> (Option<Access>, Vec<Item>) {
        let tree = Reader::new(None).parse(text, Path::new("/a.conf")).unwrap();
        let directives: Vec<&Directive> = tree.iter().collect();
        let mut unmapped = Vec::new();
        (map_access(&directives, &mut unmapped), unmapped)
    }

    fn lists(allow: &[&str], deny: &[&str]) -> Option<Access> {
        Some(Access {
            allow: if allow.is_empty() { None } else { Some(allow.iter().map(|s| s.to_string()).collect()) },
            deny: deny.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[test]
    fn addresses() {
        assert_eq!(address("10.1").as_deref(), Some("10.1.0.0/16"));
        assert_eq!(address("10.1.").as_deref(), Some("10.1.0.0/16"));
        assert_eq!(address("192.168.1.0/255.255.255.0").as_deref(), Some("192.168.1.0/24"));
        assert_eq!(address("192.168.1.7").as_deref(), Some("192.168.1.7"));
        assert_eq!(address("2001:db8::/32").as_deref(), Some("2001:db8::/32"));
        assert_eq!(address("example.com"), None);
        assert_eq!(address("10.0.0.0/255.0.255.0"), None);
    }

    #[test]
    fn apache_22_access() {
        assert_eq!(access("Order deny,allow\nAllow from all\n").0, lists(&[], &[]));
        assert_eq!(access("Order allow,deny\nAllow from all\n").0, lists(&[], &[]));
        assert_eq!(access("Order allow,deny\n").0, lists(&[], &["all"]), "allow,deny with no Allow admits nobody");
        assert_eq!(access("Order Deny,Allow\nDeny from all\nAllow from 10.1 192.0.2.5\n").0, lists(&["10.1.0.0/16", "192.0.2.5"], &[]));
        assert_eq!(access("Order allow,deny\nAllow from all\nDeny from 203.0.113.0/24\n").0, lists(&[], &["203.0.113.0/24"]));
        assert_eq!(access("Order allow,deny\nAllow from 10.0.0.0/8\nDeny from 10.9\n").0, lists(&["10.0.0.0/8"], &["10.9.0.0/16"]));
        assert_eq!(access("Deny from 198.51.100.1\n").0, lists(&[], &["198.51.100.1"]), "the default order is deny,allow");
        let (mapped, unmapped) = access("Order deny,allow\nDeny from 10.0.0.0/8\nAllow from 10.1\n");
        assert_eq!(mapped, None);
        assert!(unmapped[0].why.contains("cannot say this"), "{unmapped:?}");
        let (mapped, unmapped) = access("Order allow,deny\nAllow from .example.com\n");
        assert_eq!(mapped, None);
        assert_eq!(unmapped[0].to_string(), "/a.conf:2: Allow from .example.com: .example.com: host names are not mapped (wasgi matches addresses and CIDR blocks)");
    }

    #[test]
    fn apache_24_access() {
        assert_eq!(access("Require all granted\n").0, lists(&[], &[]));
        assert_eq!(access("Require all denied\n").0, lists(&[], &["all"]));
        assert_eq!(access("Require ip 10.1 192.0.2.0/24\nRequire ip ::1\n").0, lists(&["10.1.0.0/16", "192.0.2.0/24", "::1"], &[]));
        assert_eq!(access("Require local\n").0, lists(&["127.0.0.0/8", "::1"], &[]));
        assert_eq!(
            access("<RequireAll>\nRequire all granted\nRequire not ip 203.0.113.9 198.51.100\n</RequireAll>\n").0,
            lists(&[], &["203.0.113.9", "198.51.100.0/24"])
        );
        assert_eq!(
            access("<RequireAll>\n<RequireAny>\nRequire ip 10.0.0.0/8\nRequire ip 172.16.0.0/12\n</RequireAny>\nRequire not ip 10.66.0.0/16\n</RequireAll>\n").0,
            lists(&["10.0.0.0/8", "172.16.0.0/12"], &["10.66.0.0/16"])
        );
        let (mapped, unmapped) = access("Require valid-user\n");
        assert_eq!(mapped, None);
        assert!(unmapped[0].why.starts_with("Require valid-user: only `all`, `ip` and `local` are mapped"), "{unmapped:?}");
        let (mapped, unmapped) = access("Require not ip 10.0.0.1\n");
        assert_eq!(mapped, None);
        assert!(unmapped[0].why.contains("only counts inside <RequireAll>"));
    }

    const GUIDE_UNIX: &str = "<VirtualHost *>
    ServerName example.com

    WSGIDaemonProcess yourapplication user=user1 group=group1 threads=5
    WSGIScriptAlias / /var/www/yourapplication/yourapplication.wsgi

    <Directory /var/www/yourapplication>
        WSGIProcessGroup yourapplication
        WSGIApplicationGroup %{GLOBAL}
        Order deny,allow
        Allow from all
    </Directory>
</VirtualHost>
";

    #[test]
    fn the_guides_unix_example() {
        let im = import_text(GUIDE_UNIX);
        let toml = file(&im, "wasgi.toml");
        assert!(toml.contains("[[group]]\nname = \"yourapplication\"\ninstances = 5   # processes=1 × threads=5: each guest is single-threaded\nuser = \"user1\"   # user=user1: policies/users/user1.toml\ngroup = \"group1\""), "{toml}");
        assert!(toml.contains("reload_on_change = true   # WSGIScriptReloading On (mod_wsgi's default)"), "{toml}");
        assert!(toml.contains("[[app]]\nhost = [\"example.com\"]\nmount = \"/\"\nscript = \"/var/www/yourapplication/yourapplication.wsgi\"\ngroup = \"yourapplication\"\n"), "{toml}");
        assert!(!toml.contains("allow") && !toml.contains("deny"), "Allow from all is everyone: {toml}");
        assert!(toml.contains("trusted_proxies = [\"127.0.0.1\"]"), "{toml}");
        let policy = file(&im, "policies/users/user1.toml");
        assert!(policy.contains("[[grant]]\npath = \"/var/www/yourapplication\"\naccess = \"read\""), "{policy}");
        assert!(file(&im, "policies/groups/group1.toml").contains("WSGIDaemonProcess yourapplication"));
        assert_eq!(im.unmapped, vec![]);
        assert!(im.not_repeated.is_empty(), "{:?}", im.not_repeated);
        let apache = file(&im, "apache-wasgi.conf");
        assert!(apache.contains("<VirtualHost *:80>\n    ServerName example.com\n"), "{apache}");
        assert!(apache.contains("    ProxyPass / http://127.0.0.1:8000/ timeout=65\n"), "{apache}");
        assert!(apache.contains("wasgi.toml trusts 127.0.0.1"), "{apache}");
        assert!(file(&im, "UNMAPPED.txt").contains("Every mod_wsgi setting was mapped."));
    }

    #[test]
    fn the_guides_windows_example_keeps_its_paths() {
        let im = import_text(
            "<VirtualHost *>\n    ServerName example.com\n    WSGIScriptAlias / C:\\yourdir\\yourapp.wsgi\n    <Directory C:\\yourdir>\n        Order deny,allow\n        Allow from all\n    </Directory>\n</VirtualHost>\n",
        );
        let toml = file(&im, "wasgi.toml");
        assert!(toml.contains("script = \"C:\\\\yourdir\\\\yourapp.wsgi\"\ngroup = \"embedded\""), "{toml}");
        assert!(toml.contains("[[group]]\nname = \"embedded\"\nuser = \"embedded\""), "{toml}");
        let policy = file(&im, "policies/users/embedded.toml");
        assert!(policy.contains("path = \"C:\\\\yourdir\""), "{policy}");
        assert_eq!(
            im.notes.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            ["/etc/apache2/site.conf:3: WSGIScriptAlias / C:\\yourdir\\yourapp.wsgi: no daemon process group (mod_wsgi's embedded mode): served by the group \"embedded\", with its own policy"]
        );
        assert_eq!(im.missing.len(), 1);
        assert_eq!(
            im.missing[0].to_string(),
            "/etc/apache2/site.conf:3: C:\\yourdir\\yourapp.wsgi (script): a Windows path: give the path of the same directory or file on this machine"
        );
    }

    #[test]
    fn process_groups_options_and_unmapped_items() {
        let im = import_text(
            "WSGIPythonHome /srv/venv\nWSGIRestrictStdout Off\nWSGISocketPrefix /var/run/wsgi\n\
             WSGIDaemonProcess big processes=2 threads=3 maximum-requests=100 memory-limit=1000000 python-path=/a:/b/ home=/srv/big socket-timeout=5 graceful-timeout=9 listen-backlog=50\n\
             <VirtualHost *:443>\nServerName Shop.Example:443\nServerAlias *.shop.example www.shop.example\nSSLEngine on\n\
             WSGIScriptAlias /api /srv/api/api.wsgi process-group=big callable-object=app\n\
             WSGIScriptAlias / /srv/site/site.wsgi\nWSGIScriptReloading Off\n\
             WSGIScriptAliasMatch ^/(\\w+) /srv/x/$1.wsgi\n\
             Alias /static/ /srv/site/static/\n\
             <Location /admin>\nRequire ip 10.0.0.0/8\n</Location>\n\
             <Directory /srv/site>\nOptions -Indexes\n<RequireAll>\nRequire all granted\nRequire not ip 203.0.113.0/24\n</RequireAll>\n</Directory>\n\
             </VirtualHost>\n",
        );
        let toml = file(&im, "wasgi.toml");
        assert!(toml.contains("graceful_timeout = 9   # the largest graceful-timeout (/etc/apache2/site.conf:4)"), "{toml}");
        assert!(toml.contains("[http]\nlisten_backlog = 50"), "{toml}");
        assert!(toml.contains("instances = 6   # processes=2 × threads=3"), "{toml}");
        assert!(toml.contains("user = \"big\"   # no user= (mod_wsgi used Apache's user): policies/users/big.toml, named after the group"), "{toml}");
        assert!(toml.contains("python_path = [\"/a\", \"/b\"]   # python-path"), "{toml}");
        assert!(toml.contains("home = \"/srv/big\""), "{toml}");
        assert!(toml.contains("memory_limit = 1   # memory-limit=1000000 bytes, in MiB"), "{toml}");
        assert!(toml.contains("maximum_requests = 100   # maximum-requests=100"), "{toml}");
        assert!(toml.contains("venv = \"/srv/venv\"   # WSGIPythonHome (/etc/apache2/site.conf:1)"), "the embedded group gets the server's python home: {toml}");
        assert!(toml.contains("restrict_stdout = false   # WSGIRestrictStdout Off"), "{toml}");
        assert!(toml.contains("host = [\"shop.example\", \"*.shop.example\", \"www.shop.example\"]\nmount = \"/api\"\nscript = \"/srv/api/api.wsgi\"\ncallable = \"app\"\ngroup = \"big\""), "{toml}");
        assert!(toml.contains("group = \"embedded\"\ndeny = [\"203.0.113.0/24\"]\nstatic = { \"/static\" = \"/srv/site/static\" }"), "{toml}");
        assert!(toml.contains("reload_on_change = false   # WSGIScriptReloading Off (/etc/apache2/site.conf:11)"), "{toml}");
        let unmapped: Vec<String> = im.unmapped.iter().map(|i| i.to_string()).collect();
        assert!(unmapped.contains(&"/etc/apache2/site.conf:4: WSGIDaemonProcess big socket-timeout=5: concerns the socket between Apache and the daemon; wasgi's client timeouts are [http] header_read_timeout and body_read_timeout".to_owned()), "{unmapped:#?}");
        assert!(unmapped.iter().any(|u| u.starts_with("/etc/apache2/site.conf:12: WSGIScriptAliasMatch ^/(\\w+) /srv/x/$1.wsgi: a regular expression")), "{unmapped:#?}");
        let notes: Vec<String> = im.notes.iter().map(|i| i.to_string()).collect();
        assert!(notes.iter().any(|n| n.starts_with("/etc/apache2/site.conf:3: WSGISocketPrefix /var/run/wsgi: not needed")), "{notes:#?}");
        let rest: Vec<String> = im.not_repeated.iter().map(|i| i.to_string()).collect();
        assert!(rest.contains(&"/etc/apache2/site.conf:8: SSLEngine on: in the VirtualHost".to_owned()), "{rest:#?}");
        assert!(rest.contains(&"/etc/apache2/site.conf:15: Require ip 10.0.0.0/8: inside <Location /admin>".to_owned()), "a Location below a mount is part of an app only: {rest:#?}");
        assert!(rest.contains(&"/etc/apache2/site.conf:18: Options -Indexes: inside <Directory /srv/site>".to_owned()), "{rest:#?}");
        let policy = file(&im, "policies/users/big.toml");
        assert!(policy.contains("path = \"/srv/big\"\naccess = \"read\""), "{policy}");
        assert!(policy.contains("if the app writes there, make it access = \"write\""), "{policy}");
        let apache = file(&im, "apache-wasgi.conf");
        assert!(apache.contains("    ServerName shop.example\n    ServerAlias *.shop.example www.shop.example\n"), "{apache}");
        assert!(apache.contains("    ProxyPass /static !\n    Alias /static /srv/site/static\n"), "{apache}");
        let api = apache.find("ProxyPass /api").unwrap();
        let root = apache.find("ProxyPass / ").unwrap();
        assert!(api < root, "longer mounts first: {apache}");
    }

    #[test]
    fn a_process_group_naming_no_daemon_and_duplicate_routes() {
        let im = import_text(
            "<VirtualHost *:80>\nServerName a.example\nWSGIScriptAlias / /srv/a/a.wsgi process-group=nope\n</VirtualHost>\n\
             <VirtualHost *:80>\nServerName a.example\nWSGIScriptAlias / /srv/b/b.wsgi\n</VirtualHost>\n",
        );
        let unmapped: Vec<String> = im.unmapped.iter().map(|i| i.to_string()).collect();
        assert_eq!(
            unmapped,
            [
                "/etc/apache2/site.conf:3: WSGIScriptAlias / /srv/a/a.wsgi process-group=nope: WSGIProcessGroup nope names no WSGIDaemonProcess; mapped to the embedded group",
                "/etc/apache2/site.conf:7: WSGIScriptAlias / /srv/b/b.wsgi: host a.example at / is already served by /etc/apache2/site.conf:3 (Apache uses the first)",
            ]
        );
        assert_eq!(im.apps, 1);
    }
}
