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
    let log = failed_start(&[script.to_str().unwrap(), "--python-wasm", fake.to_str().unwrap()]);
    assert!(log.contains("e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763"), "{log}");
    assert!(log.contains("found "), "{log}");
}
