//! Apps: each `WSGIScriptAlias` becomes an `[[app]]` with the settings
//! that apply to it (server < virtual host < `<Directory>`, shorter first <
//! `<Location>` < the alias's own options): its hosts, group, callable,
//! `pass_authorization`, access lists and static directories; then what
//! its script puts on `sys.path` is granted.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use super::Item;
use super::access::{map_access, Access};
use super::daemon::{embedded, Group};
use super::paths::{is_windows_path, norm_path, trim_dir, within};
use super::render::string;
use super::scan::{item, Container, Importer, Kind, ScriptAlias, Settings};
use crate::config::normalise_mount;

/// An `[[app]]` as it will be written.
pub(super) struct App {
    pub(super) origin: String,
    pub(super) hosts: Vec<String>,
    pub(super) mount: String,
    pub(super) script: String,
    pub(super) callable: Option<String>,
    pub(super) group: usize,
    /// WSGIPassAuthorization On, and where it was said.
    pub(super) pass_authorization: Option<String>,
    pub(super) allow: Vec<String>,
    pub(super) deny: Vec<String>,
    pub(super) statics: Vec<(String, String)>,
    pub(super) vhost: Option<usize>,
}


/// Every script alias mapped to an app, in the order of the configuration;
/// a host and mount already served by an earlier alias is left out, as
/// Apache leaves it (and said so in `unmapped`).
pub(super) fn map_apps(im: &mut Importer<'_>, groups: &mut Vec<Group>) -> Vec<App> {
    let mut apps: Vec<App> = Vec::new();
    let mut routes: BTreeMap<(String, String), String> = BTreeMap::new();
    let aliases = std::mem::take(&mut im.aliases);
    for a in &aliases {
        let mut hosts = hosts_of(a, &aliases, im);
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

        let (settings, access_from) = settings_for(a, im);
        let option = |key: &str| a.options.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        for (k, v) in &a.options {
            if !["process-group", "application-group", "callable-object", "pass-authorization"].contains(&k.as_str()) {
                im.notes.push(Item { at: a.directive.at(), what: format!("{k}={v}"), why: "not a WSGIScriptAlias option wasgi knows".into() });
            }
        }
        let group = group_of(a, &settings, option("process-group"), im, groups);
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
        let callable = option("callable-object").or(settings.callable.as_ref().map(|v| v.value.clone())).filter(|c| c != crate::config::DEFAULT_CALLABLE);
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
    apps
}

/// The hosts an alias serves: its virtual host's names, or (outside any
/// virtual host) every host, as virtual hosts inherit the main server's aliases.
fn hosts_of(a: &ScriptAlias<'_>, aliases: &[ScriptAlias<'_>], im: &mut Importer<'_>) -> Vec<String> {
    match a.vhost {
        Some(v) => im.vhosts[v].hosts.clone(),
        None => {
            // Outside any VirtualHost: the main server, whose aliases every virtual host inherits.
            let mut hosts = vec!["*".to_owned()];
            for v in &im.vhosts {
                if !aliases.iter().any(|b| b.vhost.is_some() && std::ptr::eq(im.vhosts[b.vhost.unwrap()].directive, v.directive) && b.mount == a.mount) {
                    // Two virtual hosts may share a name (one per port): the
                    // app lists it once, or it would conflict with itself.
                    for h in v.hosts.iter().filter(|h| *h != "*") {
                        if !hosts.contains(h) {
                            hosts.push(h.clone());
                        }
                    }
                }
            }
            if hosts.len() > 1 {
                im.notes.push(item(a.directive, "outside any VirtualHost: mapped to every host (virtual hosts inherit it)"));
            }
            hosts
        }
    }
}

/// The mod_wsgi settings in force for an alias, and the section whose
/// access control applies (the last one that has any).
fn settings_for<'a>(a: &ScriptAlias<'_>, im: &Importer<'a>) -> (Settings<'a>, Option<usize>) {
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
    (settings, access_from)
}

/// The index of the group that serves an alias: its process group, or the
/// embedded group (made on first use).
fn group_of(a: &ScriptAlias<'_>, settings: &Settings<'_>, process_group_option: Option<String>, im: &mut Importer<'_>, groups: &mut Vec<Group>) -> usize {
    let process_group = process_group_option.or(settings.process_group.as_ref().map(|v| v.value.clone()));
    match process_group.as_deref() {
        None | Some("%{GLOBAL}") | Some("") => embedded(groups, im, a.directive),
        Some(name) if name.starts_with("%{") => {
            im.unmapped.push(item(a.directive, format!("WSGIProcessGroup {name} is chosen per request; mapped to the embedded group")));
            embedded(groups, im, a.directive)
        }
        Some(name) => match groups.iter().position(|g| g.name == name && !g.embedded) {
            Some(i) => i,
            None => {
                im.unmapped.push(item(a.directive, format!("WSGIProcessGroup {name} names no WSGIDaemonProcess; mapped to the embedded group")));
                embedded(groups, im, a.directive)
            }
        },
    }
}

/// Static aliases go to the app that would otherwise serve their URLs.
pub(super) fn place_statics(im: &mut Importer<'_>, apps: &mut [App]) {
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
}

/// What each app's script puts on sys.path itself (the guide's
/// `sys.path.insert(0, '/path/to/libs')`, `activate_this.py`): mod_wsgi's
/// daemon could read those directories, the sandbox only what is granted, so
/// each becomes a read-only grant of the app's group (a virtualenv becomes
/// the group's `venv` when it has none). What cannot be resolved from the
/// text, or does not exist here, goes to `unmapped` with the script's line.
/// Returns what was granted, for the summary.
pub(super) fn script_paths(apps: &[App], groups: &mut [Group], unmapped: &mut Vec<Item>) -> Vec<Item> {
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
                        string(&p)
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
                g.lines.push(("venv".into(), string(&path), format!("activate_this.py in {at}: granted read-only, its site-packages on sys.path")));
                g.venv = Some(path.clone());
                format!("venv = {} in group {:?}: the virtualenv is granted read-only and its site-packages put on sys.path", string(&path), g.name)
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

