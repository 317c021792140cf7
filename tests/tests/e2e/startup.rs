//! Loading the script as mod_wsgi does, and the messages a person sees when
//! it cannot be loaded: the process exits non-zero with one clear message
//! instead of looping on restarts.

use std::time::Duration;

use wasgi_tests::{apps, flask_packages, Wasgi};

fn failed_start(args: &[&str]) -> String {
    let mut server = Wasgi::spawn(args);
    let status = server.wait(Duration::from_secs(120));
    assert!(!status.success(), "wasgi should refuse to start; log:\n{}", server.log.text());
    let log = server.log.text();
    assert!(!log.contains("serving "), "{log}");
    log
}

#[test]
fn an_unguarded_app_run_names_the_file_and_line() {
    let packages = flask_packages();
    let script = apps().join("app_run.wsgi");
    let log = failed_start(&[script.to_str().unwrap(), "--python-path", packages.to_str().unwrap(), "--instances", "1"]);
    assert!(log.contains(&format!("{}:11", script.display())), "file:line of app.run(): {log}");
    assert!(log.contains("if __name__ == '__main__':"), "{log}");
    assert!(log.contains("app.run(host=\"0.0.0.0\", port=5000)"), "the offending line is quoted: {log}");
}

#[test]
fn a_script_that_raises_at_import_shows_its_traceback_once_and_exits() {
    let script = apps().join("raises.wsgi");
    let log = failed_start(&[script.to_str().unwrap(), "--instances", "2"]);
    assert!(log.contains("Traceback (most recent call last)"), "{log}");
    assert!(log.contains("JSONDecodeError"), "{log}");
    assert!(log.contains("raises.wsgi\", line 3"), "{log}");
    assert!(!log.contains("replacement"), "no restart loop: {log}");
}

#[test]
fn a_script_without_application_lists_what_it_defines() {
    let script = apps().join("no_application.wsgi");
    let log = failed_start(&[script.to_str().unwrap(), "--instances", "1"]);
    assert!(log.contains("defines no 'application'"), "{log}");
    assert!(log.contains("create_app, VERSION") || log.contains("VERSION, create_app"), "{log}");
    assert!(log.contains("application = create_app()"), "a hint for the factory pattern: {log}");
}

#[test]
fn sys_exit_at_import_is_explained() {
    let script = apps().join("sys_exit.wsgi");
    let log = failed_start(&[script.to_str().unwrap(), "--instances", "1"]);
    assert!(log.contains("sys.exit(2)"), "{log}");
    assert!(log.contains("sys_exit.wsgi:5"), "{log}");
}

#[test]
fn a_missing_module_says_the_directory_is_not_on_sys_path() {
    // hello.wsgi imports `app` from its own directory, which mod_wsgi (and
    // wasgi) do not put on sys.path by themselves.
    let script = wasgi_tests::root().join("examples/hello/hello.wsgi");
    let log = failed_start(&[script.to_str().unwrap(), "--instances", "1"]);
    assert!(log.contains("ModuleNotFoundError"), "{log}");
    assert!(log.contains("--python-path"), "{log}");
}

#[test]
fn bad_flags_are_refused_before_anything_starts() {
    let script = apps().join("features.wsgi");
    let log = failed_start(&[script.to_str().unwrap(), "--grant-read", "/no/such/dir"]);
    assert!(log.contains("--grant-read /no/such/dir"), "{log}");
    let log = failed_start(&["/no/such/script.wsgi"]);
    assert!(log.contains("/no/such/script.wsgi"), "{log}");
    let log = failed_start(&[script.to_str().unwrap(), "--listen", "not-an-address"]);
    assert!(log.contains("not-an-address"), "{log}");
}

#[test]
fn a_wrong_interpreter_is_refused_naming_both_hashes() {
    let dir = wasgi_tests::TempDir::new("badwasm");
    let fake = dir.path().join("python.wasm");
    std::fs::write(&fake, b"\0asm not really").unwrap();
    let script = apps().join("features.wsgi");
    let log = failed_start(&[script.to_str().unwrap(), "--interpreter", "cpython-3.12", "--python-wasm", fake.to_str().unwrap()]);
    assert!(log.contains("e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763"), "{log}");
    assert!(log.contains("found "), "{log}");
}

#[test]
fn replacements_that_keep_failing_back_off_instead_of_storming() {
    let dir = wasgi_tests::TempDir::new("flaky");
    let script = dir.path().join("flaky_start.wsgi");
    std::fs::copy(apps().join("flaky_start.wsgi"), &script).unwrap();
    // Each replacement imports the app again (and fails); with --snapshot
    // it would start from the import that worked.
    let server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "1", "--grant-write", dir.path().to_str().unwrap()]);
    assert_eq!(server.get("/").text(), "up");
    assert_eq!(server.get("/.wasgi/ready").status, 200);
    assert_eq!(server.get("/.wasgi/ready/flaky_start.wsgi").text(), "ready\n");
    assert_eq!(server.get("/exit").status, 502);
    // Every replacement now fails; the delays between attempts grow.
    server.log.wait_for("3 failed starts in a row", Duration::from_secs(30));
    // One failing group does not take the server out of a balancer, and the
    // anonymous answer names no group; the group's own check says why.
    let ready = server.get("/.wasgi/ready");
    assert_eq!((ready.status, ready.text().as_str()), (200, "ready\n"));
    let group = server.get("/.wasgi/ready/flaky_start.wsgi");
    assert_eq!((group.status, group.text().as_str()), (503, "not ready: instances fail to start\n"));
    assert_eq!(group.header("cache-control"), Some("no-store"));
    let unknown = server.get("/.wasgi/ready/no-such-group");
    assert_eq!((unknown.status, unknown.text().as_str()), (404, "no such group\n"));
    std::thread::sleep(Duration::from_secs(2));
    let log = server.log.text();
    let attempts = log.matches("replacement instance failed to start").count();
    assert!(attempts <= 8, "{attempts} start attempts in a few seconds is a storm:\n{log}");
    assert!(log.contains("refusing to start a second time"), "the failure's traceback is logged: {log}");
}

#[test]
fn a_corrupt_compiled_module_is_recompiled_not_trusted() {
    wasgi_tests::setup();
    let cache = wasgi_tests::TempDir::new("cache");
    let shared = wasgi_tests::cache_dir();
    std::fs::create_dir_all(cache.path().join("modules")).unwrap();
    let python = wasgi_tests::pinned_interpreter();
    for entry in std::fs::read_dir(shared.join("modules")).unwrap() {
        let path = entry.unwrap().path();
        let dest = cache.path().join("modules").join(path.file_name().unwrap());
        let mut bytes = std::fs::read(&path).unwrap();
        if path.extension().is_some_and(|x| x == "cwasm") {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff; // one flipped byte in the compiled code
        }
        std::fs::write(dest, bytes).unwrap();
    }
    let script = apps().join("features.wsgi");
    let output_log = wasgi_tests::log_of_a_start(wasgi_tests::start_command(&[
        script.to_str().unwrap(),
        "--instances",
        "1",
        "--interpreter",
        "cpython-3.12",
        "--python-wasm",
        python.to_str().unwrap(),
        "--cache-dir",
        cache.path().to_str().unwrap(),
    ]));
    assert!(output_log.contains("checksum mismatch"), "{output_log}");
    assert!(output_log.contains("recompiling"), "{output_log}");
    assert!(output_log.contains("serving "), "{output_log}");
}

#[test]
fn a_package_that_needs_a_native_extension_is_named_with_its_so_file() {
    let dir = wasgi_tests::TempDir::new("native");
    let pkg = dir.path().join("fastthing");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("__init__.py"), "from ._core import speed\n").unwrap();
    std::fs::write(pkg.join("_core.cpython-311-x86_64-linux-gnu.so"), b"\x7fELF not loadable here").unwrap();
    let script = dir.path().join("app.wsgi");
    std::fs::write(&script, "import fastthing\napplication = None\n").unwrap();
    let log = failed_start(&[script.to_str().unwrap(), "--python-path", dir.path().to_str().unwrap(), "--instances", "1"]);
    assert!(log.contains("'fastthing._core' is a native extension built for the host"), "{log}");
    assert!(log.contains("has a recipe for (MarkupSafe,"), "the hint names the packages wasgi builds: {log}");
    assert!(log.contains("has none for 'fastthing'"), "{log}");
    assert!(log.contains("_core.cpython-311-x86_64-linux-gnu.so"), "{log}");
}

#[test]
fn a_module_symlinked_from_outside_the_grants_is_explained() {
    // The mod_wsgi guide's trap: a single .py file symlinked into site-packages.
    let dir = wasgi_tests::TempDir::new("symlinked");
    let outside = dir.path().join("project");
    let packages = dir.path().join("site-packages");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(&packages).unwrap();
    std::fs::write(outside.join("yourapplication.py"), "def app(e, s):\n    s('200 OK', [])\n    return [b'']\n").unwrap();
    std::os::unix::fs::symlink(outside.join("yourapplication.py"), packages.join("yourapplication.py")).unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    let script = app.join("app.wsgi");
    std::fs::write(&script, "from yourapplication import app as application\n").unwrap();
    let log = failed_start(&[script.to_str().unwrap(), "--python-path", packages.to_str().unwrap(), "--instances", "1"]);
    let link = packages.join("yourapplication.py");
    assert!(log.contains(&format!("{} is a symlink to", link.display())), "{log}");
    assert!(log.contains("which the sandbox does not follow"), "{log}");
}

/// The deployment guide's `.wsgi` puts its library directory on sys.path
/// itself; served without granting it, the start fails, and the hint says
/// the module is there on the host, that the directory is on sys.path but
/// not granted, and the exact flag (or, from a wasgi.toml, the setting) to add.
#[test]
fn a_module_in_an_ungranted_sys_path_directory_names_the_grant_to_add() {
    wasgi_tests::own_interpreter();
    let dir = wasgi_tests::TempDir::new("ungranted-sys-path");
    let libs = dir.path().join("libs");
    std::fs::create_dir_all(libs.join("yourapplication")).unwrap();
    std::fs::write(libs.join("yourapplication/__init__.py"), "def app(e, s):\n    s('200 OK', [])\n    return [b'']\n").unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    let script = app.join("app.wsgi");
    std::fs::write(&script, format!("import sys\nsys.path.insert(0, '{}')\nfrom yourapplication import app as application\n", libs.display())).unwrap();

    let log = failed_start(&[script.to_str().unwrap(), "--instances", "1", "--interpreter", "cpython-3.13"]);
    assert!(log.contains("ModuleNotFoundError: No module named 'yourapplication'"), "{log}");
    let found = format!(
        "Hint: module \"yourapplication\" was found at {libs}/yourapplication on the host, but {libs} is on sys.path without being granted to group \"app.wsgi\", so the sandbox cannot see into it.",
        libs = libs.display()
    );
    assert!(log.contains(&found), "{log}");
    assert!(log.contains(&format!("Add `--python-path {}` to `wasgi run`", libs.display())), "{log}");
    assert!(!log.contains("is not on sys.path"), "{log}");
    assert!(!log.contains("wasgi-ungranted-sys-path"), "the bridge's note to the host is not shown: {log}");

    // A host directory under /tmp is not the guest's /tmp (the group's private one).
    let host_tmp = std::env::temp_dir().join(format!("wasgi-ungranted-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&host_tmp);
    std::fs::create_dir_all(&host_tmp).unwrap();
    std::fs::write(host_tmp.join("tmplib.py"), "x = 1\n").unwrap();
    let tmp_script = app.join("tmp.wsgi");
    std::fs::write(&tmp_script, format!("import sys\nsys.path.append('{}')\nimport tmplib\n", host_tmp.display())).unwrap();
    let log = failed_start(&[tmp_script.to_str().unwrap(), "--instances", "1", "--interpreter", "cpython-3.13"]);
    let _ = std::fs::remove_dir_all(&host_tmp);
    assert!(log.contains(&format!("module \"tmplib\" was found at {}/tmplib.py on the host", host_tmp.display())), "{log}");

    // The same from a wasgi.toml: the setting to add, in the group named.
    let config = dir.path().join("wasgi.toml");
    std::fs::write(
        &config,
        format!(
            "[[listen]]\naddress = \"127.0.0.1:0\"\n\n[[group]]\nname = \"site\"\ninstances = 1\ninterpreter = \"cpython-3.13\"\n\n[[app]]\nscript = \"{}\"\ngroup = \"site\"\n",
            script.display()
        ),
    )
    .unwrap();
    // `wasgi check` says so before anything starts.
    let (_, report) = wasgi_tests::check(&config);
    assert!(
        report.contains(&format!(
            "warning: group \"site\": {}:2 puts {libs} on sys.path (sys.path), but no grant covers it, so the app cannot import from it: add \"{libs}\" to the group's python_path",
            script.display(),
            libs = libs.display()
        )),
        "{report}"
    );
    let mut server = Wasgi::from_serve_without_waiting(&config);
    let status = server.wait(Duration::from_secs(120));
    let log = server.log.text();
    assert!(!status.success(), "{log}");
    assert!(log.contains(&format!("was found at {}/yourapplication on the host", libs.display())), "{log}");
    assert!(log.contains(&format!("in wasgi.toml add \"{}\" to python_path of [[group]] \"site\"", libs.display())), "{log}");
}

/// A module that is nowhere still gets the plain hint, even when sys.path
/// has an ungranted directory (nothing was found there).
#[test]
fn a_module_that_is_nowhere_gets_the_plain_hint() {
    wasgi_tests::own_interpreter();
    let dir = wasgi_tests::TempDir::new("nowhere-sys-path");
    let libs = dir.path().join("libs");
    std::fs::create_dir_all(&libs).unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    let script = app.join("app.wsgi");
    std::fs::write(&script, format!("import sys\nsys.path.insert(0, '{}')\nimport nosuchmodule\n", libs.display())).unwrap();
    let log = failed_start(&[script.to_str().unwrap(), "--instances", "1", "--interpreter", "cpython-3.13"]);
    assert!(log.contains(&format!("{} is on sys.path but not granted", libs.display())), "{log}");
    assert!(!log.contains("was found at"), "{log}");
    assert!(!log.contains("wasgi-ungranted-sys-path"), "{log}");
}
