//! The cache directory is the server's own: compiled code is loaded from it
//! (and `deserialize` trusts what it reads), and every group's private
//! directories live in it. So it is created 0700, refused when another user
//! owns it, never shared through a /tmp fallback, never granted to an app,
//! and compiled files anyone else could have written are not loaded.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use wasgi_tests::{apps, run_to_end, start_command, wasgi_bin, TempDir};

fn features() -> String {
    apps().join("features.wsgi").to_str().unwrap().to_owned()
}

#[test]
fn without_home_there_is_no_shared_fallback_and_the_error_asks_for_a_cache_dir() {
    let mut cmd = Command::new(wasgi_bin());
    cmd.args(["run", &features(), "--listen", "127.0.0.1:0"])
        .env_remove("HOME")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("WASGI_CACHE_DIR")
        .env("NO_COLOR", "1");
    let (ok, out) = run_to_end(cmd);
    assert!(!ok, "{out}");
    assert!(out.contains("neither HOME nor XDG_CACHE_HOME is set") && out.contains("--cache-dir"), "{out}");
}

#[test]
fn a_new_cache_directory_is_created_0700_and_a_loose_one_of_ours_is_tightened() {
    let scratch = TempDir::new("cache-mode");
    let fresh = scratch.path().join("a/b/cache");
    // The script does not exist: the run stops right after preparing the cache.
    let missing = scratch.path().join("missing.wsgi");
    let (ok, out) = run_to_end(start_command(&[missing.to_str().unwrap(), "--cache-dir", fresh.to_str().unwrap()]));
    assert!(!ok, "{out}");
    assert_eq!(std::fs::metadata(&fresh).unwrap().mode() & 0o777, 0o700);

    let loose = scratch.path().join("loose");
    std::fs::create_dir_all(&loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (ok, out) = run_to_end(start_command(&[missing.to_str().unwrap(), "--cache-dir", loose.to_str().unwrap()]));
    assert!(!ok, "{out}");
    assert_eq!(std::fs::metadata(&loose).unwrap().mode() & 0o777, 0o700, "{out}");
}

#[test]
fn a_cache_directory_owned_by_another_user_is_refused() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to give a directory to another user");
        return;
    }
    let scratch = TempDir::new("cache-owner");
    let theirs = scratch.path().join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let (ok, out) = run_to_end(start_command(&[&features(), "--cache-dir", theirs.to_str().unwrap()]));
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("the cache directory {} belongs to uid 65534", theirs.display())), "{out}");
}

#[test]
fn no_grant_may_contain_or_lie_inside_the_cache_directory() {
    let scratch = TempDir::new("cache-grant");
    let cache = scratch.path().join("cache");
    std::fs::create_dir_all(cache.join("modules")).unwrap();
    let (ok, out) = run_to_end(start_command(&[&features(), "--cache-dir", cache.to_str().unwrap(), "--grant-read", scratch.path().to_str().unwrap()]));
    assert!(!ok, "{out}");
    let real_cache = cache.canonicalize().unwrap();
    assert!(out.contains(&format!("the grant of {} (--grant-read) contains the cache directory {}", scratch.path().display(), real_cache.display())), "{out}");
    let (ok, out) = run_to_end(start_command(&[&features(), "--cache-dir", cache.to_str().unwrap(), "--grant-write", cache.join("modules").to_str().unwrap()]));
    assert!(!ok, "{out}");
    assert!(out.contains("(--grant-write) lies inside the cache directory"), "{out}");

    // wasgi.toml: the same check, with the group named.
    let config = scratch.path().join("wasgi.toml");
    std::fs::write(
        &config,
        format!(
            "[[listen]]\naddress = \"127.0.0.1:0\"\n\n[[group]]\nname = \"g\"\npython_path = [\"{}\"]\n\n[[app]]\nscript = \"{}\"\ngroup = \"g\"\n",
            scratch.path().display(),
            features()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(wasgi_bin());
    cmd.args(["check", "--config"]).arg(&config).arg("--cache-dir").arg(&cache).env("NO_COLOR", "1");
    let (ok, out) = run_to_end(cmd);
    assert!(!ok, "{out}");
    assert!(out.contains("group \"g\": grants: the grant of") && out.contains("(python_path) contains the cache directory"), "{out}");
}

/// A compiled module that another user could have changed is not loaded:
/// it is compiled again (and the new file is the server's own).
#[test]
fn a_compiled_module_writable_by_others_is_recompiled_not_loaded() {
    wasgi_tests::setup();
    let python = wasgi_tests::pinned_interpreter();
    let cache = TempDir::new("cache-trust");
    let shared = wasgi_tests::cache_dir();
    std::fs::create_dir_all(cache.path().join("modules")).unwrap();
    let mut loose = Vec::new();
    for entry in std::fs::read_dir(shared.join("modules")).unwrap() {
        let path = entry.unwrap().path();
        let dest = cache.path().join("modules").join(path.file_name().unwrap());
        std::fs::copy(&path, &dest).unwrap();
        if dest.extension().is_some_and(|x| x == "cwasm") {
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o666)).unwrap();
            loose.push(dest);
        }
    }
    assert!(!loose.is_empty());
    let log = wasgi_tests::log_of_a_start(start_command(&[
        &features(),
        "--instances",
        "1",
        "--interpreter",
        "cpython-3.12",
        "--python-wasm",
        python.to_str().unwrap(),
        "--cache-dir",
        cache.path().to_str().unwrap(),
    ]));
    assert!(log.contains("is writable by other users (mode 666)"), "{log}");
    assert!(log.contains("recompiling"), "{log}");
    assert!(log.contains("serving "), "{log}");
    // The module it used was stored again, as the server's own (the other
    // interpreters' modules, unused, stay as they were).
    let modes: Vec<u32> = loose.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.mode() & 0o777).collect();
    assert!(modes.contains(&0o600), "no compiled module was stored again 0600: {modes:?}");
}

/// `path`'s modification time (the cache's mark of use) set `days` back.
fn age(path: &std::path::Path, days: u64) {
    let file = std::fs::File::open(path).unwrap();
    file.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(days * 86400)).unwrap();
}

fn days_unused(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).unwrap().modified().unwrap().elapsed().unwrap_or_default().as_secs() / 86400
}

/// What a server has run piles up in its cache (a snapshot per app and
/// settings, a bytecode cache and /tmp per group): a serving process marks
/// what it uses and removes what no server used for `cache_unused_days`
/// (30 by default); `wasgi cache` shows it, `wasgi cache prune` does it by hand.
#[test]
fn a_server_keeps_what_it_uses_and_prunes_what_nothing_used_for_a_month() {
    wasgi_tests::own_interpreter();
    let scratch = TempDir::new("cache-prune");
    let app = scratch.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::copy(apps().join("snapshot_counter.wsgi"), app.join("app.wsgi")).unwrap();
    std::fs::write(app.join("greeting.txt"), "hello\n").unwrap();
    // A cache of its own, with the shared cache's interpreter build and
    // compiled code linked in (so nothing is built again).
    let cache = scratch.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    for kind in ["cpython", "modules", "cranelift", "zoneinfo"] {
        std::os::unix::fs::symlink(wasgi_tests::cache_dir().join(kind), cache.join(kind)).unwrap();
    }
    let script = app.join("app.wsgi");
    let args = [
        script.to_str().unwrap(),
        "--interpreter",
        "cpython-3.13",
        "--snapshot",
        "--grant-write",
        app.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    let mut server = wasgi_tests::Wasgi::start(&args);
    assert_eq!(server.get("/").status, 200, "{}", server.log.text());
    // The start pruned (nothing yet) in the background, and said when: a
    // start prunes only when no process did for 6 hours.
    let stamp = cache.join(".pruned");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !stamp.is_file() {
        assert!(std::time::Instant::now() < deadline, "no prune after the start: {}", server.log.text());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    server.terminate();

    let only_dir = |kind: &str| -> std::path::PathBuf {
        let found: Vec<_> = std::fs::read_dir(cache.join(kind))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        assert_eq!(found.len(), 1, "{kind}: {found:?}");
        found[0].clone()
    };
    let (snapshot, pycache, tmp) = (only_dir("snapshots"), only_dir("pycache"), only_dir("tmp"));
    // A month and more later: what this app uses, and what an app gone
    // since left behind.
    let stale_snapshot = cache.join("snapshots/00000000000000000000dead");
    let stale_tmp = cache.join("tmp/gone-group-0123456789abcdef");
    for stale in [&stale_snapshot, &stale_tmp] {
        std::fs::create_dir_all(stale).unwrap();
        std::fs::write(stale.join("left-behind"), vec![b'x'; 4096]).unwrap();
    }
    for dir in [&snapshot, &pycache, &tmp, &stale_snapshot, &stale_tmp] {
        age(dir, 40);
    }
    age(&stamp, 1);

    // The server starts on what it used: it keeps those (marked again) and
    // prunes what nothing uses.
    let mut server = wasgi_tests::Wasgi::start(&args);
    assert_eq!(server.get("/").status, 200, "{}", server.log.text());
    let log = server.log.wait_for("cache: removed", std::time::Duration::from_secs(60));
    assert!(log.contains("unused for 30 days") && log.contains(&format!("from {}", cache.display())), "{log}");
    assert!(!stale_snapshot.exists() && !stale_tmp.exists(), "{log}");
    for kept in [&snapshot, &pycache, &tmp] {
        assert!(kept.is_dir(), "{} was pruned: {log}", kept.display());
        assert_eq!(days_unused(kept), 0, "{} is not marked as used", kept.display());
    }
    server.terminate();

    // By hand.
    let cache_command = |args: &[&str]| {
        let mut cmd = Command::new(wasgi_bin());
        cmd.arg("cache").args(args).arg("--cache-dir").arg(&cache).env("NO_COLOR", "1");
        run_to_end(cmd)
    };
    let (ok, out) = cache_command(&[]);
    assert!(ok, "{out}");
    let line = out.lines().find(|l| l.trim_start().starts_with("snapshots ")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains(" 1 entries") && line.contains("unused for 30+ days:      0"), "{out}");
    assert!(out.contains("total "), "{out}");
    let (ok, out) = cache_command(&["prune", "--unused-for", "0"]);
    assert!(!ok && out.contains("entries unused for less than 1 day are never pruned"), "{out}");

    age(&snapshot, 40);
    let (ok, out) = cache_command(&["prune", "--dry-run"]);
    assert!(ok && out.contains(&format!("would remove {} (", snapshot.display())) && out.contains("unused for 40 days"), "{out}");
    assert!(snapshot.is_dir(), "a dry run removes nothing: {out}");
    let (ok, out) = cache_command(&["prune", "--unused-for", "35"]);
    assert!(ok && out.contains(&format!("removed {} (", snapshot.display())), "{out}");
    assert!(!snapshot.exists() && pycache.is_dir(), "{out}");
}
