//! Issue 18: the C extensions of an app's pip-installed environment are
//! built from their sdists and linked into the group's interpreter, so the
//! app imports them as built-in modules; a changed version gets a new
//! variant; a package without a recipe gets a clear error.

use std::time::Duration;

use wasgi_tests::{apps, own_interpreter, pip_packages, TempDir, Wasgi};

/// A variant's first build (sdists fetched, compiled, relinked, compiled by
/// Cranelift) takes a minute or more, ten with numpy or the Rust packages
/// while another builds beside it on 2 cores (a fresh CI machine); a later
/// start finds it in the cache.
const FIRST_BUILD: Duration = Duration::from_secs(1200);

fn json(r: &wasgi_tests::http::Response) -> serde_json::Value {
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
}

/// Starts `args` and waits through a first build of the variant.
fn start_building(args: &[&str]) -> Wasgi {
    Wasgi::spawn(args).wait_ready_within(FIRST_BUILD)
}

/// One environment, one interpreter variant: C extensions (MarkupSafe,
/// PyYAML over libyaml, msgpack, SQLAlchemy's Cython, lxml over libxml2 and
/// libxslt) and Rust ones (bcrypt, orjson, pydantic-core).
#[test]
fn flask_app_runs_its_c_and_rust_extensions_built_in() {
    own_interpreter();
    let packages = pip_packages(
        "extensions-app",
        &[
            "flask==3.1.*",
            "MarkupSafe==3.0.4",
            "PyYAML==6.0.4",
            "msgpack==1.2.4",
            "SQLAlchemy==2.1.9",
            "lxml==6.2.1",
            "bcrypt==5.0.0",
            "orjson==3.13.0",
            "pydantic==2.14.4",
        ],
    );
    let script = apps().join("extensions_app.wsgi");
    let server = start_building(&[script.to_str().unwrap(), "--python-path", packages.to_str().unwrap(), "--instances", "1"]);

    let r = json(&server.get("/markupsafe"));
    assert_eq!(r["page"], "<p>&lt;a href=&#39;x&#39;&gt;&amp;</p>");
    assert_eq!(r["origin"], "built-in", "markupsafe._speedups is the built-in module: {r}");

    let r = json(&server.get("/yaml"));
    assert_eq!(r["doc"], serde_json::json!({"name": "wasgi", "items": [1, 2.5, "three"], "nested": {"a": true}}));
    assert_eq!(r["dumped"], "b:\n- 1\n- 2\n");
    assert_eq!((r["with_libyaml"].as_bool(), r["origin"].as_str()), (Some(true), Some("built-in")), "{r}");

    let r = json(&server.get("/msgpack"));
    assert_eq!((r["same"].as_bool(), r["packer"].as_str(), r["origin"].as_str()), (Some(true), Some("msgpack._cmsgpack"), Some("built-in")), "{r}");

    let r = json(&server.get("/sqlalchemy"));
    assert_eq!(r["rows"], serde_json::json!([[46, "item 45"], [47, "item 46"], [48, "item 47"], [49, "item 48"], [50, "item 49"]]));
    assert_eq!((r["cython"].as_bool(), r["origin"].as_str()), (Some(true), Some("built-in")), "{r}");

    let r = json(&server.get("/lxml"));
    assert_eq!(r["cheap"], serde_json::json!(["Emma & Co"]));
    assert_eq!(r["total"], 13.5);
    assert_eq!(r["html"], "<html><body><p>unclosed <b>bold</b></p></body></html>");
    assert_eq!(r["origin"], "built-in", "{r}");

    // Rust: bcrypt with a fixed salt hashes as bcrypt does natively.
    let salt = "$2b$04$abcdefghijklmnopqrstuu";
    let r = server.post(&format!("/bcrypt?salt={}", salt.replace('$', "%24")), b"correct horse");
    let r = json(&r);
    assert_eq!((r["right"].as_bool(), r["wrong"].as_bool(), r["origin"].as_str()), (Some(true), Some(false), Some("built-in")), "{r}");
    let native = native_answer(&packages, &script, "POST", &format!("/bcrypt?salt={}", salt.replace('$', "%24")), b"correct horse");
    assert_eq!(r["hash"], native["hash"], "bcrypt's hash differs from native bcrypt's");

    let r = server.post("/orjson", br#"{"b": [1, 2.5, null, true], "a": "\u00e9\u2713", "n": 9007199254740993}"#);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        r#"{"doc":{"a":"é✓","b":[1,2.5,null,true],"n":9007199254740993},"origin":"built-in"}"#
    );

    let r = server.post("/pydantic", br#"{"id": "7", "customer": "Ann", "items": [1, "2"]}"#);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = json(&r);
    assert_eq!(r["order"], serde_json::json!({"id": 7, "customer": "Ann", "items": [1, 2], "note": null}));
    assert_eq!(r["origin"], "built-in");
    let r = server.post("/pydantic", br#"{"id": "x", "customer": "A", "items": 3}"#);
    assert_eq!(r.status, 422);
    let errors: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        errors["errors"],
        serde_json::json!([
            {"loc": ["id"], "type": "int_parsing"},
            {"loc": ["customer"], "type": "string_too_short"},
            {"loc": ["items"], "type": "list_type"}
        ])
    );

    let log = server.log.text();
    assert!(log.contains("markupsafe._speedups"), "the log names the built-in extension modules:\n{log}");
}

/// Writes `dir`/app.wsgi, which answers MarkupSafe's installed version,
/// where `markupsafe._speedups` came from ("built-in", or "pure" when it was
/// not imported) and an escaped string; the script's path.
fn write_markupsafe_app(dir: &std::path::Path) -> std::path::PathBuf {
    let script = dir.join("app.wsgi");
    std::fs::write(
        &script,
        "import sys, markupsafe\n\
         from importlib.metadata import version\n\
         def application(environ, start_response):\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   m = sys.modules.get('markupsafe._speedups')\n\
         \x20   return [f\"{version('markupsafe')} {m.__spec__.origin if m else 'pure'} {markupsafe.escape('<&>')}\".encode()]\n",
    )
    .unwrap();
    script
}

/// MarkupSafe 2.1.5 and then 3.0.4 in the group's environment: each start
/// runs a variant with that version's speedups built in.
#[test]
fn a_changed_version_in_the_environment_gets_its_own_variant() {
    own_interpreter();
    let old = pip_packages("markupsafe-2.1.5", &["MarkupSafe==2.1.5"]);
    let new = pip_packages("markupsafe-3.0.4", &["MarkupSafe==3.0.4"]);
    let dir = TempDir::new("ext-version");
    let script = write_markupsafe_app(dir.path());
    let mut answers = Vec::new();
    for packages in [&old, &new] {
        let mut server = start_building(&[script.to_str().unwrap(), "--python-path", packages.to_str().unwrap(), "--instances", "1"]);
        answers.push(server.get("/").text());
        server.terminate();
    }
    assert_eq!(answers, ["2.1.5 built-in &lt;&amp;&gt;", "3.0.4 built-in &lt;&amp;&gt;"]);
}

/// ujson is C only (no pure-Python fallback) and has no recipe: the app's
/// import fails with a message naming the package and its host-built file.
#[test]
fn a_c_extension_without_a_recipe_fails_with_a_clear_error() {
    own_interpreter();
    let packages = pip_packages("ujson", &["ujson==5.10.0"]);
    let dir = TempDir::new("ext-norecipe");
    let script = dir.path().join("app.wsgi");
    std::fs::write(&script, "import ujson\napplication = None\n").unwrap();
    let mut server = Wasgi::spawn(&[script.to_str().unwrap(), "--python-path", packages.to_str().unwrap(), "--instances", "1"]);
    let status = server.wait(Duration::from_secs(120));
    assert!(!status.success());
    let log = server.log.text();
    assert!(log.contains("ujson"), "{log}");
    assert!(log.contains(".so"), "the host-built file is named:\n{log}");
    assert!(log.contains("no recipe"), "the message says wasgi has no recipe for it:\n{log}");
}

/// The (width, height) a JPEG's start-of-frame says.
fn jpeg_size(data: &[u8]) -> (u32, u32) {
    assert_eq!(&data[..2], b"\xff\xd8", "not a JPEG");
    let mut i = 2;
    while i + 9 < data.len() {
        let (marker, len) = (data[i + 1], u16::from_be_bytes([data[i + 2], data[i + 3]]) as usize);
        if (0xc0..=0xc3).contains(&marker) {
            let h = u16::from_be_bytes([data[i + 5], data[i + 6]]) as u32;
            let w = u16::from_be_bytes([data[i + 7], data[i + 8]]) as u32;
            return (w, h);
        }
        i += 2 + len;
    }
    panic!("no start-of-frame in the JPEG");
}

/// The same app run natively by the host's Python from the same packages
/// (Flask's test client): what the sandbox must answer.
fn native_answer(packages: &std::path::Path, script: &std::path::Path, method: &str, path: &str, body: &[u8]) -> serde_json::Value {
    let out = std::process::Command::new("python3")
        .env("PYTHONPATH", packages)
        .args([
            "-c",
            "import json, runpy, sys\n\
             app = runpy.run_path(sys.argv[1])['application']\n\
             r = app.test_client().open(sys.argv[3], method=sys.argv[2], data=sys.stdin.buffer.read())\n\
             assert r.status_code == 200, r.status\n\
             print(json.dumps(r.get_json()))",
        ])
        .arg(script)
        .args([method, path])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(body)?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "the app failed natively");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A Flask app using Pillow and numpy from its pip-installed environment:
/// a JPEG made natively by the same Pillow goes in, a JPEG and a PNG
/// thumbnail of the asked size come out; numpy reads the image as an array
/// and makes one, and its linear algebra, FFT and random generators answer
/// what the same numpy answers natively.
#[test]
fn flask_app_uses_pillow_and_numpy_built_in() {
    own_interpreter();
    let packages = pip_packages("imaging-app", &["flask==3.1.*", "Pillow==13.0.0", "numpy==2.4.6"]);
    let dir = TempDir::new("ext-imaging");
    let photo = dir.path().join("photo.jpg");
    let made = std::process::Command::new("python3")
        .env("PYTHONPATH", &packages)
        .args([
            "-c",
            "import sys; from PIL import Image, ImageDraw\n\
             im = Image.new('RGB', (640, 480), (30, 90, 200)); ImageDraw.Draw(im).ellipse((100, 100, 540, 380), fill=(250, 200, 0))\n\
             im.save(sys.argv[1], 'JPEG', quality=92)",
        ])
        .arg(&photo)
        .status()
        .unwrap();
    assert!(made.success());
    let script = apps().join("imaging_app.wsgi");
    let server = start_building(&[script.to_str().unwrap(), "--python-path", packages.to_str().unwrap(), "--instances", "1"]);

    let r = json(&server.get("/draw"));
    assert_eq!((r["size"].clone(), r["corner"].clone()), (serde_json::json!([200, 100]), serde_json::json!([255, 0, 0])));
    assert_eq!(r["origin"], "built-in", "{r}");

    let jpeg = std::fs::read(&photo).unwrap();
    let r = server.post("/thumbnail?size=128", &jpeg);
    assert_eq!((r.status, r.header("content-type")), (200, Some("image/jpeg")), "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(jpeg_size(&r.body), (128, 96), "the thumbnail keeps the aspect ratio");

    let r = server.post("/thumbnail?size=64&format=PNG", &jpeg);
    assert_eq!((r.status, r.header("content-type")), (200, Some("image/png")));
    assert_eq!(&r.body[..8], b"\x89PNG\r\n\x1a\n");
    let (w, h) = (u32::from_be_bytes(r.body[16..20].try_into().unwrap()), u32::from_be_bytes(r.body[20..24].try_into().unwrap()));
    assert_eq!((w, h), (64, 48));

    // numpy over the decoded JPEG: the same shape and channel means as natively.
    let mut r = json(&server.post("/stats", &jpeg));
    assert_eq!(r["origin"], "built-in", "{r}");
    assert_eq!(r["shape"], serde_json::json!([480, 640, 3]));
    let mut native = native_answer(&packages, &script, "POST", "/stats", &jpeg);
    for v in [&mut r, &mut native] {
        v.as_object_mut().unwrap().remove("origin");
    }
    assert_eq!(r, native, "numpy's means of the image differ from native numpy's");

    // An array made by numpy, served as a PNG by Pillow.
    let r = server.get("/gradient?w=300&h=20");
    assert_eq!((r.status, r.header("content-type")), (200, Some("image/png")));
    let (w, h) = (u32::from_be_bytes(r.body[16..20].try_into().unwrap()), u32::from_be_bytes(r.body[20..24].try_into().unwrap()));
    assert_eq!((w, h), (300, 20));

    let mut r = json(&server.get("/numbers"));
    let modules = r.as_object_mut().unwrap().remove("modules").unwrap();
    for m in ["numpy._core._multiarray_umath", "numpy.linalg._umath_linalg", "numpy.fft._pocketfft_umath", "numpy.random._generator", "numpy.random.mtrand"] {
        assert!(modules.as_array().unwrap().iter().any(|x| x == m), "{m} is not built in: {modules}");
    }
    let mut native = native_answer(&packages, &script, "GET", "/numbers", b"");
    native.as_object_mut().unwrap().remove("modules");
    assert_eq!(r, native, "numpy in the sandbox answers otherwise than natively");
}

/// psycopg2 (its C extension over libpq, built in) on a real PostgreSQL:
/// libpq's sockets are wasgi's host connections, so with a grant it
/// connects by name (TLS, as libpq's sslmode=prefer asks) and over the Unix
/// socket, creates a table, inserts and selects; without one the
/// connection fails with an OperationalError and the log says why.
#[test]
fn psycopg2_connects_to_postgresql_through_the_hosts_grants() {
    own_interpreter();
    let pg = wasgi_tests::servers::Postgres::start();
    let packages = pip_packages("psycopg2-app", &["psycopg2==2.9.13"]);
    let script = apps().join("psycopg2_app.wsgi");
    let (script, packages) = (script.to_str().unwrap(), packages.to_str().unwrap());
    let tcp = format!("localhost:{}", pg.port);
    let unix = format!("unix:{}", pg.socket_path().display());
    let creds = format!("port={}&user={}&password={}&db={}", pg.port, pg.user, pg.password, pg.database);
    let server = start_building(&[script, "--python-path", packages, "--instances", "1", "--connect", &tcp, "--connect", &unix]);

    let r = server.get(&format!("/notes?host=localhost&{creds}&notes=first,second"));
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log.text());
    let r = json(&r);
    assert_eq!(r["rows"], serde_json::json!([[1, "first"], [2, "second"]]), "{r}");
    assert_eq!((r["ssl"].as_bool(), r["origin"].as_str()), (Some(true), Some("built-in")), "{r}");
    assert!(r["server_version"].as_i64().unwrap() >= 100000, "{r}");
    let r = server.get(&format!("/notes?host={}&{creds}&notes=third", pg.socket_dir.display()));
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log.text());
    let r = json(&r);
    assert_eq!(r["rows"], serde_json::json!([[1, "first"], [2, "second"], [3, "third"]]), "{r}");
    assert_eq!(r["ssl"], false, "{r}");
    assert_eq!(pg.query("SELECT string_agg(body, ',' ORDER BY id) FROM psycopg2_notes").trim(), "first,second,third");
    drop(server);

    // Without a grant: refused by the host, an OperationalError in the app.
    let server = Wasgi::start(&[script, "--python-path", packages, "--instances", "1"]);
    let r = server.get(&format!("/notes?host=127.0.0.1&{creds}&notes=x"));
    assert_eq!(r.status, 502, "{}", r.text());
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["error"], "OperationalError", "{body}");
    assert!(body["message"].as_str().unwrap().contains("Permission denied"), "{body}");
    // A denial is a record of several lines: wait for the one that names the fix.
    let log = server.log.wait_for(&format!("--connect 127.0.0.1:{}", pg.port), Duration::from_secs(10));
    assert!(log.contains(&format!("denied: connecting to 127.0.0.1:{}", pg.port)), "{log}");
    // A name no grant names is not even looked up.
    let r = server.get(&format!("/notes?host=localhost&{creds}&notes=x"));
    assert_eq!(r.status, 502, "{}", r.text());
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(body["message"].as_str().unwrap().contains("no [[connect]] grant"), "{body}");
    server.log.wait_for("denied: looking up \"localhost\"", Duration::from_secs(10));
    // Nor is the socket reached.
    let r = server.get(&format!("/notes?host={}&{creds}&notes=x", pg.socket_dir.display()));
    assert_eq!(r.status, 502, "{}", r.text());
    server.log.wait_for(&format!("denied: connecting to unix:{}", pg.socket_path().display()), Duration::from_secs(10));
    assert_eq!(pg.query("SELECT count(*) FROM psycopg2_notes").trim(), "3");
}

/// `wasgi run` keeps its interpreter across SIGHUP: after the environment's
/// MarkupSafe changes from 3.0.2 to 3.0.4 under it, the built-in 3.0.2
/// speedups (which 3.0.4 would import) are refused, the log says why and
/// what to do, and MarkupSafe 3.0.4 runs in pure Python, escaping as before.
#[test]
fn a_built_in_extension_is_refused_once_its_package_changed_under_the_running_server() {
    own_interpreter();
    let old = pip_packages("markupsafe-3.0.2", &["MarkupSafe==3.0.2"]);
    let new = pip_packages("markupsafe-3.0.4", &["MarkupSafe==3.0.4"]);
    let dir = TempDir::new("ext-swapped");
    let env = dir.path().join("env");
    // The directory stays (the group's grant holds it open); what is in it changes.
    let copy = |from: &std::path::Path| {
        std::fs::create_dir_all(&env).unwrap();
        for entry in std::fs::read_dir(&env).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { std::fs::remove_dir_all(&path).unwrap() } else { std::fs::remove_file(&path).unwrap() }
        }
        let status = std::process::Command::new("cp").arg("-a").arg(format!("{}/.", from.display())).arg(&env).status().unwrap();
        assert!(status.success());
    };
    copy(&old);
    let script = write_markupsafe_app(dir.path());
    let server = start_building(&[script.to_str().unwrap(), "--python-path", env.to_str().unwrap(), "--instances", "1"]);
    assert_eq!(server.get("/").text(), "3.0.2 built-in &lt;&amp;&gt;");

    copy(&new);
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    server.log.wait_for("SIGHUP: restarting the instances", Duration::from_secs(10));
    let log = server.log.wait_for("was built from 3.0.2: it is not used", Duration::from_secs(60));
    assert!(log.contains("MarkupSafe in the environment is now 3.0.4"), "{log}");
    // The old instance answers until its replacement is ready.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut answer = server.get("/").text();
    while answer != "3.0.4 pure &lt;&amp;&gt;" && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        answer = server.get("/").text();
    }
    assert_eq!(answer, "3.0.4 pure &lt;&amp;&gt;", "the new instance runs 3.0.4 in pure Python");
}
