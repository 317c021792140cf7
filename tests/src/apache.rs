//! A real Apache httpd 2.4 for the proxy tests: Debian's `apache2` (and
//! `libapache2-mod-wsgi-py3` for the comparison with mod_wsgi), installed with
//! apt-get when missing, started in the foreground from a config of our own in
//! a temp dir, listening on a free loopback port. No system service, no port
//! 80; the server is stopped when the [`Apache`] is dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{http, TempDir};

pub const APACHE: &str = "/usr/sbin/apache2";
pub const MODULES: &str = "/usr/lib/apache2/modules";

/// Installs Apache and mod_wsgi from Debian's packages when they are
/// missing (once per machine, under a lock shared by the test processes).
pub fn ensure_installed() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| crate::servers::apt_install(&["apache2", "libapache2-mod-wsgi-py3"], installed));
}

fn installed() -> bool {
    Path::new(APACHE).exists() && Path::new(MODULES).join("mod_wsgi.so").exists()
}

/// A free loopback TCP port (bound and released; Apache binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The modules every test config loads.
const BASE_MODULES: &[&str] = &[
    "mpm_event", "authz_core", "authz_host", "access_compat", "alias", "mime",
    "headers", "proxy", "proxy_http", "proxy_balancer", "proxy_hcheck", "slotmem_shm", "lbmethod_byrequests",
    "status", "env", "setenvif", "wsgi",
];

/// An Apache httpd instance of a test.
pub struct Apache {
    pub port: u16,
    pub dir: TempDir,
    child: Option<Child>,
}

impl Apache {
    /// A port and a directory for a server not yet started: the test writes
    /// its site config knowing both, then calls [`Apache::start`].
    pub fn new(label: &str) -> Apache {
        ensure_installed();
        let dir = TempDir::new(&format!("apache-{label}"));
        // Apache's workers run as www-data when the tests run as root: they
        // must be able to enter the directory.
        make_traversable(dir.path());
        Apache { port: free_port(), dir, child: None }
    }

    /// The full httpd.conf around `site`: modules, logs, pid file, the listener.
    pub fn config_text(&self, site: &str) -> String {
        let dir = self.dir.path().display();
        let mut conf = String::new();
        conf.push_str(&format!("ServerRoot {dir}\nServerName localhost\nListen 127.0.0.1:{}\n", self.port));
        for m in BASE_MODULES {
            conf.push_str(&format!("LoadModule {m}_module {MODULES}/mod_{m}.so\n"));
        }
        let run_as_root = unsafe { libc::geteuid() } == 0;
        if run_as_root {
            conf.push_str("User www-data\nGroup www-data\n");
        }
        conf.push_str(&format!(
            "PidFile {dir}/httpd.pid\nDefaultRuntimeDir {dir}\nMutex file:{dir} default\nErrorLog {dir}/error.log\nLogLevel warn\n\
             LogFormat \"%h %l %u %t \\\"%r\\\" %>s %b\" common\nCustomLog {dir}/access.log common\n\
             TypesConfig /etc/mime.types\nWSGISocketPrefix {dir}/wsgi\nStartServers 1\nServerLimit 2\nThreadsPerChild 16\n\
             ProxyStatus On\n\n"
        ));
        conf.push_str(site);
        conf
    }

    /// Writes the config and runs `apache2 -t` on it: (accepted, output).
    pub fn config_test(&self, site: &str) -> (bool, String) {
        let conf = self.write_config(site);
        let output = Command::new(APACHE).arg("-t").arg("-f").arg(&conf).output().expect("run apache2 -t");
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr))
    }

    fn write_config(&self, site: &str) -> PathBuf {
        let path = self.dir.path().join("httpd.conf");
        std::fs::write(&path, self.config_text(site)).unwrap();
        path
    }

    /// Starts Apache in the foreground with `site` and waits until it answers.
    pub fn start(mut self, site: &str) -> Apache {
        let (ok, text) = self.config_test(site);
        assert!(ok, "apache2 -t refused the config:\n{text}\n{}", self.config_text(site));
        let conf = self.write_config(site);
        let child = Command::new(APACHE)
            .arg("-f")
            .arg(&conf)
            .arg("-DFOREGROUND")
            // Apache hands LD_LIBRARY_PATH on to CGI-style environs (mod_wsgi's
            // included): cargo's value has nothing to do with the server.
            .env_remove("LD_LIBRARY_PATH")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start apache2");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = self.child.as_mut().unwrap().stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                panic!("apache2 exited ({status}) before listening:\n{err}\n{}", self.error_log());
            }
            assert!(Instant::now() < deadline, "apache2 did not listen on {} within 30s:\n{}", self.port, self.error_log());
            std::thread::sleep(Duration::from_millis(50));
        }
        self
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    pub fn connect(&self) -> TcpStream {
        http::connect(&self.addr())
    }

    /// One request on a fresh connection.
    pub fn request(&self, raw: &[u8]) -> http::Response {
        http::request(&self.addr(), raw)
    }

    pub fn get(&self, path: &str, host: &str) -> http::Response {
        self.request(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
    }

    /// Waits until the access log contains `needle` (Apache writes the line
    /// after the response has gone out, so a client can be ahead of it).
    pub fn wait_for_access_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.access_log();
            if text.contains(needle) {
                return text;
            }
            assert!(Instant::now() < deadline, "Apache's access log never showed {needle:?}:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: the parent stops its children (and mod_wsgi's daemons) first.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.wait();
        }
    }
}

/// Makes `dir` and its ancestors enterable (o+x) by Apache's unprivileged user.
pub fn make_traversable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut path = Some(dir);
    while let Some(p) = path {
        if let Ok(meta) = std::fs::metadata(p) {
            let mode = meta.permissions().mode();
            if mode & 0o001 == 0 {
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode | 0o005));
            }
        }
        path = p.parent();
    }
}
