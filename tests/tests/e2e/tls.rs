//! HTTPS on wasgi's own listener, with a real client (curl): HTTP/2 and
//! HTTP/1.1 by ALPN, the environ an app sees behind TLS, the certificate
//! read again on SIGHUP without dropping a request in flight, and the
//! errors for a key that is missing or belongs to another certificate.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use wasgi_tests::{apps, run_to_end, start_command, TempDir, Wasgi};

/// A test certificate authority and the server certificates it signs.
pub(crate) struct Authority {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
    dir: PathBuf,
}

impl Authority {
    pub(crate) fn new(dir: &Path) -> Authority {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "wasgi test CA");
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        Authority { key, cert, dir: dir.to_owned() }
    }

    pub(crate) fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for localhost and NAME.example.com, named `name` (its
    /// common name), written as NAME.crt and NAME.key.
    pub(crate) fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned(), format!("{name}.example.com")]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let (cert_file, key_file) = (self.dir.join(format!("{name}.crt")), self.dir.join(format!("{name}.key")));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }
}

/// curl to https://localhost:PORT/PATH (resolved to the server's address),
/// trusting only the test CA: its exit status, stdout and stderr.
fn curl(server: &Wasgi, ca: &Path, path: &str, extra: &[&str]) -> (bool, String, String) {
    let port = server.addr.rsplit(':').next().unwrap();
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args(extra)
        .arg(format!("https://localhost:{port}{path}"))
        .stdin(Stdio::null())
        .output()
        .expect("curl runs");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn start_tls(cert: &Path, key: &Path) -> Wasgi {
    let script = apps().join("features.wsgi");
    Wasgi::start(&[script.to_str().unwrap(), "--instances", "2", "--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()])
}

#[test]
fn https_serves_http2_and_http11_and_the_app_sees_https() {
    let dir = TempDir::new("tls");
    let ca = Authority::new(dir.path());
    let (cert, key) = ca.issue("wasgi-one");
    let server = start_tls(&cert, &key);
    assert!(server.log.text().contains("on https://127.0.0.1:"), "the serving line says https:\n{}", server.log.text());

    let (ok, out, err) = curl(&server, &ca.ca_file(), "/probe/tls", &["--http2", "-w", "\n%{http_version}"]);
    assert!(ok, "{err}");
    assert_eq!(out, "probe\n\n2", "HTTP/2 chosen by ALPN");
    let (ok, out, err) = curl(&server, &ca.ca_file(), "/probe/tls", &["--http1.1", "-w", "\n%{http_version}"]);
    assert!(ok, "{err}");
    assert_eq!(out, "probe\n\n1.1");
    // TLS 1.2 is still offered beside 1.3.
    let (ok, _, err) = curl(&server, &ca.ca_file(), "/probe/tls12", &["--tlsv1.2", "--tls-max", "1.2"]);
    assert!(ok, "TLS 1.2: {err}");

    // As mod_wsgi behind mod_ssl: the scheme says https and HTTPS itself
    // is not passed on (mod_wsgi turns it into wsgi.url_scheme).
    let (ok, out, err) = curl(&server, &ca.ca_file(), "/environ", &[]);
    assert!(ok, "{err}");
    let environ: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(environ["wsgi.url_scheme"], "https", "{out}");
    assert_eq!(environ["REQUEST_SCHEME"], "https", "{out}");
    assert_eq!(environ["SERVER_PORT"], server.addr.rsplit(':').next().unwrap(), "{out}");
    assert!(environ.get("HTTPS").is_none(), "{out}");

    // Plain HTTP on the TLS port gets no answer, and the server goes on.
    let plain = std::panic::catch_unwind(|| wasgi_tests::http::get(&server.addr, "/probe/plain"));
    assert!(plain.is_err() || plain.as_ref().unwrap().status != 200, "plain HTTP was served on a TLS listener");
    assert!(curl(&server, &ca.ca_file(), "/probe/after", &[]).0);
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_a_request() {
    let dir = TempDir::new("tls-reload");
    let ca = Authority::new(dir.path());
    let (cert, key) = ca.issue("wasgi-one");
    let live = (dir.path().join("live.crt"), dir.path().join("live.key"));
    std::fs::copy(&cert, &live.0).unwrap();
    std::fs::copy(&key, &live.1).unwrap();
    let mut server = start_tls(&live.0, &live.1);
    let subject = |server: &Wasgi| {
        let (ok, _, err) = curl(server, &ca.ca_file(), "/probe/who", &["-v"]);
        assert!(ok, "{err}");
        err.lines().find(|l| l.contains("subject:")).unwrap_or_default().to_owned()
    };
    assert!(subject(&server).contains("CN=wasgi-one"));

    // A request in flight across the reload.
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let slow = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert"])
        .arg(ca.ca_file())
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1"), "-w", "\n%{http_code}"])
        .arg(format!("https://localhost:{port}/sleep?s=2"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let (cert2, key2) = ca.issue("wasgi-two");
    std::fs::copy(&cert2, &live.0).unwrap();
    std::fs::copy(&key2, &live.1).unwrap();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    server.log.wait_for("TLS certificate", Duration::from_secs(20));
    let slow = slow.wait_with_output().unwrap();
    assert!(slow.status.success(), "{}", String::from_utf8_lossy(&slow.stderr));
    assert!(String::from_utf8_lossy(&slow.stdout).ends_with("\n200"), "{}", String::from_utf8_lossy(&slow.stdout));
    server.log.wait_for("reloaded", Duration::from_secs(60));
    assert!(subject(&server).contains("CN=wasgi-two"), "{}", server.log.text());

    // A key that does not match: refused with its reason, the pair in use stays.
    std::fs::copy(&key, &live.1).unwrap();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    let log = server.log.wait_for("is not reloaded", Duration::from_secs(20));
    assert!(log.contains("does not belong to the certificate"), "{log}");
    assert!(subject(&server).contains("CN=wasgi-two"));
    server.terminate();
}

#[test]
fn a_missing_or_mismatched_key_is_a_clear_error_at_start() {
    let dir = TempDir::new("tls-bad");
    let ca = Authority::new(dir.path());
    let (cert, _) = ca.issue("wasgi-one");
    let (_, other_key) = ca.issue("wasgi-two");
    let script = apps().join("features.wsgi");
    let script = script.to_str().unwrap();

    let missing = dir.path().join("missing.key");
    let (ok, out) = run_to_end(start_command(&[script, "--tls-cert", cert.to_str().unwrap(), "--tls-key", missing.to_str().unwrap()]));
    assert!(!ok);
    assert!(out.contains(&format!("--tls-key {}: cannot read it", missing.display())), "{out}");

    let (ok, out) = run_to_end(start_command(&[script, "--tls-cert", cert.to_str().unwrap(), "--tls-key", other_key.to_str().unwrap()]));
    assert!(!ok);
    assert!(out.contains(&format!("the TLS key {} does not belong to the certificate {}", other_key.display(), cert.display())), "{out}");
    assert!(!out.contains("serving "), "{out}");

    let (ok, out) = run_to_end(start_command(&[script, "--tls-cert", cert.to_str().unwrap(), "--tls-key", cert.to_str().unwrap()]));
    assert!(!ok);
    assert!(out.contains("holds no private key"), "{out}");
}
