//! `wasgi check`: the plan's interpreters located, and the report of each
//! group's capabilities, native extensions and each app's routes.

use std::fmt::Write as _;

use anyhow::Result;

use crate::config::plan::Plan;
use crate::engine::args::InterpreterArgs;
use crate::engine::extensions;
use crate::engine::interpreter::Interpreter;
use crate::spec::interpreter::Choice;

/// Every interpreter the plan's groups run, found (fetched or built if
/// missing, as `wasgi serve` would), so that one which cannot be had fails
/// `wasgi check` rather than the server's start.
pub fn locate_interpreters(plan: &Plan, args: &InterpreterArgs) -> Result<Vec<(Choice, Interpreter)>> {
    let mut found: Vec<(Choice, Interpreter)> = Vec::new();
    for a in &plan.apps {
        let choice = a.spec.interpreter;
        if found.iter().any(|(c, _)| *c == choice) {
            continue;
        }
        let python = args
            .locate(choice)
            .map_err(|e| anyhow::anyhow!("{}: group {:?} runs {choice}, which cannot be used: {e:#}", plan.config.file.display(), a.group.name))?;
        found.push((choice, python));
    }
    Ok(found)
}

/// The `wasgi check` report: each group's interpreter, native extensions and
/// capability table and each app's route. It builds nothing.
pub fn report(plan: &Plan, interpreters: &[(Choice, Interpreter)]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: OK", plan.config.file.display());
    let listen: Vec<String> = plan
        .config
        .listen
        .iter()
        .map(|l| {
            let mut text = l.url(&l.addr);
            if let Some(mode) = l.socket_mode {
                text.push_str(&format!(" (mode {mode:04o})"));
            }
            if let Some(tls) = &l.tls {
                text.push_str(&format!(" (certificate {})", tls.cert.display()));
            }
            text
        })
        .collect();
    let _ = writeln!(out, "listen: {}", listen.join(", "));
    if let Some(admin) = &plan.config.admin {
        let _ = writeln!(out, "admin: {admin} (/metrics, /status, /live, /ready)");
    }
    let logging = &plan.config.logging;
    let _ = writeln!(out, "access log: {} ({} format); error log: stderr ({})", logging.access_log, logging.access_format, logging.format);
    for a in &plan.apps {
        let g = &a.group;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "app {} (group {:?}: {} instance(s), user {}, group {}, memory {} MiB)",
            a.app.script.display(),
            g.name,
            g.instances,
            g.user.as_deref().unwrap_or("-"),
            g.group.as_deref().unwrap_or("-"),
            a.spec.memory_limit >> 20,
        );
        if let Some((choice, python)) = interpreters.iter().find(|(c, _)| *c == a.spec.interpreter) {
            let _ = writeln!(out, "  interpreter  {choice} (CPython {}, {})", python.version, python.path.display());
            let snapshot = match (python.reactor.is_some(), g.snapshot) {
                (true, true) => "on: instances start from a snapshot taken after the app's import",
                (true, false) => "off: every instance imports the app (snapshot = true starts them from a snapshot)",
                (false, _) => "not available on this interpreter: every instance imports the app",
            };
            let _ = writeln!(out, "  snapshot  {snapshot}");
            if python.reactor.is_some() && g.snapshot && !g.warmup.is_empty() {
                let _ = writeln!(out, "  warmup  GET {} before the snapshot ({} times each)", g.warmup.join(", "), crate::spec::limits::WARMUP_ROUNDS);
            }
            report_extensions(&mut out, &a.spec.python_path, *choice, python);
        }
        if g.isolation == crate::spec::limits::Isolation::Request {
            let _ = writeln!(out, "  isolation  request: a fresh instance for every request");
        }
        let mount = if a.app.mount.is_empty() { "/" } else { &a.app.mount };
        for host in &a.app.hosts {
            let _ = writeln!(out, "  route  {host}{mount}");
        }
        for (url, dir) in &a.app.static_dirs {
            let _ = writeln!(out, "  static {url} -> {} (served by Apache, see wasgi apache-config)", dir.display());
        }
        if !a.app.access.is_open() {
            let _ = writeln!(out, "  clients  {}", describe_access(&a.app.access));
        }
        if g.restrict_stdout {
            let _ = writeln!(out, "  stdout  restricted (writes raise an error)");
        }
        let width = a.capabilities.iter().map(|c| c.path.as_os_str().len()).max().unwrap_or(4).max(4);
        let _ = writeln!(out, "  {:<width$}  {:<6}  granted by", "path", "access");
        for c in &a.capabilities {
            let _ = writeln!(out, "  {:<width$}  {:<6}  {}", c.path.display(), if c.write { "write" } else { "read" }, c.origin);
            if c.follow_symlinks && c.real_path() != c.path {
                let _ = writeln!(out, "  {:<width$}  {:<6}  (follow_symlinks: resolved once, to {})", "", "", c.real_path().display());
            }
        }
        report_network(&mut out, &a.spec.network);
    }
    for w in &plan.warnings {
        let _ = writeln!(out, "\nwarning: {w}");
    }
    out
}

/// The native extension modules of the group's environment, each with what
/// becomes of it: built into the interpreter (or to be, on the first
/// start), failed to build, or without a recipe and so unusable.
fn report_extensions(out: &mut String, python_path: &[std::path::PathBuf], choice: Choice, python: &Interpreter) {
    let environment = extensions::scan(python_path);
    let variant = match (choice, environment.to_build.is_empty()) {
        (Choice::Cpython313, false) => Some(extensions::built_variant(python, &environment.to_build)),
        _ => None,
    };
    for m in &environment.modules {
        let package_name = m.package.as_ref().map_or(m.module.split('.').next().unwrap_or_default(), |(name, _)| name.as_str());
        // A recipe's package as PyPI spells it; else as it is installed.
        let owner = match &m.package {
            Some((name, version)) => format!(" ({} {version})", extensions::recipe(name).filter(|_| m.recipe).map_or(name.as_str(), |r| r.package.as_str())),
            None => String::new(),
        };
        let status = match (m.recipe, &variant) {
            (false, _) if let Some(why) = m.not_built => format!("not built ({why}): importing it fails in the sandbox"),
            (false, _) => format!(
                "no recipe — cannot load in the sandbox; unless {package_name} falls back to pure Python, use a pure-Python alternative, \
                 or ask for a recipe (wasgi builds: {})",
                extensions::recipe_packages().iter().map(|(p, _)| *p).collect::<Vec<_>>().join(", ")
            ),
            (true, None) => format!("not built for {choice} (only cpython-3.13 links native extensions in): {package_name} runs in pure Python if it can"),
            (true, Some(Err(e))) => format!("its interpreter variant is unreadable: {e:#}"),
            (true, Some(Ok(None))) => "will be built on first start".to_owned(),
            (true, Some(Ok(Some(v)))) if v.has(&m.module) => "built in".to_owned(),
            (true, Some(Ok(Some(v)))) => match v.failure(package_name) {
                Some(failed) => format!("failed to build: {}, see {}", failed.error, failed.log),
                None => format!("not in the interpreter variant built for this environment ({})", v.dir.display()),
            },
        };
        let _ = writeln!(out, "  extension  {}{owner}: {status}", m.module);
    }
    // What the variant links in beyond the host's files (a package installed
    // without its compiled modules still gets them).
    match &variant {
        Some(Ok(Some(v))) => {
            for p in &v.packages {
                for module in p.modules.iter().filter(|module| !environment.modules.iter().any(|m| m.module == **module)) {
                    let _ = writeln!(out, "  extension  {module} ({} {}): built in", p.name, p.version);
                }
            }
        }
        Some(Ok(None)) => {
            for (name, version) in environment.to_build.iter().filter(|(name, _)| !environment.modules.iter().any(|m| m.recipe && m.package.as_ref().is_some_and(|(p, _)| extensions::normalize(p) == *name))) {
                let package = extensions::recipe(name).map_or(name.as_str(), |r| r.package.as_str());
                let _ = writeln!(out, "  extension  {package} {version}: its recipe's modules will be built on first start");
            }
        }
        _ => {}
    }
}

/// The group's connect grants, each with its origin, and their limits.
fn report_network(out: &mut String, network: &crate::spec::connect::Network) {
    if network.rules.is_empty() {
        let _ = writeln!(out, "  connect  none: the app cannot open network connections (grant them with [[connect]] to = \"HOST:PORT\")");
        return;
    }
    let width = network.rules.iter().map(|r| r.grant.to_string().len()).max().unwrap_or(0).max(7);
    let _ = writeln!(out, "  {:<width$}  granted by", "connect");
    for rule in &network.rules {
        let _ = writeln!(out, "  {:<width$}  {}", rule.grant.to_string(), rule.origin);
    }
    let ca = network.ca_file.as_ref().map_or("none found on this host (ca_file names one)".to_owned(), |f| f.display().to_string());
    let _ = writeln!(
        out,
        "  connections  at most {} open at once for the group, connect timeout {}s, CA certificates {ca}",
        network.max_connections,
        network.connect_timeout.as_secs()
    );
}

fn describe_access(access: &crate::spec::access::Access) -> String {
    let list = |set: &crate::spec::access::AddressSet| {
        if set.all {
            "all".to_owned()
        } else {
            set.nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
        }
    };
    match (!access.allow.is_empty(), !access.deny.is_empty()) {
        (true, true) => format!("allow {}; deny {}", list(&access.allow), list(&access.deny)),
        (true, false) => format!("allow {}", list(&access.allow)),
        (false, true) => format!("deny {}", list(&access.deny)),
        (false, false) => "all".to_owned(),
    }
}

