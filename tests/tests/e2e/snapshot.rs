//! Snapshots (our own CPython 3.13 build): a group's app is imported once,
//! the guest snapshotted, and every instance starts from the snapshot. The
//! app counts its imports in a file, so the tests see what happened.

use std::path::Path;
use std::time::Duration;

use wasgi_tests::{apps, own_interpreter, TempDir, Wasgi};

/// The counting app, copied into a fresh directory the guest may write.
fn app_dir(label: &str) -> TempDir {
    let dir = TempDir::new(label);
    std::fs::copy(apps().join("snapshot_counter.wsgi"), dir.path().join("app.wsgi")).unwrap();
    std::fs::write(dir.path().join("greeting.txt"), "hello\n").unwrap();
    dir
}

/// The app on cpython-3.13 with snapshots on.
fn start(dir: &Path, extra: &[&str]) -> Wasgi {
    start_with(dir, &[&["--snapshot"], extra].concat())
}

fn start_with(dir: &Path, extra: &[&str]) -> Wasgi {
    own_interpreter();
    let script = dir.join("app.wsgi");
    let mut args = vec![script.to_str().unwrap(), "--interpreter", "cpython-3.13", "--grant-write", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    Wasgi::start(&args)
}

fn imports(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("imports.log")).unwrap_or_default().lines().count()
}

#[test]
fn instances_start_from_one_import_and_the_snapshot_is_reused() {
    let dir = app_dir("snap-reuse");
    let mut server = start(dir.path(), &["--instances", "2"]);
    for _ in 0..4 {
        let r = server.get("/");
        assert_eq!(r.status, 200, "{}", server.log.text());
        assert!(r.text().starts_with("version 1 hello hits="), "{}", r.text());
    }
    assert_eq!(imports(dir.path()), 1, "two instances, one import: {}", server.log.text());
    assert!(server.log.text().contains("snapshot built in"), "{}", server.log.text());
    let builder_rss = server.rss();
    server.terminate();

    // A second server finds the snapshot on disk: no import at all.
    let mut server = start(dir.path(), &["--instances", "2"]);
    assert!(server.get("/").text().starts_with("version 1 hello"));
    assert_eq!(imports(dir.path()), 1, "{}", server.log.text());
    assert!(!server.log.text().contains("snapshot built in"), "{}", server.log.text());
    // The server that built the snapshot keeps no more than one that loaded
    // it: the compile's memory is handed back and the stored file mapped
    // (it stayed about 400 MiB larger before).
    let loaded_rss = server.rss();
    assert!(builder_rss < loaded_rss + (150 << 20), "built {} MiB, loaded {} MiB", builder_rss >> 20, loaded_rss >> 20);
    server.terminate();

    // Without snapshots (the default) each instance imports the app.
    let mut server = start_with(dir.path(), &["--instances", "2"]);
    assert!(server.get("/").text().starts_with("version 1 hello"));
    assert_eq!(imports(dir.path()), 3, "{}", server.log.text());
    server.terminate();
}

#[test]
fn a_changed_app_or_file_it_read_gets_a_new_snapshot() {
    let dir = app_dir("snap-change");
    let mut server = start(dir.path(), &["--instances", "1", "--reload"]);
    assert!(server.get("/").text().starts_with("version 1 hello"));

    // The script changes: reload_on_change starts instances from a new snapshot.
    let script = dir.path().join("app.wsgi");
    let text = std::fs::read_to_string(&script).unwrap().replace("version 1", "version 2");
    std::thread::sleep(Duration::from_millis(1100)); // a new modification time
    std::fs::write(&script, text).unwrap();
    server.log.wait_for("reloaded:", Duration::from_secs(120));
    let r = server.get("/");
    assert!(r.text().starts_with("version 2 hello"), "{} {}", r.text(), server.log.text());
    assert_eq!(imports(dir.path()), 2);
    server.terminate();

    // A file the import read changes while no server runs: the snapshot on
    // disk is stale and is not used.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(dir.path().join("greeting.txt"), "bonjour\n").unwrap();
    let mut server = start(dir.path(), &["--instances", "1"]);
    let r = server.get("/");
    assert!(r.text().starts_with("version 2 bonjour"), "{} {}", r.text(), server.log.text());
    assert!(server.log.text().contains("greeting.txt changed since the snapshot was made"), "{}", server.log.text());
    assert_eq!(imports(dir.path()), 3);
    server.terminate();
}

#[test]
fn instances_from_one_snapshot_do_not_share_random_state() {
    let dir = app_dir("snap-random");
    let mut values = Vec::new();
    for _ in 0..2 {
        let mut server = start(dir.path(), &["--instances", "1"]);
        values.push(server.get("/random").text());
        server.terminate();
    }
    assert_eq!(imports(dir.path()), 1, "the second server used the snapshot");
    assert_ne!(values[0], values[1], "random was seeded at import and restored twice: {values:?}");
}

#[test]
fn an_app_keeping_a_file_open_is_imported_by_each_instance_instead() {
    let dir = app_dir("snap-open");
    std::fs::write(dir.path().join("keep-open"), "x").unwrap();
    let mut server = start(dir.path(), &["--instances", "2"]);
    let r = server.get("/keep-open");
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("kept: "), "{}", r.text());
    let log = server.log.text();
    assert!(log.contains("not snapshotting: the app keeps 1 file(s) open after its import"), "{log}");
    // The snapshot attempt imported once, then each instance imported it.
    assert_eq!(imports(dir.path()), 3, "{log}");
    server.terminate();
}

#[test]
fn an_app_that_fails_to_import_shows_its_traceback_once() {
    own_interpreter();
    let script = apps().join("raises.wsgi");
    let mut server = Wasgi::spawn(&[script.to_str().unwrap(), "--interpreter", "cpython-3.13", "--snapshot", "--instances", "2"]);
    let status = server.wait(Duration::from_secs(120));
    assert!(!status.success());
    let log = server.log.text();
    assert!(log.contains("Traceback (most recent call last)"), "{log}");
    assert!(log.contains("raises.wsgi\", line 3"), "{log}");
    assert_eq!(log.matches("Traceback (most recent call last)").count(), 1, "{log}");
}

#[test]
fn request_isolation_gives_every_request_a_fresh_instance() {
    let dir = app_dir("snap-isolation");
    let mut server = start(dir.path(), &["--instances", "2", "--isolation", "request"]);
    // More requests than instances: instances (and their reused memory) come and go.
    for i in 0..12 {
        let r = server.get("/");
        assert_eq!(r.status, 200, "{}", server.log.text());
        // The module-level counter another request incremented is gone.
        assert_eq!(r.text(), "version 1 hello hits=1", "request {i}: {}", server.log.text());
    }
    assert_eq!(imports(dir.path()), 1, "one import, for the snapshot: {}", server.log.text());
    server.terminate();

    // The same app with long-lived instances keeps its state.
    let mut server = start(dir.path(), &["--instances", "1"]);
    assert_eq!(server.get("/").text(), "version 1 hello hits=1");
    assert_eq!(server.get("/").text(), "version 1 hello hits=2");
    server.terminate();
}

#[test]
fn warm_up_requests_run_once_before_the_snapshot_and_every_instance_starts_after_them() {
    let dir = app_dir("snap-warmup");
    let mut server = start(dir.path(), &["--instances", "2", "--isolation", "request", "--warmup", "/"]);
    for i in 0..8 {
        let r = server.get("/");
        assert_eq!(r.status, 200, "{}", server.log.text());
        // Four warm-up calls are in the snapshot; each request adds its own, and only its own.
        assert_eq!(r.text(), "version 1 hello hits=5", "request {i}: {}", server.log.text());
    }
    let log = server.log.text();
    assert_eq!(log.matches("warm-up GET / before the snapshot: 200 OK").count(), 1, "{log}");
    assert_eq!(imports(dir.path()), 1, "{log}");
    server.terminate();
}

/// A group in wasgi.toml with the given extra keys, for `wasgi check`.
fn config_with(dir: &Path, group_keys: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("app.wsgi"), "def application(e, s):\n    s('200 OK', [])\n    return [b'ok']\n").unwrap();
    let text = format!(
        "[[listen]]\naddress = \"127.0.0.1:0\"\n\n[[group]]\nname = \"g\"\ninstances = 1\n{group_keys}\n\n[[app]]\nhost = \"g.example\"\nscript = \"{}\"\ngroup = \"g\"\n",
        dir.join("app.wsgi").display()
    );
    let file = dir.join("wasgi.toml");
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn check_shows_snapshot_and_isolation_and_refuses_an_unknown_isolation() {
    own_interpreter();
    let dir = TempDir::new("snap-check");
    let (ok, out) = wasgi_tests::check(&config_with(dir.path(), "interpreter = \"cpython-3.13\"\nisolation = \"request\"\nwarmup = [\"/\", \"/health?full=1\"]"));
    assert!(ok, "{out}");
    assert!(out.contains("warmup  GET /, /health?full=1 before the snapshot"), "{out}");
    assert!(out.contains("snapshot  on: instances start from a snapshot"), "{out}");
    assert!(out.contains("isolation  request: a fresh instance for every request"), "{out}");

    let (ok, out) = wasgi_tests::check(&config_with(dir.path(), "interpreter = \"cpython-3.12\""));
    assert!(ok, "{out}");
    assert!(out.contains("snapshot  not available on this interpreter"), "{out}");

    let (ok, out) = wasgi_tests::check(&config_with(dir.path(), "interpreter = \"cpython-3.13\""));
    assert!(ok, "{out}");
    assert!(out.contains("snapshot  off: every instance imports the app"), "{out}");

    let (ok, out) = wasgi_tests::check(&config_with(dir.path(), "isolation = \"per-request\""));
    assert!(!ok, "{out}");
    assert!(out.contains("wasgi.toml:7: group \"g\": isolation") && out.contains("isolation") && out.contains("\"instance\" or \"request\""), "{out}");

    let (ok, out) = wasgi_tests::check(&config_with(dir.path(), "snapshot = true\nwarmup = [\"/\", \"health\"]"));
    assert!(!ok, "{out}");
    assert!(out.contains("wasgi.toml:8: group \"g\": warmup") && out.contains("\"health\": each entry is a path starting with /"), "{out}");
}

#[test]
fn a_snapshot_cut_short_on_disk_is_built_again() {
    let dir = app_dir("snap-cut");
    let mut server = start(dir.path(), &["--instances", "1"]);
    assert!(server.get("/").text().starts_with("version 1 hello"));
    server.terminate();
    // The snapshot of this app: the one whose manifest names its script
    // (other tests build theirs in the same cache at the same time).
    let script = dir.path().join("app.wsgi").display().to_string();
    let snapshots = wasgi_tests::cache_dir().join("snapshots");
    let ours = std::fs::read_dir(&snapshots)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| std::fs::read_to_string(p.join("manifest.json")).is_ok_and(|m| m.contains(&script)))
        .expect("a snapshot of this app");
    let artifact = ours.join("snapshot.cwasm");
    let len = std::fs::metadata(&artifact).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&artifact).unwrap().set_len(len / 2).unwrap();

    let mut server = start(dir.path(), &["--instances", "1"]);
    assert!(server.get("/").text().starts_with("version 1 hello"));
    let log = server.log.text();
    assert!(log.contains("is unusable") && log.contains("building it again"), "{log}");
    assert!(log.contains("snapshot built in"), "{log}");
    assert_eq!(imports(dir.path()), 2);
    server.terminate();
}

#[test]
fn a_warm_up_path_answering_more_than_the_flow_control_window_builds_the_snapshot() {
    let dir = app_dir("snap-warmup-big");
    // 4 MiB: sixteen times the 256 KiB a response may send before the host's "go on".
    let mut server = start(dir.path(), &["--instances", "1", "--warmup", "/big"]);
    let log = server.log.text();
    assert!(log.contains("warm-up GET /big before the snapshot: 200 OK"), "{log}");
    assert!(log.contains("snapshot built in"), "{log}");
    let r = server.get("/big");
    assert_eq!((r.status, r.body.len()), (200, 4 << 20), "{}", server.log.text());
    assert_eq!(imports(dir.path()), 1, "{}", server.log.text());
    server.terminate();
}

#[test]
fn two_groups_build_their_snapshots_at_the_same_time() {
    own_interpreter();
    // Each group's app waits, while it is imported for its snapshot, until
    // the other group's import has begun (tests/apps/snapshot_rendezvous.wsgi).
    let dir = TempDir::new("snap-concurrent");
    let shared = dir.path().join("shared");
    for group in ["a", "b"] {
        std::fs::create_dir_all(shared.join(group)).unwrap();
        std::fs::copy(apps().join("snapshot_rendezvous.wsgi"), shared.join(group).join("app.wsgi")).unwrap();
    }
    std::fs::create_dir_all(dir.path().join("policies/users")).unwrap();
    // Each app's own directory, writable by both groups (so no read-only
    // script directory lies inside a write grant).
    std::fs::write(
        dir.path().join("policies/users/both.toml"),
        ["a", "b"].map(|g| format!("[[grant]]\npath = \"{}\"\naccess = \"write\"\nshared = true\n", shared.join(g).display())).join("\n"),
    )
    .unwrap();
    let mut config = String::from("[[listen]]\naddress = \"127.0.0.1:0\"\n");
    for group in ["a", "b"] {
        config += &format!(
            "\n[[group]]\nname = \"{group}\"\ninstances = 1\nuser = \"both\"\ninterpreter = \"cpython-3.13\"\nsnapshot = true\n\n[[app]]\nhost = \"{group}.example\"\nscript = \"{}\"\ngroup = \"{group}\"\n",
            shared.join(group).join("app.wsgi").display()
        );
    }
    std::fs::write(dir.path().join("wasgi.toml"), config).unwrap();
    let mut server = Wasgi::serve(&dir.path().join("wasgi.toml"));
    for group in ["a", "b"] {
        let r = server.request(format!("GET / HTTP/1.1\r\nHost: {group}.example\r\nConnection: close\r\n\r\n").as_bytes());
        assert_eq!((r.status, r.text()), (200, format!("group {group}\n")), "{}", server.log.text());
    }
    assert_eq!(server.log.text().matches("snapshot built in").count(), 2, "{}", server.log.text());
    server.terminate();
}

#[test]
fn a_guest_reporting_an_absurd_number_of_files_read_is_capped_and_says_so() {
    let dir = app_dir("snap-many-files");
    std::fs::write(dir.path().join("many-modules"), "").unwrap();
    let mut server = start(dir.path(), &["--instances", "1"]);
    let log = server.log.text();
    assert!(log.contains("files read by its import, over the limit of 10000: only the first 10000 are watched"), "{log}");
    let r = server.get("/");
    assert!(r.text().starts_with("version 1 hello"), "{} {log}", r.text());
    server.terminate();
}

/// Tenants that run the same app files as the same user, with the same
/// settings, share one snapshot: it is built once, and each restored
/// instance is told its own group, which its messages name. A tenant that
/// runs as another user sees another user from the import on, so it gets
/// its own snapshot.
#[test]
fn groups_running_the_same_app_as_the_same_user_share_one_snapshot() {
    own_interpreter();
    let dir = TempDir::new("snap-shared");
    let app = dir.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("app.wsgi"),
        "import getpass\nAT_IMPORT = getpass.getuser()\n\n\
         def application(environ, start_response):\n    \
             if environ['PATH_INFO'] == '/deny':\n        \
                 try:\n            open('/etc/shadow')\n        except OSError:\n            pass\n    \
             start_response('200 OK', [('Content-Type', 'text/plain')])\n    \
             return [f'{AT_IMPORT} {getpass.getuser()}\\n'.encode()]\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("policies/users")).unwrap();
    for user in ["tenant", "other"] {
        std::fs::write(dir.path().join(format!("policies/users/{user}.toml")), "").unwrap();
    }
    let mut config = String::from("[[listen]]\naddress = \"127.0.0.1:0\"\n");
    for (group, user) in [("ta", "tenant"), ("tb", "tenant"), ("tc", "other")] {
        config += &format!(
            "\n[[group]]\nname = \"{group}\"\ninstances = 1\nuser = \"{user}\"\ninterpreter = \"cpython-3.13\"\nsnapshot = true\n\n[[app]]\nhost = \"{group}.example\"\nscript = \"{}\"\ngroup = \"{group}\"\n",
            app.join("app.wsgi").display()
        );
    }
    std::fs::write(dir.path().join("wasgi.toml"), config).unwrap();
    let mut server = Wasgi::serve(&dir.path().join("wasgi.toml"));
    for (group, user) in [("ta", "tenant"), ("tb", "tenant"), ("tc", "other")] {
        let r = server.request(format!("GET /deny HTTP/1.1\r\nHost: {group}.example\r\nConnection: close\r\n\r\n").as_bytes());
        assert_eq!((r.status, r.text()), (200, format!("{user} {user}\n")), "{group}: {}", server.log.text());
        let log = server.log.wait_for(&format!("Group '{group}'"), Duration::from_secs(10));
        let denial = log.lines().find(|l| l.contains(&format!("Group '{group}'"))).unwrap();
        assert!(denial.contains("denied: reading /etc/shadow") && denial.contains(&format!("app={group}:app.wsgi")), "{denial}");
    }
    let log = server.log.text();
    assert_eq!(log.matches("snapshot built in").count(), 2, "one snapshot for ta and tb, one for tc:\n{log}");
    assert!(!log.lines().any(|l| l.contains("Group 'ta'") && l.contains("app=tb:")), "tb's messages name tb:\n{log}");
    server.terminate();
}
