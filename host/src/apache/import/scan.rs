//! Scanning: the Apache configuration's tree walked once, collecting
//! mod_wsgi's settings per scope (server, `<VirtualHost>`, `<Directory>`,
//! `<Location>`), the `WSGIScriptAlias` lines, the `WSGIDaemonProcess`
//! lines, each virtual host's names and `Alias` lines, and which directives
//! were carried over (the rest of an imported virtual host is listed as not
//! repeated by the new Apache snippet).

use std::collections::HashSet;
use std::path::Path;

use super::Item;
use super::access::{address, is_access};
use super::paths::norm_path;
use crate::apache::conf::{flatten, Directive};
use crate::config::{normalise_host, normalise_mount};

/// A value and the directive it came from.
#[derive(Clone)]
pub(super) struct Val<'a> {
    pub(super) value: String,
    pub(super) from: &'a Directive,
}

/// mod_wsgi settings of one scope: the server, a virtual host, a
/// `<Directory>` or a `<Location>`.
#[derive(Default, Clone)]
pub(super) struct Settings<'a> {
    pub(super) process_group: Option<Val<'a>>,
    pub(super) application_group: Option<Val<'a>>,
    pub(super) callable: Option<Val<'a>>,
    pub(super) reloading: Option<Val<'a>>,
    pub(super) pass_authorization: Option<Val<'a>>,
    /// Order/Allow/Deny/Require/Satisfy and Require* sections.
    pub(super) access: Vec<&'a Directive>,
}

impl<'a> Settings<'a> {
    pub(super) fn overlay(&mut self, other: &Settings<'a>) {
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
pub(super) enum Kind {
    Directory,
    Location,
}

pub(super) struct Container<'a> {
    pub(super) kind: Kind,
    /// Normalised: `/srv/app` (Directory), `/admin` (Location).
    pub(super) path: String,
    pub(super) settings: Settings<'a>,
    pub(super) vhost: Option<usize>,
}

pub(super) struct VHost<'a> {
    pub(super) directive: &'a Directive,
    pub(super) hosts: Vec<String>,
    pub(super) settings: Settings<'a>,
    /// `Alias URL DIR`: (url, dir, directive).
    pub(super) aliases: Vec<(String, String, &'a Directive)>,
}

pub(super) struct ScriptAlias<'a> {
    pub(super) mount: String,
    pub(super) script: String,
    pub(super) options: Vec<(String, String)>,
    pub(super) directive: &'a Directive,
    pub(super) vhost: Option<usize>,
}

/// What the scan found: settings per scope, the script aliases and daemon
/// processes, and what could not be mapped along the way.
#[derive(Default)]
pub(super) struct Importer<'a> {
    pub(super) server: Settings<'a>,
    pub(super) python_home: Option<Val<'a>>,
    pub(super) python_path: Option<Val<'a>>,
    pub(super) restrict_stdout: Option<Val<'a>>,
    pub(super) python_optimize: Option<Val<'a>>,
    pub(super) trusted: Vec<(String, &'a Directive)>,
    pub(super) vhosts: Vec<VHost<'a>>,
    pub(super) containers: Vec<Container<'a>>,
    pub(super) aliases: Vec<ScriptAlias<'a>>,
    pub(super) daemons: Vec<&'a Directive>,
    /// Directives whose meaning is carried into the result.
    pub(super) consumed: HashSet<*const Directive>,
    pub(super) unmapped: Vec<Item>,
    pub(super) notes: Vec<Item>,
}

pub(super) fn item(d: &Directive, why: impl Into<String>) -> Item {
    Item { at: d.at(), what: d.text(), why: why.into() }
}

impl<'a> Importer<'a> {
    pub(super) fn consume(&mut self, d: &'a Directive) {
        self.consumed.insert(d as *const Directive);
    }

    pub(super) fn scan(&mut self, list: &'a [Directive], vhost: Option<usize>) {
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

/// Directives of a virtual host that were not carried over.
pub(super) fn leftovers(list: &[Directive], consumed: &HashSet<*const Directive>, inside: Option<&Directive>, out: &mut Vec<Item>) {
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

