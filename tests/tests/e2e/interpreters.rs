//! The interpreter chosen per process group (`[[group]] interpreter`): two
//! groups on one server, each on its own interpreter; a SIGHUP that switches
//! one group's interpreter restarts that group only; `wasgi check` shows
//! each group's interpreter and refuses a name it does not know.
//!
//! Each app answers its `sys.version` and how many requests its instance has
//! served, so a restarted instance shows by counting from 1 again.
//! The own 3.13 build is taken from the test cache (built there on first use,
//! about 6 minutes, on a fresh machine).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use wasgi_tests::{check, check_command, run_to_end, serve_command, TempDir, Wasgi};

const APP: &str = "import sys\n\
served = 0\n\
def application(environ, start_response):\n\
\x20   global served\n\
\x20   served += 1\n\
\x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
\x20   return [f'{sys.version.split()[0]} {served}'.encode()]\n";

/// Writes wasgi.toml with one group and app per (name, interpreter key), each
/// app on host NAME.example; `None` leaves the group's key out.
fn write_config(dir: &Path, groups: &[(&str, Option<&str>)]) -> PathBuf {
    let mut text = String::from("[[listen]]\naddress = \"127.0.0.1:0\"\n");
    for (name, interpreter) in groups {
        let home = dir.join(name);
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join("app.wsgi"), APP).unwrap();
        text.push_str(&format!("\n[[group]]\nname = \"{name}\"\ninstances = 1\n"));
        if let Some(interpreter) = interpreter {
            text.push_str(&format!("interpreter = \"{interpreter}\"\n"));
        }
        text.push_str(&format!("\n[[app]]\nhost = \"{name}.example\"\nscript = \"{}\"\ngroup = \"{name}\"\n", home.join("app.wsgi").display()));
    }
    let file = dir.join("wasgi.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// `wasgi serve` with the given process default (`WASGI_INTERPRETER`; None:
/// the built-in default), whatever interpreter the suite itself runs on.
fn serve(config: &Path, default: Option<&str>) -> Wasgi {
    let mut command = serve_command(config);
    match default {
        Some(name) => command.env("WASGI_INTERPRETER", name),
        None => command.env_remove("WASGI_INTERPRETER"),
    };
    Wasgi::from_command(command).wait_ready()
}

/// What the app of group NAME answers: (version, requests its instance served).
fn ask(server: &Wasgi, name: &str) -> (String, u32) {
    let r = server.request(format!("GET / HTTP/1.1\r\nHost: {name}.example\r\nConnection: close\r\n\r\n").as_bytes());
    assert_eq!(r.status, 200, "{name}: {}\n{}", r.text(), server.log.text());
    let text = r.text();
    let (version, served) = text.split_once(' ').unwrap_or_else(|| panic!("{text}"));
    (version.to_owned(), served.parse().unwrap())
}

fn is_313(version: &str) -> bool {
    version.starts_with("3.13.")
}

/// Waits until the log holds `needle` `n` times.
fn wait_for_count(server: &Wasgi, needle: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while server.log.text().matches(needle).count() < n {
        assert!(Instant::now() < deadline, "the log never showed {needle:?} {n} times:\n{}", server.log.text());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sighup(server: &Wasgi) {
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
}

#[test]
fn each_group_runs_its_interpreter_and_a_reload_switches_one_group_only() {
    let dir = TempDir::new("group-interp");
    let config = write_config(dir.path(), &[("old", Some("cpython-3.12")), ("new", None)]);
    let server = serve(&config, None);

    assert_eq!(ask(&server, "old"), ("3.12.0".to_owned(), 1));
    assert_eq!(ask(&server, "old").1, 2);
    let (version, served) = ask(&server, "new");
    assert!(is_313(&version) && served == 1, "no key: the built-in default, our own 3.13: {version} {served}");
    let log = server.log.text();
    assert!(log.contains("old/app.wsgi on cpython-3.12 (CPython 3.12.0)"), "the start line names the interpreter:\n{log}");
    assert!(log.contains("new/app.wsgi on cpython-3.13 (CPython 3.13."), "{log}");

    // old moves to 3.13; new's instance keeps serving, its count going on.
    write_config(dir.path(), &[("old", Some("cpython-3.13")), ("new", None)]);
    sighup(&server);
    wait_for_count(&server, "configuration reloaded: 1 group(s) unchanged, 1 started, 1 retired", 1);
    let (version, served) = ask(&server, "old");
    assert!(is_313(&version) && served == 1, "old restarted on 3.13: {version} {served}");
    let (version, served) = ask(&server, "new");
    assert!(is_313(&version) && served == 2, "new's instance was not restarted: {version} {served}");

    // And new back to the pinned build: old's instance is untouched.
    write_config(dir.path(), &[("old", Some("cpython-3.13")), ("new", Some("cpython-3.12"))]);
    sighup(&server);
    wait_for_count(&server, "configuration reloaded: 1 group(s) unchanged, 1 started, 1 retired", 2);
    assert_eq!(ask(&server, "new"), ("3.12.0".to_owned(), 1));
    let (version, served) = ask(&server, "old");
    assert!(is_313(&version) && served == 2, "{version} {served}");

    // Each interpreter was found and linked once, not again at each reload.
    let log = server.log.text();
    assert_eq!(log.matches("interpreter cpython-3.13 (CPython 3.13.").count(), 1, "{log}");
    assert_eq!(log.matches("interpreter cpython-3.12 (CPython 3.12.0)").count(), 1, "{log}");
}

#[test]
fn a_groups_key_wins_over_the_process_default_and_an_unused_interpreter_is_never_prepared() {
    let dir = TempDir::new("group-interp-pinned");
    let config = write_config(dir.path(), &[("only", Some("cpython-3.12"))]);
    let server = serve(&config, Some("cpython-3.13"));
    assert_eq!(ask(&server, "only"), ("3.12.0".to_owned(), 1));
    let log = server.log.text();
    assert!(!log.contains("cpython-3.13") && !log.contains("python-wasm:"), "no group runs the own build, so it is not looked for:\n{log}");
}

#[test]
fn check_shows_each_groups_interpreter_and_its_file() {
    let dir = TempDir::new("group-interp-check");
    let config = write_config(dir.path(), &[("old", Some("cpython-3.12")), ("new", None)]);
    let mut command = check_command(&config);
    command.env_remove("WASGI_INTERPRETER");
    let (ok, out) = run_to_end(command);
    assert!(ok, "{out}");
    let line = |group: &str| -> String {
        let at = out.find(&format!("(group \"{group}\"")).unwrap_or_else(|| panic!("{out}"));
        out[at..].lines().find(|l| l.trim_start().starts_with("interpreter ")).unwrap_or_else(|| panic!("{out}")).trim().to_owned()
    };
    let old = line("old");
    assert!(old.starts_with("interpreter  cpython-3.12 (CPython 3.12.0, /") && old.ends_with(".wasm)"), "{old}");
    let new = line("new");
    assert!(new.starts_with("interpreter  cpython-3.13 (CPython 3.13.") && new.ends_with("/python.wasm)"), "{new}");
    let file = new.rsplit(", ").next().unwrap().trim_end_matches(')');
    assert!(Path::new(file).is_file(), "check names the file it would run: {file}");

    // The process default applies to a group without the key.
    let config = write_config(dir.path(), &[("old", None), ("new", None)]);
    let mut command = check_command(&config);
    command.env("WASGI_INTERPRETER", "cpython-3.12");
    let (ok, out) = run_to_end(command);
    assert!(ok, "{out}");
    assert_eq!(out.matches("interpreter  cpython-3.12 (CPython 3.12.0").count(), 2, "{out}");
}

#[test]
fn an_unknown_interpreter_name_is_a_config_error_naming_file_group_and_names() {
    let dir = TempDir::new("group-interp-bad");
    let config = write_config(dir.path(), &[("old", None), ("new", Some("cpython-3.14"))]);
    let expected = "wasgi.toml:16: group \"new\": interpreter: \"cpython-3.14\" is not an interpreter wasgi knows: \
                    use cpython-3.13 (built here, the default) or cpython-3.12 (the pinned prebuilt 3.12.0)";
    let (ok, out) = check(&config);
    assert!(!ok && out.contains(expected), "{out}");
    let mut server = Wasgi::from_serve_without_waiting(&config);
    assert!(!server.wait(Duration::from_secs(60)).success(), "serve started anyway");
    assert!(server.log.text().contains(expected), "{}", server.log.text());
}

#[test]
fn check_and_serve_fail_clearly_when_the_own_build_cannot_be_had() {
    let dir = TempDir::new("group-interp-unbuildable");
    let config = write_config(dir.path(), &[("new", None)]);
    let expected = "group \"new\" runs cpython-3.13, which cannot be used: cannot run /nonexistent/python3 to build CPython 3.13";
    let fallback = "To serve with the pinned prebuilt CPython 3.12.0 instead (fetched in seconds; no OpenSSL, \
                    no security fixes since 2023), pass --interpreter cpython-3.12";
    // An empty cache: the own build is not there, so it would have to be built.
    let empty_cache = dir.path().join("empty-cache");
    let command = |verb: &str| {
        let mut command = Command::new(wasgi_tests::wasgi_bin());
        command.arg(verb).arg("--config").arg(&config).arg("--cache-dir").arg(&empty_cache);
        command.env_remove("WASGI_INTERPRETER");
        command.env("WASGI_HOST_PYTHON", "/nonexistent/python3").env("NO_COLOR", "1");
        command.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        command
    };
    let (ok, out) = run_to_end(command("check"));
    assert!(!ok && out.contains(expected) && out.contains(fallback), "{out}");
    let mut server = Wasgi::from_command(command("serve"));
    assert!(!server.wait(Duration::from_secs(60)).success(), "serve started anyway");
    assert!(server.log.text().contains(expected), "{}", server.log.text());
    assert!(server.log.text().contains(fallback), "the error says how to choose the pinned build:\n{}", server.log.text());
}

/// Copies python-wasm's recipe (what the build's cache key covers) to `dest`.
fn copy_recipe(dest: &Path) {
    let src = wasgi_tests::root().join("python-wasm");
    std::fs::create_dir_all(dest).unwrap();
    for entry in ["build", "pins.toml", "wasirun.py", "update-pins"] {
        std::fs::copy(src.join(entry), dest.join(entry)).unwrap();
    }
    for dir in ["wasgi", "patches", "pgo"] {
        std::fs::create_dir_all(dest.join(dir)).unwrap();
        for file in std::fs::read_dir(src.join(dir)).unwrap() {
            let file = file.unwrap();
            std::fs::copy(file.path(), dest.join(dir).join(file.file_name())).unwrap();
        }
    }
}

/// A pinned source the mirror no longer serves: the build stops at its fetch
/// step, names the file, and says which command moves the pins. And
/// `update-pins --dry-run` asks the real mirror and writes nothing.
#[test]
fn a_pin_that_left_the_mirror_fails_the_build_naming_update_pins() {
    wasgi_tests::own_interpreter(); // the toolchain and the other sources are in the cache
    let dir = TempDir::new("gone-pin");
    let recipe = dir.path().join("python-wasm");
    copy_recipe(&recipe);
    let pins = std::fs::read_to_string(recipe.join("pins.toml")).unwrap();
    let start = pins.find("[source.python]").unwrap();
    let end = start + pins[start..].find("\n\n").unwrap();
    let gone = "[source.python]\npackage = \"python3.13\"\nversion = \"3.13.99-1\"\norig = \"python3.13_3.13.99.orig.tar.xz\"\n\
                sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\ndir = \"Python-3.13.99\"";
    std::fs::write(recipe.join("pins.toml"), format!("{}{gone}{}", &pins[..start], &pins[end..])).unwrap();
    let out = Command::new("python3").arg(recipe.join("build")).arg("--cache-dir").arg(wasgi_tests::cache_dir()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("fetch         FAILED") && err.contains("python3.13 3.13.99-1: python3.13_3.13.99.orig.tar.xz could not be fetched"), "{err}");
    assert!(err.contains("run python-wasm/update-pins"), "{err}");

    let before = std::fs::read_to_string(recipe.join("pins.toml")).unwrap();
    let out = Command::new("python3").arg(recipe.join("update-pins")).arg("--dry-run").arg("--cache-dir").arg(wasgi_tests::cache_dir()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("python3.13:") && text.contains("toolchain:"), "{text}");
    assert!(text.contains("--dry-run: pins.toml not written"), "a pin that is gone is moved: {text}");
    assert_eq!(std::fs::read_to_string(recipe.join("pins.toml")).unwrap(), before, "--dry-run writes nothing");
}

/// Our build is compiled with the profile committed in python-wasm/pgo (the
/// PGO that makes it faster): build.json names the profile with its hash, and
/// the interpreter's own record of its compiler flags (sysconfig) has clang's
/// -fprofile-instr-use, at the work tree's placeholder path.
#[test]
fn our_build_is_compiled_with_the_committed_pgo_profile() {
    use sha2::Digest;
    let wasm = wasgi_tests::own_interpreter();
    let built = wasm.parent().unwrap();
    let info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(built.join("build.json")).unwrap()).unwrap();
    assert_eq!(info["pgo"]["profile"], "pgo/cpython-3.13.proftext", "{info}");
    let profile = std::fs::read(wasgi_tests::root().join("python-wasm/pgo/cpython-3.13.proftext")).unwrap();
    assert_eq!(info["pgo"]["sha256"], hex::encode(sha2::Sha256::digest(&profile)), "the build used another profile");
    let stdlib = built.join("lib/python3.13");
    let sysconfig = std::fs::read_dir(&stdlib)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("_sysconfigdata_"))
        .expect("the stdlib has its _sysconfigdata");
    let flags = std::fs::read_to_string(sysconfig).unwrap();
    assert!(flags.contains("-fprofile-instr-use=/wasgi-build/pgo.profdata"), "not compiled with the profile");
}
