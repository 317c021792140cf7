//! A real Flask app (installed from PyPI by the test setup) with a factory,
//! JSON, forms with file uploads, sessions and templates.

use wasgi_tests::{apps, flask_packages, Wasgi};

fn flask_server() -> Wasgi {
    let packages = flask_packages();
    let script = apps().join("flask_factory.wsgi");
    Wasgi::start(&[script.to_str().unwrap(), "--python-path", packages.to_str().unwrap(), "--instances", "1"])
}

#[test]
fn flask_factory_app_serves_json_forms_sessions_and_templates() {
    let server = flask_server();
    let r = server.get("/");
    assert_eq!((r.status, r.text().as_str()), (200, "Hello from a Flask factory\n"));

    let body = br#"{"name": "wasgi", "n": [1, 2]}"#;
    let mut raw = format!(
        "POST /json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    let r = server.request(&raw);
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(json["received"]["name"], "wasgi");
    assert_eq!(json["method"], "POST");

    let boundary = "XyZ";
    let file = vec![b'z'; 100_000];
    let mut multipart = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nalice\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"z.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    multipart.extend_from_slice(&file);
    multipart.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut raw = format!(
        "POST /form HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        multipart.len()
    )
    .into_bytes();
    raw.extend_from_slice(&multipart);
    let r = server.request(&raw);
    assert_eq!(r.text(), "alice uploaded 100000 bytes");

    let r = server.get("/count");
    let cookie = r.header("set-cookie").expect("a session cookie").split(';').next().unwrap().to_owned();
    let r = server.request(format!("GET /count HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n").as_bytes());
    assert_eq!(r.text(), "2", "the signed session cookie round-trips");

    let r = server.get("/template");
    assert_eq!(r.text(), "<p>&lt;script&gt;</p>", "Jinja autoescapes (markupsafe's pure-Python fallback)");

    let r = server.request(b"GET /where?q=1 HTTP/1.1\r\nHost: app.example:8080\r\nConnection: close\r\n\r\n");
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(json["url"], "http://app.example:8080/where");
    assert_eq!(json["remote"], "127.0.0.1");
    assert_eq!(json["args"]["q"], "1");
}

#[test]
fn the_hello_example_serves_as_the_readme_says() {
    let packages = flask_packages();
    let example = wasgi_tests::root().join("examples/hello");
    let script = example.join("hello.wsgi");
    let server = Wasgi::start(&[
        script.to_str().unwrap(),
        "--python-path",
        example.to_str().unwrap(),
        "--python-path",
        packages.to_str().unwrap(),
    ]);
    let r = server.get("/");
    assert_eq!((r.status, r.text().as_str()), (200, "Hello from Flask inside wasgi!\n"));
    let r = server.post("/echo", b"echo me");
    assert_eq!(r.text(), "echo me");
}
