//! Moving from mod_wsgi: `wasgi import-apache` on the deployment guide's two
//! VirtualHost examples and on a bigger configuration (tests/fixtures/apache),
//! with `wasgi check` run on what it writes; and `wasgi apache-config` output
//! loaded into a real Apache httpd that serves an app through it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use wasgi_tests::apache::{free_port, make_traversable, Apache};
use wasgi_tests::{apps, check, own_interpreter, root, serve_command, wasgi_bin, TempDir, Wasgi};

fn fixtures() -> PathBuf {
    root().join("tests/fixtures/apache")
}

/// Runs the wasgi binary: (success, stdout, stderr).
fn wasgi(args: &[&str], cwd: &Path) -> (bool, String, String) {
    let output = Command::new(wasgi_bin()).args(args).current_dir(cwd).env("NO_COLOR", "1").output().expect("run wasgi");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

fn write(path: impl AsRef<Path>, text: &str) {
    let path = path.as_ref();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const APP: &str = "def application(environ, start_response):\n    start_response('200 OK', [])\n    return [b'ok']\n";

#[test]
fn the_guides_unix_example_imports_and_passes_check() {
    let tmp = TempDir::new("import-unix");
    let site = tmp.path().join("www/yourapplication");
    write(site.join("yourapplication.wsgi"), APP);
    let conf = read(fixtures().join("guide-unix.conf")).replace("/var/www/yourapplication", site.to_str().unwrap());
    write(tmp.path().join("site.conf"), &conf);

    let (ok, out, err) = wasgi(&["import-apache", "site.conf", "--out", "imported"], tmp.path());
    assert!(ok, "{out}\n{err}");
    for file in ["wasgi.toml", "policies/users/user1.toml", "policies/groups/group1.toml", "apache-wasgi.conf", "UNMAPPED.txt"] {
        assert!(out.contains(&format!("\n  imported/{file}\n")), "{file} is not listed as written:\n{out}");
        assert!(tmp.path().join("imported").join(file).is_file(), "{file} missing");
    }
    assert!(out.starts_with("Imported site.conf (1 group(s), 1 app(s)). Wrote:\n"), "{out}");
    assert!(out.contains("Next:\n  1. wasgi check --config imported/wasgi.toml\n  2. wasgi serve --config imported/wasgi.toml\n"), "{out}");
    assert!(out.contains("3. put imported/apache-wasgi.conf into Apache"), "{out}");
    assert!(!out.contains("Not mapped"), "nothing in the guide's example is unmapped:\n{out}");

    let toml = read(tmp.path().join("imported/wasgi.toml"));
    assert!(toml.contains("trusted_proxies = [\"127.0.0.1\"]"), "{toml}");
    assert!(toml.contains("[[group]]\nname = \"yourapplication\"\ninstances = 5 "), "threads=5 → 5 instances:\n{toml}");
    assert!(toml.contains("user = \"user1\"") && toml.contains("group = \"group1\""), "{toml}");
    assert!(toml.contains("reload_on_change = true"), "{toml}");
    assert!(
        toml.contains(&format!("[[app]]\nhost = [\"example.com\"]\nmount = \"/\"\nscript = \"{}/yourapplication.wsgi\"\ngroup = \"yourapplication\"\n", site.display())),
        "{toml}"
    );
    let policy = read(tmp.path().join("imported/policies/users/user1.toml"));
    assert!(policy.contains(&format!("[[grant]]\npath = \"{}\"\naccess = \"read\"", site.display())), "{policy}");
    assert!(read(tmp.path().join("imported/UNMAPPED.txt")).contains("Every mod_wsgi setting was mapped."));
    let apache = read(tmp.path().join("imported/apache-wasgi.conf"));
    assert!(apache.contains("<VirtualHost *:80>\n    ServerName example.com\n"), "{apache}");
    assert!(apache.contains("    ProxyPass / http://127.0.0.1:8000/ timeout=65\n"), "{apache}");

    let (ok, report) = check(&tmp.path().join("imported/wasgi.toml"));
    assert!(ok, "wasgi check refused the imported config:\n{report}");
    assert!(report.contains("(group \"yourapplication\": 5 instance(s), user user1, group group1"), "{report}");
    assert!(report.contains("  route  example.com/\n"), "{report}");
    assert!(report.contains("imported/policies/users/user1.toml:8"), "the grant comes from the written policy:\n{report}");
}

/// A deployment whose app directory is a symlink to the current release:
/// Apache followed it; the import says so and resolves it once
/// (follow_symlinks), so check passes and the note names the link.
#[test]
fn an_app_directory_behind_a_symlink_imports_with_follow_symlinks_and_passes_check() {
    let tmp = TempDir::new("import-symlink");
    let release = tmp.path().join("releases/42");
    write(release.join("yourapplication.wsgi"), APP);
    let site = tmp.path().join("www/yourapplication");
    std::fs::create_dir_all(site.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&release, &site).unwrap();
    let conf = read(fixtures().join("guide-unix.conf")).replace("/var/www/yourapplication", site.to_str().unwrap());
    write(tmp.path().join("site.conf"), &conf);

    let (ok, out, err) = wasgi(&["import-apache", "site.conf", "--out", "imported"], tmp.path());
    assert!(ok, "{out}\n{err}");
    let toml = read(tmp.path().join("imported/wasgi.toml"));
    assert!(toml.contains(&format!("follow_symlinks = true   # {} is a symlink (to {})", site.display(), release.display())), "{toml}");
    let policy = read(tmp.path().join("imported/policies/users/user1.toml"));
    assert!(policy.contains(&format!("path = \"{}\"\naccess = \"read\"\nfollow_symlinks = true", site.display())), "{policy}");
    assert!(read(tmp.path().join("imported/UNMAPPED.txt")).contains("group yourapplication: follow_symlinks = true"), "the note names the link");
    let (ok, report) = check(&tmp.path().join("imported/wasgi.toml"));
    assert!(ok, "wasgi check refused the imported config:\n{report}");
    assert!(report.contains(&format!("(follow_symlinks: resolved once, to {})", release.display())), "{report}");
}

#[test]
fn the_guides_windows_example_imports_and_says_what_check_will_report() {
    let tmp = TempDir::new("import-windows");
    std::fs::copy(fixtures().join("guide-windows.conf"), tmp.path().join("site.conf")).unwrap();
    let (ok, out, err) = wasgi(&["import-apache", "site.conf"], tmp.path());
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("  wasgi-import/wasgi.toml\n"), "the default output directory: {out}");
    assert!(
        out.contains("Paths that must exist on this machine:\n  site.conf:3: C:\\yourdir\\yourapp.wsgi (script): a Windows path: give the path of the same directory or file on this machine\n"),
        "{out}"
    );
    let predicted = "wasgi-import/wasgi.toml:22: app.script: \"C:\\\\yourdir\\\\yourapp.wsgi\" is not an absolute path";
    assert!(out.contains(&format!("`wasgi check` will report, until those are fixed:\n  {predicted}\n")), "{out}");

    let toml = read(tmp.path().join("wasgi-import/wasgi.toml"));
    assert!(toml.contains("script = \"C:\\\\yourdir\\\\yourapp.wsgi\"\ngroup = \"embedded\""), "the path is kept as written:\n{toml}");
    assert!(toml.contains("[[group]]\nname = \"embedded\"\nuser = \"embedded\""), "{toml}");
    assert!(out.contains("Mapped with a difference:\n  site.conf:3: WSGIScriptAlias / C:\\yourdir\\yourapp.wsgi: no daemon process group (mod_wsgi's embedded mode): served by the group \"embedded\", with its own policy\n"), "{out}");
    assert!(read(tmp.path().join("wasgi-import/policies/users/embedded.toml")).contains("path = \"C:\\\\yourdir\""));
    assert!(read(tmp.path().join("wasgi-import/UNMAPPED.txt")).contains("C:\\yourdir\\yourapp.wsgi (script): a Windows path"));

    // The prediction is what wasgi check says.
    let (ok, report) = check(Path::new(&tmp.path().join("wasgi-import/wasgi.toml")));
    assert!(!ok, "{report}");
    assert!(report.contains("wasgi.toml:22: app.script: \"C:\\\\yourdir\\\\yourapp.wsgi\" is not an absolute path"), "{report}");
}

/// The deployment guide's `yourapplication` package: `app` and `create_app`.
const YOURAPPLICATION: &str = "def create_app():\n    return app\n\n\
def app(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'hello from yourapplication']\n";

/// The guide's virtual host for a `.wsgi` at TMP/www/yourapplication,
/// imported into TMP/imported: the import's printed output.
fn import_the_guide(tmp: &TempDir, wsgi: &str) -> String {
    let site = tmp.path().join("www/yourapplication");
    write(site.join("yourapplication.wsgi"), wsgi);
    let conf = read(fixtures().join("guide-unix.conf")).replace("/var/www/yourapplication", site.to_str().unwrap());
    write(tmp.path().join("site.conf"), &conf);
    let (ok, out, err) = wasgi(&["import-apache", "site.conf", "--out", "imported"], tmp.path());
    assert!(ok, "{out}\n{err}");
    out
}

/// Serves what the import wrote (on our CPython 3.13, on a free port rather
/// than the import's 8000) and asks for the guide's example.com.
fn serve_imported(tmp: &TempDir) -> (Wasgi, wasgi_tests::http::Response) {
    own_interpreter();
    let config = tmp.path().join("imported/wasgi.toml");
    write(&config, &read(&config).replace("address = \"127.0.0.1:8000\"", "address = \"127.0.0.1:0\""));
    let mut command = serve_command(&config);
    command.args(["--interpreter", "cpython-3.13"]);
    let server = Wasgi::from_command(command).wait_ready();
    let r = server.request(b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n");
    (server, r)
}

/// The guide's `.wsgi` as written: `sys.path.insert(0, '/path/to/libs')`
/// before `from yourapplication import app as application`. The import
/// grants that directory read-only (and says so), and the written config
/// serves the app with no manual step.
#[test]
fn the_guides_sys_path_insert_is_granted_and_the_app_serves() {
    let tmp = TempDir::new("import-sys-path");
    let libs = tmp.path().join("libs");
    write(libs.join("yourapplication/__init__.py"), YOURAPPLICATION);
    let wsgi = format!("import sys\nsys.path.insert(0, '{}')\n\nfrom yourapplication import app as application\n", libs.display());
    let out = import_the_guide(&tmp, &wsgi);
    let script = tmp.path().join("www/yourapplication/yourapplication.wsgi");
    assert!(
        out.contains(&format!(
            "Directories the WSGI scripts put on sys.path, now granted read-only:\n  {}:2: sys.path.insert(0, '{libs}'): {libs}: granted read-only in policies/users/user1.toml\n",
            script.display(),
            libs = libs.display()
        )),
        "{out}"
    );
    assert!(!out.contains("Not mapped"), "{out}");
    let policy = read(tmp.path().join("imported/policies/users/user1.toml"));
    assert!(
        policy.contains(&format!(
            "# put on sys.path by {}:2: sys.path.insert(0, '{libs}')\n[[grant]]\npath = \"{libs}\"\naccess = \"read\"",
            script.display(),
            libs = libs.display()
        )),
        "{policy}"
    );
    assert!(read(tmp.path().join("imported/UNMAPPED.txt")).contains("Every mod_wsgi setting was mapped."));
    let (ok, report) = check(&tmp.path().join("imported/wasgi.toml"));
    assert!(ok && !report.contains("warning:"), "{report}");

    let (server, r) = serve_imported(&tmp);
    assert_eq!((r.status, r.text().as_str()), (200, "hello from yourapplication"), "{}", server.log.text());
}

/// The guide's virtualenv recipe (activate_this.py, then the factory
/// function): the virtualenv becomes the group's venv, granted read-only,
/// and the script's own exec of activate_this.py works inside the sandbox.
#[test]
fn the_guides_activate_this_becomes_the_groups_venv_and_the_app_serves() {
    let tmp = TempDir::new("import-activate-this");
    let venv = tmp.path().join("env");
    // What virtualenv writes (python -m venv writes no activate_this.py).
    write(
        venv.join("bin/activate_this.py"),
        "import os, site, sys\nbin_dir = os.path.dirname(os.path.abspath(__file__))\nbase = bin_dir[: -len('bin') - 1]\n\
         os.environ['VIRTUAL_ENV'] = base\nprev_length = len(sys.path)\n\
         for lib in '../lib/python3.13/site-packages'.split(os.pathsep):\n    site.addsitedir(os.path.realpath(os.path.join(bin_dir, lib)))\n\
         sys.path[:] = sys.path[prev_length:] + sys.path[0:prev_length]\nsys.real_prefix = sys.prefix\nsys.prefix = base\n",
    );
    write(venv.join("lib/python3.13/site-packages/yourapplication/__init__.py"), YOURAPPLICATION);
    let wsgi = format!(
        "activate_this = '{}/bin/activate_this.py'\nwith open(activate_this) as file_:\n    exec(file_.read(), dict(__file__=activate_this))\n\n\
         from yourapplication import create_app\napplication = create_app()\n",
        venv.display()
    );
    let out = import_the_guide(&tmp, &wsgi);
    let script = tmp.path().join("www/yourapplication/yourapplication.wsgi");
    assert!(
        out.contains(&format!(
            "  {}:2: with open(activate_this) as file_: venv = \"{}\" in group \"yourapplication\": the virtualenv is granted read-only and its site-packages put on sys.path\n",
            script.display(),
            venv.display()
        )),
        "{out}"
    );
    let toml = read(tmp.path().join("imported/wasgi.toml"));
    assert!(toml.contains(&format!("venv = \"{}\"   # activate_this.py in {}:2", venv.display(), script.display())), "{toml}");

    let (server, r) = serve_imported(&tmp);
    assert_eq!((r.status, r.text().as_str()), (200, "hello from yourapplication"), "{}", server.log.text());
}

/// What the import cannot know from the script's text (an environment
/// variable, a name computed at run time) and a directory that is not on
/// this machine are listed in UNMAPPED.txt with the script's line, and the
/// import no longer says everything was mapped.
#[test]
fn sys_path_lines_that_cannot_be_resolved_go_to_unmapped_with_their_line() {
    let tmp = TempDir::new("import-sys-path-unmapped");
    let wsgi = "import os, sys\n\
                sys.path.insert(0, os.environ['APP_LIBS'])\n\
                # sys.path.append('/in/a/comment')\n\
                sys.path.append('/no/such/libs')\n\
                from yourapplication import app as application\n";
    let out = import_the_guide(&tmp, wsgi);
    let script = tmp.path().join("www/yourapplication/yourapplication.wsgi");
    let s = script.display();
    let expected = [
        format!(
            "{s}:2: sys.path.insert(0, os.environ['APP_LIBS']): os.environ[...] is an environment variable, not a path in the script: \
             the directory it puts on sys.path is not known from the text; grant it read-only in policies/users/user1.toml ([[grant]] path = \"...\", access = \"read\")"
        ),
        format!(
            "{s}:4: sys.path.append('/no/such/libs'): /no/such/libs (sys.path) does not exist on this machine: correct the script or the path, \
             then grant the directory in policies/users/user1.toml ([[grant]] path = \"/no/such/libs\", access = \"read\")"
        ),
    ];
    let listed = read(tmp.path().join("imported/UNMAPPED.txt"));
    assert!(!listed.contains("Every mod_wsgi setting was mapped"), "{listed}");
    assert!(listed.contains(&format!("  {}\n  {}\n", expected[0], expected[1])), "{listed}");
    assert!(out.contains(&format!("Not mapped (also in UNMAPPED.txt):\n  {}\n  {}\n", expected[0], expected[1])), "{out}");
    assert!(!listed.contains("/in/a/comment"), "{listed}");
}

/// tests/fixtures/apache/big copied into a scratch directory, its /srv/
/// paths moved there, with the directories and scripts it names.
fn big_site(tmp: &TempDir) -> PathBuf {
    let from = fixtures().join("big");
    let to = tmp.path().join("apache");
    let srv = tmp.path().join("srv");
    for rel in ["apache2.conf", "conf.d/shop-admin.conf", "sites/blog.conf"] {
        write(to.join(rel), &read(from.join(rel)).replace("/srv/", &format!("{}/", srv.display())));
    }
    for dir in ["shop/src", "shop/lib", "shop/var", "shop/venv/lib/python3.12/site-packages", "venvs/default/lib/python3.12/site-packages"] {
        std::fs::create_dir_all(srv.join(dir)).unwrap();
    }
    for script in ["shop/wsgi/shop.wsgi", "shop/wsgi/api.wsgi", "shop/admin/admin.wsgi", "blog/app/blog.wsgi", "blog/app/feeds.wsgi"] {
        write(srv.join(script), APP);
    }
    write(srv.join("shop/static/robots.txt"), "User-agent: *\n");
    srv
}

#[test]
fn a_bigger_configuration_with_includes_imports_and_passes_check() {
    let tmp = TempDir::new("import-big");
    let srv = big_site(&tmp);
    let (ok, out, err) = wasgi(&["import-apache", "apache/apache2.conf", "--out", "out"], tmp.path());
    assert!(ok, "{out}\n{err}");
    assert!(out.starts_with("Imported apache/apache2.conf (3 group(s), 5 app(s)). Wrote:\n"), "{out}");
    // Unmapped items are printed and written, each with file and line.
    let unmapped = [
        "apache/apache2.conf:23: WSGIDaemonProcess shop deadlock-timeout=60: no wasgi equivalent",
        &format!(
            "apache/apache2.conf:38: WSGIScriptAliasMatch ^/legacy/([^/]+) {}/shop/legacy/$1.wsgi: a regular expression: wasgi mounts are literal paths; add an [[app]] per mount",
            srv.display()
        ),
    ];
    let listed = read(tmp.path().join("out/UNMAPPED.txt"));
    let expected = format!("Not mapped (no wasgi equivalent: check whether the apps rely on it):\n  {}\n  {}\n", unmapped[0], unmapped[1]);
    assert!(listed.contains(&expected), "{listed}");
    assert!(out.contains(&format!("Not mapped (also in UNMAPPED.txt):\n  {}\n  {}\n", unmapped[0], unmapped[1])), "{out}");
    assert!(!listed.contains("WSGIPassAuthorization"), "{listed}");
    assert!(listed.contains("apache/apache2.conf:21: ErrorLog ${APACHE_LOG_DIR}/shop-error.log: in the VirtualHost"), "{listed}");

    let toml = read(tmp.path().join("out/wasgi.toml"));
    let s = srv.display();
    for expected in [
        "graceful_timeout = 20 ".to_owned(),
        "[http]\nlisten_backlog = 200 ".to_owned(),
        // Every limit of the shop's WSGIDaemonProcess, written over five continued lines.
        format!(
            "[[group]]\nname = \"shop\"\ninstances = 8   # processes=2 × threads=4: each guest is single-threaded\nuser = \"shop\"   # user=shop: policies/users/shop.toml\n\
             group = \"www-apps\"   # group=www-apps: policies/groups/www-apps.toml\nvenv = \"{s}/shop/venv\"   # python-home\n\
             python_path = [\"{s}/shop/src\", \"{s}/shop/lib\"]   # python-path\nhome = \"{s}/shop/var\"   # home: the working directory\n\
             memory_limit = 512   # memory-limit=536870912 bytes, in MiB\nmaximum_requests = 1000   # maximum-requests=1000\n\
             inactivity_timeout = 300   # inactivity-timeout=300\nrequest_timeout = 45   # request-timeout=45\ncpu_time_limit = 30   # cpu-time-limit=30\n\
             queue_timeout = 10   # queue-timeout=10\nreload_on_change = true   # WSGIScriptReloading On (mod_wsgi's default)\n\
             restrict_stdout = true   # WSGIRestrictStdout On (apache/apache2.conf:10)\n"
        ),
        // The group from the included conf.d file, and the blog's, which takes the server's python home.
        "[[group]]\nname = \"shop-admin\"\ninstances = 2 ".to_owned(),
        format!("name = \"blog\"\ninstances = 3   # processes=1 × threads=3: each guest is single-threaded\nuser = \"blog\"   # user=blog: policies/users/blog.toml\npython_path = [\"{s}/blog/app\"]   # python-path\nvenv = \"{s}/venvs/default\"   # WSGIPythonHome (apache/apache2.conf:9)\nreload_on_change = false   # WSGIScriptReloading Off (apache/sites/blog.conf:10)\n"),
        // Several WSGIScriptAlias per host, access control of both Apache versions, static files.
        format!("host = [\"shop.example.com\", \"www.shop.example.com\", \"*.shop-cdn.example.com\"]\nmount = \"/\"\nscript = \"{s}/shop/wsgi/shop.wsgi\"\ngroup = \"shop\"\ndeny = [\"203.0.113.0/24\"]\nstatic = {{ \"/static\" = \"{s}/shop/static\", \"/robots.txt\" = \"{s}/shop/static/robots.txt\" }}"),
        format!("mount = \"/api\"\nscript = \"{s}/shop/wsgi/api.wsgi\"\ngroup = \"shop\"\ndeny = [\"203.0.113.0/24\"]\n"),
        format!("mount = \"/admin\"\nscript = \"{s}/shop/admin/admin.wsgi\"\ngroup = \"shop-admin\"\nallow = [\"10.1.0.0/16\", \"192.168.0.0/16\"]\n"),
        format!(
            "host = [\"blog.example.org\"]\nmount = \"/feeds\"\nscript = \"{s}/blog/app/feeds.wsgi\"\ngroup = \"blog\"\n\
             pass_authorization = true   # WSGIPassAuthorization On (apache/sites/blog.conf:6)\ndeny = [\"198.51.100.0/24\"]\n"
        ),
    ] {
        assert!(toml.contains(&expected), "missing:\n{expected}\nin:\n{toml}");
    }
    let shop = read(tmp.path().join("out/policies/users/shop.toml"));
    assert!(shop.starts_with("# Imported by `wasgi import-apache` for group(s) shop-admin, shop."), "{shop}");
    for dir in ["shop/admin", "shop/src", "shop/venv", "shop/wsgi", "shop/lib", "shop/var"] {
        assert!(shop.contains(&format!("path = \"{s}/{dir}\"\naccess = \"read\"")), "{dir} not granted:\n{shop}");
    }
    assert!(shop.contains("# home of group shop: read-only here; if the app writes there, make it access = \"write\""), "{shop}");
    let apache = read(tmp.path().join("out/apache-wasgi.conf"));
    assert!(apache.contains("    ServerName shop.example.com\n    ServerAlias www.shop.example.com *.shop-cdn.example.com\n"), "{apache}");
    assert!(apache.contains("    ProxyPass /admin http://127.0.0.1:8000/admin timeout=305\n"), "{apache}");
    assert!(apache.contains(&format!("    ProxyPass /static !\n    Alias /robots.txt {s}/shop/static/robots.txt\n")), "{apache}");

    let (ok, report) = check(&tmp.path().join("out/wasgi.toml"));
    assert!(ok, "wasgi check refused the imported config:\n{report}");
    assert!(report.contains("  route  *.shop-cdn.example.com/admin\n  clients  allow 10.1.0.0/16, 192.168.0.0/16\n"), "{report}");
    assert!(report.contains("(group \"shop\": 8 instance(s), user shop, group www-apps, memory 512 MiB)"), "{report}");
    assert!(report.contains(&format!("  static /static -> {s}/shop/static (served by Apache")), "{report}");
}

#[test]
fn a_missing_include_is_an_error_with_file_and_line() {
    let tmp = TempDir::new("import-missing");
    write(tmp.path().join("site.conf"), "ServerName x\n\nInclude conf/nope.conf\n");
    let (ok, out, err) = wasgi(&["import-apache", "site.conf"], tmp.path());
    assert!(!ok, "{out}");
    let expected = "site.conf:3: Include conf/nope.conf: no such file (looked for conf/nope.conf)";
    assert!(err.contains(expected), "{err}");
    assert!(!tmp.path().join("wasgi-import").exists(), "nothing is written on an error");

    write(tmp.path().join("plain.conf"), "<VirtualHost *:80>\nServerName x\n</VirtualHost>\n");
    let (ok, _, err) = wasgi(&["import-apache", "plain.conf"], tmp.path());
    assert!(!ok);
    assert!(err.contains("plain.conf: no WSGIScriptAlias found (followed every Include): nothing to import"), "{err}");
}

/// `wasgi apache-config` for a config with two mounts and a static
/// directory, loaded into a real Apache: `apache2 -t` accepts it, and the
/// app answers through it with the client's view of the request.
#[test]
fn apache_config_output_serves_an_app_through_a_real_apache() {
    let tmp = TempDir::new("apache-config");
    make_traversable(tmp.path());
    write(tmp.path().join("static/hello.txt"), "hello from Apache\n");
    let port = free_port();
    let script = apps().join("features.wsgi");
    let config = tmp.path().join("wasgi.toml");
    write(
        &config,
        &format!(
            "trusted_proxies = [\"127.0.0.1\"]\n\n[[listen]]\naddress = \"127.0.0.1:{port}\"\n\n[[group]]\nname = \"features\"\ninstances = 1\nrequest_timeout = 20\n\n\
             [[app]]\nhost = [\"app.example\", \"www.app.example\"]\nscript = \"{script}\"\ngroup = \"features\"\nstatic = {{ \"/static\" = \"{static}\" }}\n\n\
             [[app]]\nhost = [\"app.example\", \"www.app.example\"]\nmount = \"/sub\"\nscript = \"{script}\"\ngroup = \"features\"\n",
            script = script.display(),
            static = tmp.path().join("static").display()
        ),
    );
    let (ok, site, err) = wasgi(&["apache-config", "--config", config.to_str().unwrap(), "--vhost-address", "127.0.0.1:*"], tmp.path());
    assert!(ok, "{site}\n{err}");
    assert!(err.is_empty(), "no warning when wasgi trusts Apache: {err}");
    assert!(site.contains(&format!("    ProxyPass /sub http://127.0.0.1:{port}/sub timeout=25\n")), "{site}");

    let apache = Apache::new("apache-config");
    let (accepted, output) = apache.config_test(&site);
    assert!(accepted, "apache2 -t refused the generated config:\n{output}\n{site}");
    let apache = apache.start(&site);
    let server = Wasgi::serve(&config);

    // A client that claims to be elsewhere, over https, through RFC 7239 too.
    let r = apache.request(
        b"GET /environ HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-Proto: https\r\nForwarded: for=198.51.100.9;proto=https;host=evil.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    let env: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(env["HTTP_HOST"], "app.example");
    assert_eq!(env["SERVER_NAME"], "app.example");
    // Apache's SERVER_PORT (what mod_wsgi reported): the Host header's port, else the scheme's.
    assert_eq!(env["SERVER_PORT"], "80", "{env}");
    assert_eq!(env["wsgi.url_scheme"], "http", "Apache sets X-Forwarded-Proto from its own scheme: {env}");
    assert_eq!(env["REMOTE_ADDR"], "127.0.0.1", "{env}");
    assert!(env.get("HTTP_FORWARDED").is_none(), "the client's Forwarded header is dropped: {env}");
    assert_eq!((env["SCRIPT_NAME"].as_str(), env["PATH_INFO"].as_str()), (Some(""), Some("/environ")));

    let host = format!("www.app.example:{}", apache.port);
    let r = apache.get("/sub/environ", &host);
    assert_eq!(r.status, 200, "{}", r.text());
    let env: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!((env["SCRIPT_NAME"].as_str(), env["PATH_INFO"].as_str()), (Some("/sub"), Some("/environ")));
    assert_eq!(env["HTTP_HOST"], host.as_str());
    assert_eq!(env["SERVER_NAME"], "www.app.example");
    assert_eq!(env["SERVER_PORT"], apache.port.to_string(), "{env}");

    // Static files come from Apache, never from wasgi.
    let r = apache.get("/static/hello.txt", "app.example");
    assert_eq!((r.status, r.text().as_str()), (200, "hello from Apache\n"), "{}", apache.error_log());
    apache.wait_for_access_log("GET /static/hello.txt HTTP/1.1\" 200", Duration::from_secs(10));
    assert!(!server.log.text().contains("/static/hello.txt"), "wasgi saw the static request:\n{}", server.log.text());

    // Without trusted_proxies, the output says so and so does stderr.
    let untrusted = tmp.path().join("untrusted.toml");
    write(&untrusted, &read(&config).replace("trusted_proxies = [\"127.0.0.1\"]\n", ""));
    let (ok, site, err) = wasgi(&["apache-config", "--config", untrusted.to_str().unwrap()], tmp.path());
    assert!(ok);
    assert!(site.contains("# !!! wasgi.toml has no trusted_proxies entry for Apache. Add, at its top level:\n# !!!     trusted_proxies = [\"127.0.0.1\"]\n"), "{site}");
    assert!(err.contains("has no trusted_proxies entry for Apache; add `trusted_proxies = [\"127.0.0.1\"]`"), "{err}");
}

/// The Apache side written by an import passes `apache2 -t` as it is.
#[test]
fn the_imported_apache_snippet_passes_apache2_t() {
    let tmp = TempDir::new("import-apache-t");
    big_site(&tmp);
    let (ok, out, err) = wasgi(&["import-apache", "apache/apache2.conf", "--out", "out"], tmp.path());
    assert!(ok, "{out}\n{err}");
    let site = read(tmp.path().join("out/apache-wasgi.conf"));
    let apache = Apache::new("import-t");
    let (accepted, output) = apache.config_test(&site);
    assert!(accepted, "apache2 -t refused apache-wasgi.conf:\n{output}\n{site}");
}
