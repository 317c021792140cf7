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
//!
//! The steps, one module each, in the order [`import`] runs them:
//!
//! - [`scan`]: the directive tree walked once: mod_wsgi settings per scope,
//!   script aliases, daemon processes, virtual hosts;
//! - [`daemon`]: each `WSGIDaemonProcess` → a `[[group]]`;
//! - [`apps`]: each `WSGIScriptAlias` → an `[[app]]`, with the settings in
//!   force for it, its group, and what its script puts on `sys.path`;
//! - [`access`]: `Order`/`Allow`/`Deny` and `Require` → `allow`/`deny`;
//! - [`render`]: the files, as TOML documents (toml_edit) whose comments
//!   say where each value came from, and the Apache snippet;
//! - [`paths`]: paths as Apache writes them (Windows ones included).

mod access;
mod apps;
mod daemon;
mod paths;
mod render;
mod scan;

use std::path::{Path, PathBuf};

use anyhow::Result;

use self::apps::App;
use self::daemon::Group;
use self::paths::{is_windows_path, parent_of, symlink_in};
use self::scan::{item, leftovers, Importer};
use super::conf::{Directive, Reader};
use super::snippet;
use crate::spec::listen::ListenAddr;

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

/// Reads `file` (and what it includes) and maps it.
pub fn import(file: &Path, options: &Options) -> Result<Imported> {
    let tree = Reader::new(options.server_root.clone()).read(file)?;
    map(&tree, file, options)
}

fn map(tree: &[Directive], file: &Path, options: &Options) -> Result<Imported> {
    let mut im = Importer::default();
    im.scan(tree, None);
    if im.aliases.is_empty() {
        anyhow::bail!("{}: no WSGIScriptAlias found (followed every Include): nothing to import", file.display());
    }
    let daemon::Daemons { mut groups, graceful, backlog } = daemon::daemons(&mut im);
    let mut apps = apps::map_apps(&mut im, &mut groups);
    apps::place_statics(&mut im, &mut apps);

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

    daemon::from_apps(&mut im, &mut groups);
    let granted = apps::script_paths(&apps, &mut groups, &mut im.unmapped);
    follow_symlinks(&mut im, &mut groups, &apps);
    let missing = missing_paths(&groups, &apps);

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

    let server = render::Server { trusted: &trusted, trusted_from: im.trusted.first().map(|(_, d)| *d), graceful: &graceful, backlog: &backlog };
    let wasgi_toml = render::render_config(file, options, &server, &groups, &apps);
    let mut files = vec![(PathBuf::from("wasgi.toml"), wasgi_toml)];
    files.extend(render::render_policies(&groups, &apps));

    // The Apache side, from the same generator `wasgi apache-config` uses.
    let config = render::in_memory_config(options, &groups, &apps, &trusted, &backlog);
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
    let report = render::unmapped_text(file, &imported);
    imported.files.push((PathBuf::from("UNMAPPED.txt"), report));
    Ok(imported)
}

/// Apache followed symlinks in these paths; wasgi refuses them in a grant
/// unless told to resolve them once (grant_dir). Say so on the group, and
/// in the notes, rather than leave `wasgi check` to fail.
fn follow_symlinks(im: &mut Importer<'_>, groups: &mut [Group], apps: &[App]) {
    for (i, g) in groups.iter_mut().enumerate() {
        let mut paths: Vec<String> = apps.iter().filter(|a| a.group == i).map(|a| parent_of(&a.script)).collect();
        paths.extend(g.python_path.iter().cloned());
        paths.extend(g.venv.iter().cloned());
        paths.extend(g.script_grants.iter().map(|(p, _)| p.clone()));
        if let Some((link, target)) = paths.iter().find_map(|p| symlink_in(p)) {
            g.lines.push((
                "follow_symlinks".into(),
                toml_edit::Value::from(true),
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
}

/// The paths the configuration names that do not exist on this machine
/// (or are Windows paths, or relative).
fn missing_paths(groups: &[Group], apps: &[App]) -> Vec<Item> {
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
    for app in apps {
        let at = app.origin.split(": ").next().unwrap_or_default();
        exists(&app.script, "script".into(), at);
        for (url, dir) in &app.statics {
            exists(dir, format!("static {url}"), at);
        }
    }
    for g in groups {
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
    missing
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

    /// Paths and names with quotes, backslashes and non-ASCII letters come
    /// back from the written TOML exactly as Apache read them, and the files
    /// pass wasgi's own parser.
    #[test]
    fn quotes_backslashes_and_non_ascii_round_trip() {
        let script = r#"/srv/q"uote/back\slash/café ☕/app.wsgi"#;
        let libs = r#"/srv/π\lib"#;
        let home = r#"/srv/hö"me"#;
        let statics = r#"/srv/st"atic ü"#;
        let conf = format!(
            "WSGIDaemonProcess shop user=josé python-path={libs} \"home={home_q}\" lang=fr_FR.UTF-8 \"display-name=nom \\\"fou\\\"\"\n\
             <VirtualHost *:80>\nServerName shop.example\n\
             WSGIScriptAlias /ünï \"{script_q}\" process-group=shop\n\
             Alias /ünï/stätic/ \"{statics_q}/\"\n\
             </VirtualHost>\n",
            home_q = home.replace('"', "\\\""),
            script_q = script.replace('"', "\\\""),
            statics_q = statics.replace('"', "\\\""),
        );
        let im = import_text(&conf);
        let text = file(&im, "wasgi.toml");
        let parsed: toml::Table = toml::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let group = &parsed["group"].as_array().unwrap()[0];
        assert_eq!(group["name"].as_str(), Some("shop"));
        assert_eq!(group["user"].as_str(), Some("jos_"), "{text}");
        assert_eq!(group["python_path"].as_array().unwrap()[0].as_str(), Some(libs), "{text}");
        assert_eq!(group["home"].as_str(), Some(home), "{text}");
        assert_eq!(group["env"]["LANG"].as_str(), Some("fr_FR.UTF-8"), "{text}");
        let app = &parsed["app"].as_array().unwrap()[0];
        assert_eq!(app["script"].as_str(), Some(script), "{text}");
        assert_eq!(app["mount"].as_str(), Some("/ünï"), "{text}");
        assert_eq!(app["static"]["/ünï/stätic"].as_str(), Some(statics), "{text}");
        assert!(text.contains("user = \"jos_\"   # user=josé: policies/users/jos_.toml\n"), "{text}");
        assert!(text.contains("# /etc/apache2/site.conf:4: WSGIScriptAlias /ünï "), "the origin comment keeps the text: {text}");

        let config = crate::config::from_text(Path::new("/tmp/out/wasgi.toml"), text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        assert_eq!(config.apps[0].script, PathBuf::from(script));
        assert_eq!(config.apps[0].static_dirs, [("/ünï/stätic".to_owned(), PathBuf::from(statics))]);
        assert_eq!(config.groups[0].python_path, [PathBuf::from(libs)]);

        let policy = file(&im, "policies/users/jos_.toml");
        let parsed: toml::Table = toml::from_str(policy).unwrap_or_else(|e| panic!("{e}\n{policy}"));
        let grants: Vec<&str> = parsed["grant"].as_array().unwrap().iter().map(|g| g["path"].as_str().unwrap()).collect();
        assert_eq!(grants, [r#"/srv/q"uote/back\slash/café ☕"#, libs, home], "{policy}");
    }

    /// A WSGIScriptAlias outside any VirtualHost serves every virtual
    /// host's names; two virtual hosts sharing a ServerName (HTTP and HTTPS)
    /// give that name once, so the file passes wasgi's own checks instead of
    /// routing the app against itself.
    #[test]
    fn a_server_wide_alias_lists_a_shared_server_name_once() {
        let im = import_text(
            "WSGIScriptAlias / /srv/app/app.wsgi
             <VirtualHost *:80>
ServerName shop.example
ServerAlias www.shop.example
</VirtualHost>
             <VirtualHost *:443>
ServerName shop.example
</VirtualHost>
",
        );
        let toml = file(&im, "wasgi.toml");
        let parsed: toml::Table = toml::from_str(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let hosts: Vec<&str> = parsed["app"].as_array().unwrap()[0]["host"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
        assert_eq!(hosts, ["*", "shop.example", "www.shop.example"], "{toml}");
        crate::config::from_text(Path::new("/tmp/out/wasgi.toml"), toml).unwrap_or_else(|e| panic!("{e:?}\n{toml}"));
    }

    /// WSGIPythonOptimize and lang=/locale= share the group's one `env`
    /// table (they were two `env` keys: a file `wasgi check` refused).
    #[test]
    fn python_optimize_and_lang_share_one_env() {
        let im = import_text(
            "WSGIPythonOptimize 1\nWSGIDaemonProcess app lang=C.UTF-8 locale=de_DE\n\
             <VirtualHost *:80>\nWSGIScriptAlias / /srv/app/app.wsgi process-group=app\n</VirtualHost>\n",
        );
        let toml = file(&im, "wasgi.toml");
        assert!(
            toml.contains("env = { LANG = \"C.UTF-8\", LC_ALL = \"de_DE\", PYTHONOPTIMIZE = \"1\" }   # lang= / locale=; WSGIPythonOptimize (/etc/apache2/site.conf:1)\n"),
            "{toml}"
        );
        let config = crate::config::from_text(Path::new("/tmp/out/wasgi.toml"), toml).unwrap_or_else(|e| panic!("{e:?}\n{toml}"));
        assert_eq!(config.groups[0].env.len(), 3, "{toml}");
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

