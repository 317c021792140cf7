//! Rendering: wasgi.toml and the policies as TOML documents (toml_edit),
//! each value with a comment saying where it came from; the in-memory
//! [`Config`] the Apache snippet is generated from; UNMAPPED.txt and the
//! summary printed after an import.
//!
//! Strings are written as TOML basic strings (`"C:\\dir"`), never as
//! literal ones, so the files read as they always have.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Key, Table, Value};
use toml_writer::{ToTomlKey, ToTomlValue};

use super::apps::App;
use super::daemon::Group;
use super::paths::{file_name, norm_path, parent_of, symlink_in, within};
use super::{Imported, Item, Options};
use crate::apache::conf::Directive;
use crate::apache::snippet;
use crate::config::{AppConfig, Config, GroupConfig};
use crate::spec::limits::{HttpLimits, Limits};
use crate::spec::listen::{Listen, ListenAddr};
use crate::spec::proxies::TrustedProxies;

// ---------------------------------------------------------------- values

/// `s` as a TOML basic string, escapes and all.
pub(super) fn string(s: &str) -> Value {
    let text = toml_writer::TomlStringBuilder::new(s).as_basic().to_toml_value();
    text.parse().expect("toml_writer writes a valid basic string")
}

/// An array of basic strings: `["a", "b"]`.
pub(super) fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| string(s)).collect::<Array>())
}

/// An inline table of strings, `{ LANG = "C" }`; keys bare where TOML
/// allows, else basic strings (`{ "/static" = "/srv/static" }`).
pub(super) fn inline<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    let mut table = InlineTable::new();
    for (k, v) in pairs {
        table.insert_formatted(&key(k), string(v));
    }
    Value::InlineTable(table)
}

/// Adds `k = "v"` to an inline table made by [`inline`].
pub(super) fn insert(table: &mut Value, k: &str, v: &str) {
    if let Value::InlineTable(table) = table {
        table.insert_formatted(&key(k), string(v));
    }
}

fn key(k: &str) -> Key {
    let builder = toml_writer::TomlKeyBuilder::new(k);
    let text = builder.as_unquoted().unwrap_or_else(|| builder.as_basic()).to_toml_key();
    text.parse().expect("toml_writer writes a valid key")
}

/// A comment's text: control characters, which a TOML comment cannot
/// hold, written as escapes (they can only come from odd file names).
fn comment(text: &str) -> String {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return text.to_owned();
    }
    text.chars().map(|c| if c.is_control() && c != '\t' { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// `value   # why`.
fn commented(mut value: Value, why: &str) -> toml_edit::Item {
    value.decor_mut().set_suffix(format!("   # {}", comment(why)));
    toml_edit::Item::Value(value)
}

/// Comment lines to go before whatever comes next in a document: the next
/// table's header, or the end of the document.
#[derive(Default)]
struct Pending(String);

impl Pending {
    fn line(&mut self, text: &str) {
        self.0.push_str("# ");
        self.0.push_str(&comment(text));
        self.0.push('\n');
    }

    fn blank(&mut self) {
        self.0.push('\n');
    }

    /// Puts the pending lines before `table`'s header.
    fn before(&mut self, table: &mut Table) {
        table.decor_mut().set_prefix(std::mem::take(&mut self.0));
    }

    /// Puts the pending lines at the end of `doc`.
    fn at_end(self, doc: &mut DocumentMut) {
        if !self.0.is_empty() {
            doc.set_trailing(self.0);
        }
    }
}

fn array_of_tables(tables: Vec<Table>) -> toml_edit::Item {
    let mut array = ArrayOfTables::new();
    for t in tables {
        array.push(t);
    }
    toml_edit::Item::ArrayOfTables(array)
}

// ---------------------------------------------------------------- wasgi.toml

/// The server-wide settings of wasgi.toml.
pub(super) struct Server<'a> {
    pub(super) trusted: &'a [String],
    /// The first WSGITrustedProxies line, if any.
    pub(super) trusted_from: Option<&'a Directive>,
    pub(super) graceful: &'a Option<(i64, String)>,
    pub(super) backlog: &'a Option<(i64, String)>,
}

pub(super) fn render_config(file: &Path, options: &Options, server: &Server<'_>, groups: &[Group], apps: &[App]) -> String {
    let mut doc = DocumentMut::new();
    let mut why = match &options.listen {
        ListenAddr::Unix(_) => "Apache, on the Unix socket (apache-wasgi.conf)".to_owned(),
        ListenAddr::Tcp(_) => "Apache, over loopback (apache-wasgi.conf)".to_owned(),
    };
    if let Some(d) = server.trusted_from {
        let _ = write!(why, "; the rest from WSGITrustedProxies ({})", d.at());
    }
    doc.insert("trusted_proxies", commented(strings(server.trusted), &why));
    let mut head = Pending::default();
    head.line(&format!("wasgi.toml imported from {} by `wasgi import-apache`.", file.display()));
    head.line(&format!("Check it:  wasgi check --config {}", options.out.join("wasgi.toml").display()));
    head.line("What could not be mapped is listed in UNMAPPED.txt, with file and line.");
    head.blank();
    if let Some(mut k) = doc.key_mut("trusted_proxies") {
        k.leaf_decor_mut().set_prefix(head.0);
    }
    if let Some((secs, at)) = server.graceful {
        doc.insert("graceful_timeout", commented(Value::from(*secs), &format!("the largest graceful-timeout ({at})")));
    }
    if let Some((n, at)) = server.backlog {
        let mut http = Table::new();
        http.decor_mut().set_prefix("\n");
        http.insert("listen_backlog", commented(Value::from(*n), &format!("the largest listen-backlog ({at})")));
        doc.insert("http", toml_edit::Item::Table(http));
    }
    let mut listen = Table::new();
    listen.decor_mut().set_prefix("\n");
    listen.insert("address", toml_edit::Item::Value(string(options.listen.to_string().trim_start_matches("http://"))));
    doc.insert("listen", array_of_tables(vec![listen]));

    let mut pending = Pending::default();
    if let ListenAddr::Unix(_) = options.listen {
        pending.line("mode = \"0660\"   # let Apache's user (through the socket's group) connect");
    }
    let mut tables = Vec::new();
    for g in groups {
        let mut t = Table::new();
        pending.blank();
        pending.line(&g.origin);
        if g.embedded {
            pending.line("mod_wsgi ran these apps inside Apache's own processes; here they get a group of their");
            pending.line("own, with wasgi's default number of instances (one per core).");
        }
        if g.apps == 0 {
            pending.line("No WSGIScriptAlias uses this group.");
        }
        pending.before(&mut t);
        t.insert("name", toml_edit::Item::Value(string(&g.name)));
        if g.embedded {
            t.insert("user", commented(string(&g.policy), &format!("its own policy: policies/users/{}.toml", g.policy)));
        }
        for (key, value, why) in &g.lines {
            debug_assert!(!t.contains_key(key), "group {}: {key} twice", g.name);
            t.insert(key, commented(value.clone(), why));
        }
        tables.push(t);
    }
    if !tables.is_empty() {
        doc.insert("group", array_of_tables(tables));
    }
    let mut tables = Vec::new();
    for app in apps {
        let mut t = Table::new();
        pending.blank();
        pending.line(&app.origin);
        pending.before(&mut t);
        let value = |v: Value| toml_edit::Item::Value(v);
        t.insert("host", value(strings(&app.hosts)));
        t.insert("mount", value(string(if app.mount.is_empty() { "/" } else { &app.mount })));
        t.insert("script", value(string(&app.script)));
        if let Some(c) = &app.callable {
            t.insert("callable", value(string(c)));
        }
        t.insert("group", value(string(&groups[app.group].name)));
        if let Some(origin) = &app.pass_authorization {
            t.insert("pass_authorization", commented(Value::from(true), origin));
        }
        if !app.allow.is_empty() {
            t.insert("allow", value(strings(&app.allow)));
        }
        if !app.deny.is_empty() {
            t.insert("deny", value(strings(&app.deny)));
        }
        if !app.statics.is_empty() {
            let statics = inline(app.statics.iter().map(|(u, d)| (u.as_str(), d.as_str())));
            t.insert("static", commented(statics, "Alias lines: Apache serves these (apache-wasgi.conf)"));
        }
        tables.push(t);
    }
    if !tables.is_empty() {
        doc.insert("app", array_of_tables(tables));
    }
    pending.at_end(&mut doc);
    doc.to_string()
}

// ---------------------------------------------------------------- policies

/// policies/users/*.toml from the directories each group's apps use, and
/// policies/groups/*.toml for the Unix groups named.
pub(super) fn render_policies(groups: &[Group], apps: &[App]) -> Vec<(PathBuf, String)> {
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
        let mut doc = DocumentMut::new();
        let mut pending = Pending::default();
        pending.line(&format!("Imported by `wasgi import-apache` for group(s) {}.", users_of.join(", ")));
        pending.line("What their apps read, as the Apache configuration names it. Nothing else is visible");
        pending.line("inside the sandbox: grant write access explicitly where the app writes (uploads, a");
        pending.line("SQLite database, logs), with access = \"write\" on that directory.");
        // A grant inside another grant of the same file adds nothing.
        let norms: Vec<String> = grants.iter().map(|(p, _)| norm_path(p)).collect();
        let mut tables = Vec::new();
        for (i, (path, why)) in grants.iter().enumerate() {
            if norms.iter().enumerate().any(|(j, other)| j != i && other != &norms[i] && within(&norms[i], other)) {
                pending.blank();
                pending.line(&format!("{path} ({why}) is inside another grant below."));
                continue;
            }
            let mut t = Table::new();
            pending.blank();
            pending.line(why);
            pending.before(&mut t);
            t.insert("path", toml_edit::Item::Value(string(path)));
            t.insert("access", toml_edit::Item::Value(string("read")));
            if let Some((link, target)) = symlink_in(path) {
                let why = format!("{} is a symlink (to {target}): resolved once at start", link.display());
                t.insert("follow_symlinks", commented(Value::from(true), &why));
            }
            tables.push(t);
        }
        if !tables.is_empty() {
            doc.insert("grant", array_of_tables(tables));
        }
        pending.at_end(&mut doc);
        files.push((PathBuf::from("policies/users").join(format!("{name}.toml")), doc.to_string()));
    }
    for (name, members) in unix_groups {
        // Only comments: the Apache configuration names no directory for a Unix group.
        let mut doc = DocumentMut::new();
        let mut pending = Pending::default();
        pending.line(&format!("Imported by `wasgi import-apache`: the Unix group {name:?} of WSGIDaemonProcess {}.", members.join(", ")));
        pending.line(&format!("Grants here are shared by every wasgi group that names group = {name:?}, added to"));
        pending.line("its user policy. The Apache configuration does not say which directories the Unix");
        pending.line("group could reach: add them here if the apps share any.");
        pending.0.push_str("#\n");
        pending.line("[[grant]]");
        pending.line("path = \"/srv/shared\"");
        pending.line("access = \"read\"");
        pending.at_end(&mut doc);
        files.push((PathBuf::from("policies/groups").join(format!("{name}.toml")), doc.to_string()));
    }
    files
}

/// The imported configuration as [`Config`], for the snippet generator
/// (without reading the written file, whose paths may not exist here).
pub(super) fn in_memory_config(options: &Options, groups: &[Group], apps: &[App], trusted: &[String], backlog: &Option<(i64, String)>) -> Config {
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
        listen: vec![Listen::new(options.listen.clone())],
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
                callable: a.callable.clone().unwrap_or_else(|| crate::config::DEFAULT_CALLABLE.into()),
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
        logging: Default::default(),
        admin: None,
        cache_unused: crate::config::cache_unused(crate::config::DEFAULT_CACHE_UNUSED_DAYS),
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
pub(super) fn unmapped_text(file: &Path, imported: &Imported) -> String {
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

