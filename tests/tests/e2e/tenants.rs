//! Several tenants on one server (`wasgi serve` with wasgi.toml and
//! policies/): routing by Host header and mount, and no tenant able to reach
//! another's files. Also `wasgi check`: the capability table and the
//! config and policy errors, each naming file, line and key.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasgi_tests::{check, root, TempDir, Wasgi};

/// Two tenants, alice and bob, each with an app, a data directory (her only
/// write grant) and a secret; plus a second app of alice's mounted at /admin.
struct Tenants {
    dir: TempDir,
}

impl Tenants {
    fn new() -> Tenants {
        let dir = TempDir::new("tenants");
        for tenant in ["alice", "bob"] {
            let home = dir.path().join(tenant);
            std::fs::create_dir_all(home.join("data")).unwrap();
            std::fs::copy(root().join("examples/tenants/alice/app.wsgi"), home.join("app.wsgi")).unwrap();
            std::fs::write(home.join("data/secret.txt"), format!("{tenant}'s secret")).unwrap();
            std::fs::write(home.join("canary.txt"), format!("{tenant}'s canary")).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("alice/admin")).unwrap();
        std::fs::copy(root().join("examples/tenants/alice/app.wsgi"), dir.path().join("alice/admin/app.wsgi")).unwrap();
        let t = Tenants { dir };
        t.write_policy("users/alice.toml", &format!("[[grant]]\npath = \"{}\"\naccess = \"write\"\n", t.path("alice/data").display()));
        t.write_policy("users/bob.toml", &format!("[[grant]]\npath = \"{}\"\naccess = \"write\"\n", t.path("bob/data").display()));
        t.write_policy("groups/tenants.toml", "[limits]\nmemory_limit = 256\n");
        t.write_config(&t.config_text());
        t
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn config(&self) -> PathBuf {
        self.path("wasgi.toml")
    }

    fn config_text(&self) -> String {
        format!(
            r#"[[listen]]
address = "127.0.0.1:0"

[[group]]
name = "alice"
instances = 1
user = "alice"
group = "tenants"
env = {{ APP_MODE = "alice-mode" }}

[[group]]
name = "bob"
instances = 1
user = "bob"
group = "tenants"

[[app]]
host = ["alice.example", "*.alice.example"]
script = "{alice}/app.wsgi"
group = "alice"

[[app]]
host = "alice.example"
mount = "/admin"
script = "{alice}/admin/app.wsgi"
group = "alice"

[[app]]
host = "bob.example"
script = "{bob}/app.wsgi"
group = "bob"
"#,
            alice = self.path("alice").display(),
            bob = self.path("bob").display()
        )
    }

    fn write_policy(&self, rel: &str, text: &str) {
        let path = self.path("policies").join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn write_config(&self, text: &str) {
        std::fs::write(self.config(), text).unwrap();
    }
}

fn hash_tree(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), hex::encode(Sha256::digest(std::fs::read(&p).unwrap()))));
            }
        }
    }
    out.sort();
    out
}

fn get(server: &Wasgi, host: &str, target: &str) -> (u16, String) {
    let r = server.request(format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes());
    (r.status, r.text())
}

#[test]
fn tenants_are_routed_by_host_and_mount_and_cannot_reach_each_other() {
    let t = Tenants::new();
    let bob_before = hash_tree(&t.path("bob"));
    let server = Wasgi::serve(&t.config());

    assert_eq!(get(&server, "alice.example", "/").1, "alice at / (host alice.example, env APP_MODE=alice-mode)");
    assert_eq!(get(&server, "ALICE.example:8080", "/x").1, "alice at / (host ALICE.example:8080, env APP_MODE=alice-mode)");
    assert_eq!(get(&server, "www.alice.example", "/").1, "alice at / (host www.alice.example, env APP_MODE=alice-mode)");
    assert_eq!(get(&server, "alice.example", "/admin/users").1, "admin at /admin (host alice.example, env APP_MODE=alice-mode)");
    assert_eq!(get(&server, "alice.example", "/administrator").1, "alice at / (host alice.example, env APP_MODE=alice-mode)");
    assert_eq!(get(&server, "bob.example", "/").1, "bob at / (host bob.example, env APP_MODE=None)");
    assert_eq!(get(&server, "bob.example", "/admin").1, "bob at / (host bob.example, env APP_MODE=None)", "mounts belong to their host");
    // An unknown host goes to the first virtual host, as in Apache.
    assert_eq!(get(&server, "unknown.example", "/").1, "alice at / (host unknown.example, env APP_MODE=alice-mode)");

    // Each tenant reads and writes its own data...
    let own = t.path("alice/data/secret.txt");
    assert_eq!(get(&server, "alice.example", &format!("/read?path={}", own.display())), (200, "alice's secret".into()));
    let new_file = t.path("alice/data/new.txt");
    assert_eq!(get(&server, "alice.example", &format!("/write?path={}", new_file.display())).0, 200);
    assert_eq!(std::fs::read_to_string(&new_file).unwrap(), "written by alice");
    // ...and cannot read, write or list the other's.
    for target in [
        format!("/read?path={}", t.path("bob/data/secret.txt").display()),
        format!("/read?path={}", t.path("bob/app.wsgi").display()),
        format!("/read?path={}/../../bob/data/secret.txt", t.path("alice/data").display()),
        format!("/write?path={}", t.path("bob/data/secret.txt").display()),
        format!("/write?path={}", t.path("bob/data/planted.txt").display()),
        format!("/list?path={}", t.path("bob").display()),
        format!("/list?path={}", t.path("").display()),
    ] {
        let (status, body) = get(&server, "alice.example", &target);
        assert_eq!(status, 403, "alice reached {target}: {body}");
    }
    // Each group's /tmp is its own.
    let (status, _) = get(&server, "alice.example", "/write?path=/tmp/alice-was-here");
    assert_eq!(status, 200);
    let (status, body) = get(&server, "bob.example", "/read?path=/tmp/alice-was-here");
    assert_eq!(status, 403, "bob read alice's /tmp: {body}");
    assert_eq!(hash_tree(&t.path("bob")), bob_before, "bob's files changed");
}

#[test]
fn check_prints_each_groups_capabilities_and_routes() {
    let t = Tenants::new();
    let (ok, out) = check(&t.config());
    assert!(ok, "{out}");
    let alice_grant = format!("{}", t.path("alice/data").display());
    let line = out.lines().find(|l| l.trim_start().starts_with(&alice_grant)).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("write") && line.contains("policies/users/alice.toml:2"), "{line}");
    assert!(out.contains("route  alice.example/admin"), "{out}");
    assert!(out.contains("route  *.alice.example/"), "{out}");
    assert!(out.contains("memory 256 MiB"), "the group policy's limit applies: {out}");
    assert!(out.contains("the app's script directory"), "{out}");
}

#[test]
fn config_and_policy_errors_name_file_line_and_key() {
    let cases: Vec<(&str, Box<dyn Fn(&Tenants)>, String)> = vec![
        (
            "unknown key",
            Box::new(|t: &Tenants| t.write_config(&t.config_text().replace("instances = 1\nuser = \"bob\"", "instances = 1\nprocesses = 2\nuser = \"bob\""))),
            "wasgi.toml:14: (unknown key): unknown field `processes`".into(),
        ),
        (
            "missing policy file",
            Box::new(|t: &Tenants| t.write_config(&t.config_text().replace("user = \"bob\"", "user = \"carol\""))),
            "wasgi.toml:14: group \"bob\": user: no policy file".into(),
        ),
        (
            "a grant of a missing path",
            Box::new(|t: &Tenants| t.write_policy("users/bob.toml", "[[grant]]\npath = \"/no/such/dir\"\naccess = \"read\"\n")),
            "policies/users/bob.toml:2: grant[0].path: /no/such/dir: No such file or directory".into(),
        ),
        (
            "a relative grant",
            Box::new(|t: &Tenants| t.write_policy("users/bob.toml", "\n[[grant]]\npath = \"data\"\naccess = \"read\"\n")),
            "policies/users/bob.toml:3: grant[0].path: \"data\" is not an absolute path".into(),
        ),
        (
            "a bad access word",
            Box::new(|t: &Tenants| t.write_policy("users/bob.toml", &format!("[[grant]]\npath = \"{}\"\naccess = \"rw\"\n", t.path("bob/data").display()))),
            "policies/users/bob.toml:3: grant[0].access: \"rw\": use \"read\" or \"write\"".into(),
        ),
        (
            "a write grant overlapping another tenant",
            Box::new(|t: &Tenants| t.write_policy("users/bob.toml", &format!("[[grant]]\npath = \"{}\"\naccess = \"write\"\n", t.path("").display()))),
            "policies/users/bob.toml:2: grant: group \"bob\" may write".into(),
        ),
        (
            "a write grant over another tenant's app directory",
            Box::new(|t: &Tenants| {
                t.write_policy(
                    "users/bob.toml",
                    &format!("[[grant]]\npath = \"{}\"\naccess = \"write\"\n", t.path("alice/admin").display()),
                )
            }),
            "(read, the app's script directory)".into(),
        ),
    ];
    for (name, break_it, expected) in cases {
        let t = Tenants::new();
        break_it(&t);
        let (ok, out) = check(&t.config());
        assert!(!ok, "{name}: check passed:\n{out}");
        assert!(out.contains(&expected), "{name}: expected {expected:?} in:\n{out}");
        let mut server = Wasgi::from_serve_without_waiting(&t.config());
        let status = server.wait(std::time::Duration::from_secs(60));
        assert!(!status.success(), "{name}: serve started anyway");
        assert!(server.log.text().contains(&expected), "{name}: serve's log lacks {expected:?}:\n{}", server.log.text());
    }
}

#[test]
fn fifty_groups_of_one_instance_start_and_answer() {
    let dir = TempDir::new("fifty");
    let mut config = String::from("[[listen]]\naddress = \"127.0.0.1:0\"\n");
    for i in 0..50 {
        let home = dir.path().join(format!("t{i:02}"));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(
            home.join("app.wsgi"),
            format!(
                "def application(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'tenant {i:02}']\n"
            ),
        )
        .unwrap();
        config.push_str(&format!(
            "\n[[group]]\nname = \"t{i:02}\"\ninstances = 1\n\n[[app]]\nhost = \"t{i:02}.example\"\nscript = \"{}\"\ngroup = \"t{i:02}\"\n",
            home.join("app.wsgi").display()
        ));
    }
    let file = dir.path().join("wasgi.toml");
    std::fs::write(&file, config).unwrap();
    let server = Wasgi::serve(&file);
    for i in 0..50 {
        let (status, body) = get(&server, &format!("t{i:02}.example"), "/");
        assert_eq!((status, body.as_str()), (200, format!("tenant {i:02}").as_str()));
    }
}

#[test]
fn a_virtualenv_of_another_python_minor_version_serves_its_pure_python_packages() {
    // The host's python3 (3.11 here) makes the venv; the guest is 3.12.
    let venv = wasgi_tests::venv("itsdangerous-markupsafe", &["itsdangerous==2.2.*", "markupsafe==3.0.*"]);
    let dir = TempDir::new("venv-app");
    std::fs::write(
        dir.path().join("app.wsgi"),
        "import itsdangerous, markupsafe\n\
         def application(environ, start_response):\n\
         \x20   signed = itsdangerous.Signer('k').sign(b'v').decode()\n\
         \x20   body = f'{signed} {markupsafe.escape(\"<b>\")}'.encode()\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return [body]\n",
    )
    .unwrap();
    let config = dir.path().join("wasgi.toml");
    std::fs::write(
        &config,
        format!(
            "[[listen]]\naddress = \"127.0.0.1:0\"\n\n[[group]]\nname = \"v\"\ninstances = 1\nvenv = \"{}\"\n\n[[app]]\nscript = \"{}\"\ngroup = \"v\"\n",
            venv.display(),
            dir.path().join("app.wsgi").display()
        ),
    )
    .unwrap();
    let (ok, out) = check(&config);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("{}  read    venv", venv.display())), "the whole venv is granted read-only: {out}");
    assert!(out.contains("  extension  markupsafe._speedups (MarkupSafe 3.0."), "check lists native extensions: {out}");
    let server = Wasgi::serve(&config);
    let (status, body) = get(&server, "x", "/");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("v.") && body.ends_with("&lt;b&gt;"), "{body}");
}

/// `wasgi check` lists each native extension module of a group's
/// environment: one wasgi has a recipe for with what becomes of it, one it
/// has none for as unusable, saying what to do; it builds nothing.
#[test]
fn check_lists_native_extensions_and_says_which_cannot_load() {
    let dir = TempDir::new("native-check");
    let site = dir.path().join("site");
    for d in ["MarkupSafe-3.0.2.dist-info", "markupsafe", "ujson-5.10.0.dist-info"] {
        std::fs::create_dir_all(site.join(d)).unwrap();
    }
    std::fs::write(site.join("markupsafe/_speedups.cpython-311-x86_64-linux-gnu.so"), b"\x7fELF").unwrap();
    std::fs::write(site.join("ujson.cpython-311-x86_64-linux-gnu.so"), b"\x7fELF").unwrap();
    std::fs::write(dir.path().join("app.wsgi"), "application = None\n").unwrap();
    let config = dir.path().join("wasgi.toml");
    std::fs::write(
        &config,
        format!(
            "[[group]]\nname = \"n\"\npython_path = [\"{}\"]\n\n[[app]]\nscript = \"{}\"\ngroup = \"n\"\n",
            site.display(),
            dir.path().join("app.wsgi").display()
        ),
    )
    .unwrap();
    let (ok, out) = check(&config);
    assert!(ok, "{out}");
    assert!(out.contains("  extension  ujson (ujson 5.10.0): no recipe — cannot load in the sandbox;"), "{out}");
    assert!(out.contains("ask for a recipe (wasgi builds: "), "{out}");
    // Built in, to be built, or not for cpython-3.12: whichever the suite's interpreter says.
    assert!(out.contains("  extension  markupsafe._speedups (MarkupSafe 3.0.2): "), "{out}");
}

/// A read-only directory inside a write grant of the same group could be
/// renamed away and replaced by the app: refused, not just warned about.
#[test]
fn check_refuses_a_read_only_directory_inside_a_write_grant() {
    let t = Tenants::new();
    t.write_policy("users/alice.toml", &format!("[[grant]]\npath = \"{}\"\naccess = \"write\"\n", t.path("alice").display()));
    let (ok, out) = check(&t.config());
    assert!(!ok, "{out}");
    let admin = t.path("alice/admin");
    assert!(
        out.contains(&format!(
            "group \"alice\": grants: group \"alice\": {} is granted read-only (the app's script directory) but lies inside the write grant {}",
            admin.display(),
            t.path("alice").display()
        )),
        "{out}"
    );
}

/// Inside the sandbox /tmp is the group's private /tmp: a host file under
/// /tmp is invisible unless granted, and the log says so rather than leaving
/// a bare FileNotFoundError.
#[test]
fn a_host_file_under_tmp_is_hidden_by_the_private_tmp_and_the_log_says_why() {
    let host_tmp = std::env::temp_dir().join(format!("wasgi-hidden-{}", std::process::id()));
    std::fs::create_dir_all(&host_tmp).unwrap();
    let file = host_tmp.join("data.txt");
    std::fs::write(&file, "host data").unwrap();
    let script = wasgi_tests::apps().join("features.wsgi");
    let server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "1"]);
    let (status, body) = get(&server, "x", &format!("/read-file?path={}", file.display()));
    assert_eq!((status, body.as_str()), (200, "denied: FileNotFoundError"));
    server.log.wait_for("private /tmp, so files under the host's /tmp are not visible", std::time::Duration::from_secs(10));
    // The record spans lines: wait for its last one, the grant that would allow it.
    server.log.wait_for(&format!("path = '{}'", host_tmp.display()), std::time::Duration::from_secs(10));
    drop(server);
    // Granted, the same path is the host's file.
    let server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "1", "--grant-read", host_tmp.to_str().unwrap()]);
    assert_eq!(get(&server, "x", &format!("/read-file?path={}", file.display())).1, "host data");
    let _ = std::fs::remove_dir_all(&host_tmp);
}
