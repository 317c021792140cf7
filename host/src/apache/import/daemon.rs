//! Daemon options: each `WSGIDaemonProcess` line becomes a `[[group]]`
//! (processes × threads → instances, limits, paths, user and group), the
//! server-wide `WSGIPython*` settings fill in what a group does not say, and
//! apps without a daemon process share an "embedded" group.

use std::time::Duration;

use toml_edit::Value;

use super::Item;
use super::paths::{file_name, split_path, trim_dir};
use super::render::{inline, insert, string, strings};
use super::scan::{item, Importer};
use crate::apache::conf::Directive;
use crate::spec::limits::Limits;

/// A `[[group]]` as it will be written.
pub(super) struct Group {
    pub(super) name: String,
    /// The WSGIDaemonProcess line, or why this group exists.
    pub(super) origin: String,
    /// `key = value   # comment` lines, in order.
    pub(super) lines: Vec<(String, Value, String)>,
    pub(super) user: Option<String>,
    pub(super) unix_group: Option<String>,
    /// The policy name: `user=`, else the group's own name.
    pub(super) policy: String,
    pub(super) python_path: Vec<String>,
    pub(super) venv: Option<String>,
    /// Directories its apps' scripts put on sys.path: (path, why), granted read-only.
    pub(super) script_grants: Vec<(String, String)>,
    pub(super) home: Option<String>,
    /// For the in-memory Config the snippet is generated from.
    pub(super) request_timeout: Option<Duration>,
    /// Per app: WSGIScriptReloading and where it was set.
    pub(super) reloading: Vec<(bool, String)>,
    pub(super) apps: usize,
    pub(super) embedded: bool,
}

impl Group {
    /// A group with nothing set yet but its names.
    fn new(name: String, origin: String, policy: String, embedded: bool) -> Group {
        Group {
            name,
            origin,
            lines: Vec::new(),
            user: None,
            unix_group: None,
            policy,
            python_path: Vec::new(),
            venv: None,
            script_grants: Vec::new(),
            home: None,
            request_timeout: Limits::default().request_timeout,
            reloading: Vec::new(),
            apps: 0,
            embedded,
        }
    }
}

/// The groups of the `WSGIDaemonProcess` lines, and the largest
/// `graceful-timeout` and `listen-backlog` among them (server-wide in wasgi),
/// each with where it was said.
pub(super) struct Daemons {
    pub(super) groups: Vec<Group>,
    pub(super) graceful: Option<(i64, String)>,
    pub(super) backlog: Option<(i64, String)>,
}

/// Every `WSGIDaemonProcess` line of the scan, mapped.
pub(super) fn daemons(im: &mut Importer<'_>) -> Daemons {
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
    Daemons { groups, graceful, backlog }
}

/// What a group's apps decide for the whole group: `reload_on_change` from
/// their WSGIScriptReloading, and the server's WSGIRestrictStdout.
pub(super) fn from_apps(im: &mut Importer<'_>, groups: &mut [Group]) {
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
            Value::from(value),
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
            g.lines.push(("restrict_stdout".into(), Value::from(on), format!("WSGIRestrictStdout {} ({})", v.value, v.from.at())));
        }
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

/// The index of the group for apps without a daemon process group.
pub(super) fn embedded(groups: &mut Vec<Group>, im: &Importer<'_>, first_use: &Directive) -> usize {
    if let Some(i) = groups.iter().position(|g| g.embedded) {
        return i;
    }
    let mut name = "embedded".to_owned();
    while groups.iter().any(|g| g.name == name) {
        name.push('_');
    }
    let origin = format!("{}: embedded mode (no WSGIProcessGroup, or %{{GLOBAL}})", first_use.at());
    let mut g = Group::new(name.clone(), origin, name, true);
    server_python(&mut g, im);
    groups.push(g);
    groups.len() - 1
}

/// WSGIPythonHome / WSGIPythonPath / WSGIPythonOptimize for a group without its own.
fn server_python(g: &mut Group, im: &Importer<'_>) {
    if g.venv.is_none() {
        if let Some(v) = &im.python_home {
            g.venv = Some(trim_dir(&v.value));
            g.lines.push(("venv".into(), string(&trim_dir(&v.value)), format!("WSGIPythonHome ({})", v.from.at())));
        }
    }
    if g.python_path.is_empty() {
        if let Some(v) = &im.python_path {
            g.python_path = split_path(&v.value);
            g.lines.push(("python_path".into(), strings(&g.python_path), format!("WSGIPythonPath ({})", v.from.at())));
        }
    }
    if let Some(v) = &im.python_optimize {
        let why = format!("WSGIPythonOptimize ({})", v.from.at());
        // One `env` per group: lang= / locale= may have made it already.
        match g.lines.iter_mut().find(|(key, _, _)| key == "env") {
            Some((_, env, comment)) => {
                insert(env, "PYTHONOPTIMIZE", &v.value);
                comment.push_str(&format!("; {why}"));
            }
            None => g.lines.push(("env".into(), inline([("PYTHONOPTIMIZE", v.value.as_str())]), why)),
        }
    }
}

/// One WSGIDaemonProcess → a group.
pub(super) fn daemon(
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
    let mut g = Group::new(wasgi_name.clone(), format!("{}: {}", d.at(), d.text()), file_name(&wasgi_name), false);
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
                        g.lines.push(((*wasgi).into(), Value::from(n), format!("{k}={value}")));
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
        Value::from(p * t),
        format!(
            "processes={p} × threads={t}{}: each guest is single-threaded",
            if threads.is_none() { " (mod_wsgi's default)" } else { "" }
        ),
    )];
    g.policy = file_name(g.user.as_deref().unwrap_or(&wasgi_name));
    head.push((
        "user".into(),
        string(&g.policy),
        match &g.user {
            Some(u) => format!("user={u}: policies/users/{}.toml", g.policy),
            None => format!("no user= (mod_wsgi used Apache's user): policies/users/{}.toml, named after the group", g.policy),
        },
    ));
    if let Some(group) = &g.unix_group {
        head.push(("group".into(), string(&file_name(group)), format!("group={group}: policies/groups/{}.toml", file_name(group))));
    }
    if let Some(v) = &g.venv {
        head.push(("venv".into(), string(v), "python-home".into()));
    }
    if !g.python_path.is_empty() {
        head.push(("python_path".into(), strings(&g.python_path), "python-path".into()));
    }
    if let Some(h) = &g.home {
        head.push(("home".into(), string(h), "home: the working directory".into()));
    }
    if let Some((bytes, key)) = memory {
        let mib = ((bytes as u64).div_ceil(1 << 20)).max(1);
        head.push(("memory_limit".into(), Value::from(mib as i64), format!("{key}={bytes} bytes, in MiB")));
    }
    if !env.is_empty() {
        head.push(("env".into(), inline(env.iter().map(|(k, v)| (k.as_str(), v.as_str()))), "lang= / locale=".into()));
    }
    head.append(&mut g.lines);
    g.lines = head;
    server_python(&mut g, im);
    Some(g)
}

