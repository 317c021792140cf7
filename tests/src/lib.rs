//! Helpers for wasgi's end-to-end tests: the real `wasgi` binary, the real
//! python.wasm, real HTTP over loopback.
//!
//! - [`setup`] fetches and compiles the interpreter once per machine (into
//!   `target/wasgi-test-cache`) and installs Flask for the guest from PyPI.
//! - [`Wasgi`] starts `wasgi run` on port 0, reads the bound address from its
//!   log, keeps the log for assertions, and kills the server when dropped.
//! - [`http`] is a small raw-socket client, so tests can send exactly the
//!   bytes they mean (malformed requests included) and see exactly what came back.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// The directory of the test apps.
pub fn apps() -> PathBuf {
    root().join("tests").join("apps")
}

pub(crate) fn target_dir() -> PathBuf {
    // The test binary lives in target/<profile>/deps/.
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().parent().unwrap().to_owned()
}

/// The `wasgi` binary cargo built next to this test.
pub fn wasgi_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("wasgi");
    assert!(bin.exists(), "{} is missing: run the tests with `cargo test --workspace` (they are integration tests of the wasgi package)", bin.display());
    bin
}

/// Fetched interpreter and compiled modules, shared by every test.
pub fn cache_dir() -> PathBuf {
    target_dir().join("wasgi-test-cache")
}

/// Holds an exclusive lock on a file while alive (test binaries run as
/// separate processes, so in-process locks are not enough).
pub(crate) struct FileLock(std::fs::File);

impl FileLock {
    pub(crate) fn acquire(path: &Path) -> FileLock {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).unwrap();
        use std::os::fd::AsRawFd;
        assert_eq!(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) }, 0);
        FileLock(file)
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Makes sure the interpreter is fetched and compiled, once per machine.
pub fn setup() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let _lock = FileLock::acquire(&cache_dir().join(".setup.lock"));
        let output = Command::new(wasgi_bin())
            .args(["python", "--cache-dir"])
            .arg(cache_dir())
            .env_remove("WASGI_PYTHON_WASM")
            .output()
            .expect("run wasgi python");
        assert!(
            output.status.success(),
            "wasgi python failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    });
}

/// `wasgi python --interpreter NAME` on the shared cache: the interpreter
/// fetched or built, and compiled; its path.
fn prepare_interpreter(name: &str) -> PathBuf {
    let output = Command::new(wasgi_bin())
        .args(["python", "--interpreter", name, "--cache-dir"])
        .arg(cache_dir())
        .env_remove("WASGI_PYTHON_WASM")
        .output()
        .expect("run wasgi python");
    assert!(output.status.success(), "wasgi python --interpreter {name} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// The pinned CPython 3.12.0 python.wasm in the shared cache, fetched if
/// needed (whatever WASGI_INTERPRETER the suite runs with).
pub fn pinned_interpreter() -> PathBuf {
    setup();
    prepare_interpreter("cpython-3.12")
}

/// Our own CPython 3.13 build (`--interpreter cpython-3.13`), built by
/// python-wasm/build into the shared cache on first use (minutes on a fresh
/// machine, once; the lock makes parallel tests wait for one build) and
/// compiled. Tests that start wasgi with it call this first, so the build is
/// not counted against a server's startup wait.
/// Its python.wasm, in the build's result directory (with build.json).
pub fn own_interpreter() -> PathBuf {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    READY
        .get_or_init(|| {
            setup();
            let _lock = FileLock::acquire(&cache_dir().join(".own-build.lock"));
            prepare_interpreter("cpython-3.13")
        })
        .clone()
}

/// Flask and its dependencies, installed for the guest from PyPI (pure-Python
/// wheels work inside the sandbox; MarkupSafe's speedups are built into the
/// group's interpreter variant, made here before any server waits for it).
pub fn flask_packages() -> PathBuf {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    READY.get_or_init(|| prepare_variant(&pip_packages("flask", &["flask==3.1.*"]))).clone()
}

/// `wasgi python --python-path DIR` on the shared cache when the suite runs
/// our own CPython (the default): the interpreter variant with the C
/// extensions installed in `packages` built and compiled once, so a test's
/// server does not spend its startup wait building it. Returns `packages`.
pub fn prepare_variant(packages: &Path) -> PathBuf {
    if std::env::var("WASGI_INTERPRETER").is_ok_and(|i| i.starts_with("cpython-3.12") || i == "pinned") {
        return packages.to_owned();
    }
    own_interpreter();
    let output = Command::new(wasgi_bin())
        .args(["python", "--interpreter", "cpython-3.13", "--cache-dir"])
        .arg(cache_dir())
        .arg("--python-path")
        .arg(packages)
        .env_remove("WASGI_PYTHON_WASM")
        .output()
        .expect("run wasgi python");
    assert!(output.status.success(), "wasgi python --python-path {} failed:\n{}", packages.display(), String::from_utf8_lossy(&output.stderr));
    packages.to_owned()
}

/// Runs `install` into target/test-packages/NAME once per set of
/// requirements (a marker file remembers them), under a lock shared by the
/// test processes.
pub fn install_once(name: &str, requirements: &[&str], install: impl FnOnce(&Path)) -> PathBuf {
    let dir = target_dir().join("test-packages").join(name);
    let _lock = FileLock::acquire(&target_dir().join("test-packages").join(format!(".{name}.lock")));
    let marker = dir.join(".installed");
    let wanted = requirements.join("\n");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    install(&dir);
    std::fs::write(&marker, wanted).unwrap();
    dir
}

/// Installs `requirements` with pip into target/test-packages/NAME, once.
pub fn pip_packages(name: &str, requirements: &[&str]) -> PathBuf {
    install_once(name, requirements, |dir| {
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check", "--target"])
            .arg(dir)
            .args(requirements)
            .status()
            .expect("run pip");
        assert!(status.success(), "pip install {requirements:?} failed");
    })
}

/// A virtualenv of the host's python3 with `requirements` installed, once
/// (target/test-packages/venv-NAME): what a mod_wsgi user's python-home is.
pub fn venv(name: &str, requirements: &[&str]) -> PathBuf {
    install_once(&format!("venv-{name}"), requirements, |dir| {
        let status = Command::new("python3").args(["-m", "venv"]).arg(dir).status().expect("run python3 -m venv");
        assert!(status.success(), "python3 -m venv failed");
        let status = Command::new(dir.join("bin/python"))
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args(requirements)
            .status()
            .expect("run pip");
        assert!(status.success(), "pip install {requirements:?} into the venv failed");
    })
}

/// A scratch directory under target/, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = target_dir().join("test-tmp").join(format!("{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The server's log, filled by a reader thread.
#[derive(Clone, Default)]
pub struct Log(Arc<(Mutex<String>, Condvar)>);

impl Log {
    pub fn text(&self) -> String {
        self.0 .0.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`; panics with the log after `timeout`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (lock, cond) = &*self.0;
        let mut text = lock.lock().unwrap();
        loop {
            if text.contains(needle) {
                return text.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                panic!("the log never showed {needle:?} within {timeout:?}:\n{text}");
            }
            text = cond.wait_timeout(text, deadline - now).unwrap().0;
        }
    }

    /// Waits until `done` holds for the log's text, waking at each new line
    /// (not polling, so a test acts within moments of the line it waits
    /// for); panics with the log after `timeout`.
    pub fn wait_until(&self, what: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let (lock, cond) = &*self.0;
        let mut text = lock.lock().unwrap();
        loop {
            if done(&text) {
                return text.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                panic!("{what} within {timeout:?}:\n{text}");
            }
            text = cond.wait_timeout(text, deadline - now).unwrap().0;
        }
    }

    fn push(&self, line: &str) {
        let (lock, cond) = &*self.0;
        let mut text = lock.lock().unwrap();
        text.push_str(line);
        text.push('\n');
        cond.notify_all();
    }
}

/// A running `wasgi run`.
pub struct Wasgi {
    pub child: Child,
    pub log: Log,
    /// `127.0.0.1:PORT`, or the socket path for a Unix listener.
    pub addr: String,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// Starts `wasgi run` with `args` (the script first) and a listener on a free
/// loopback port unless `args` has its own `--listen`.
pub fn start_command(args: &[&str]) -> Command {
    setup();
    let mut cmd = Command::new(wasgi_bin());
    cmd.arg("run").args(args);
    if !args.contains(&"--cache-dir") {
        cmd.arg("--cache-dir").arg(cache_dir());
    }
    if !args.contains(&"--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    cmd.env("NO_COLOR", "1").env_remove("WASGI_LOG").env_remove("WASGI_PYTHON_WASM");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// `wasgi serve --config FILE` on a free port (the file's [[listen]] is
/// replaced by the caller writing `127.0.0.1:0`).
pub fn serve_command(config: &Path) -> Command {
    setup();
    let mut cmd = Command::new(wasgi_bin());
    cmd.arg("serve").arg("--config").arg(config).arg("--cache-dir").arg(cache_dir());
    cmd.env("NO_COLOR", "1").env_remove("WASGI_LOG").env_remove("WASGI_PYTHON_WASM");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// `wasgi check --config FILE`: its exit status and everything it printed.
pub fn check(config: &Path) -> (bool, String) {
    run_to_end(check_command(config))
}

/// `wasgi check --config FILE`, for a test that sets its environment.
pub fn check_command(config: &Path) -> Command {
    setup();
    let mut cmd = Command::new(wasgi_bin());
    cmd.arg("check").arg("--config").arg(config).arg("--cache-dir").arg(cache_dir()).env("NO_COLOR", "1");
    cmd
}

/// Starts `command` (from [`start_command`]), reads its stderr until it
/// serves or logs an ERROR, stops it, and returns what it logged: for tests
/// of what a start does (with a damaged cache, say).
pub fn log_of_a_start(mut command: Command) -> String {
    let mut child = command.spawn().expect("spawn wasgi");
    let stderr = child.stderr.take().unwrap();
    let mut log = String::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains("serving ") || line.contains("ERROR") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    log
}

/// Runs a command to its end: whether it succeeded, and its stdout then stderr.
pub fn run_to_end(mut command: Command) -> (bool, String) {
    let output = command.output().expect("run wasgi");
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

impl Wasgi {
    /// Starts `wasgi serve` and waits until it serves.
    pub fn serve(config: &Path) -> Wasgi {
        Wasgi::from_command(serve_command(config)).wait_ready()
    }

    /// Starts `wasgi serve` without waiting (for startup-failure tests).
    pub fn from_serve_without_waiting(config: &Path) -> Wasgi {
        Wasgi::from_command(serve_command(config))
    }

    /// Starts the server and waits until it serves.
    pub fn start(args: &[&str]) -> Wasgi {
        Wasgi::spawn(args).wait_ready()
    }

    /// Starts the server without waiting (for startup-failure tests).
    pub fn spawn(args: &[&str]) -> Wasgi {
        Wasgi::from_command(start_command(args))
    }

    /// Starts `command` (from [`start_command`] or [`serve_command`]) without waiting.
    pub fn from_command(mut command: Command) -> Wasgi {
        let mut child = command.spawn().expect("spawn wasgi");
        let log = Log::default();
        let stderr = child.stderr.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let log2 = log.clone();
        let log3 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                log3.push(&line);
            }
        });
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log2.push(&line);
            }
        });
        Wasgi { child, log, addr: String::new(), reader: Some(reader) }
    }

    /// The address from the "serving … on http://ADDR" (or https://) line, once it appears.
    pub fn wait_ready(self) -> Wasgi {
        self.wait_ready_within(Duration::from_secs(120))
    }

    /// [`Wasgi::wait_ready`] for a start that builds first (an interpreter
    /// variant with an app's C extensions).
    pub fn wait_ready_within(mut self, timeout: Duration) -> Wasgi {
        let text = self.log.wait_for("serving ", timeout);
        let line = text.lines().find(|l| l.contains("serving ")).expect("a serving line");
        let on = line.split(" on ").nth(1).unwrap();
        let addr = on.split_whitespace().next().unwrap();
        self.addr = addr.trim_start_matches("http://").trim_start_matches("https://").trim_start_matches("unix:").to_owned();
        self
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.wait(Duration::from_secs(60))
    }

    /// Waits for the process to exit; panics with the log after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return status;
            }
            if Instant::now() > deadline {
                panic!("wasgi did not exit within {timeout:?}; log:\n{}", self.log.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A client connection to the server.
    pub fn connect(&self) -> TcpStream {
        http::connect(&self.addr)
    }

    /// One request on a fresh connection.
    pub fn request(&self, raw: &[u8]) -> http::Response {
        http::request(&self.addr, raw)
    }

    pub fn get(&self, path: &str) -> http::Response {
        http::get(&self.addr, path)
    }

    pub fn post(&self, path: &str, body: &[u8]) -> http::Response {
        http::post(&self.addr, path, body)
    }

    /// Resident set size of the server process, in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap();
        kb * 1024
    }
}

impl Drop for Wasgi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub mod apache;
pub mod servers;

pub mod http {
    //! A minimal HTTP/1.1 client reader: enough to see exactly what a server sent.
    use super::*;

    #[derive(Debug)]
    pub struct Response {
        pub status: u16,
        pub reason: String,
        /// Header names lower-cased, in order.
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
        /// True if the body was chunked.
        pub chunked: bool,
    }

    impl Response {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
        }

        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
    }

    /// Reads one response head (status line and headers).
    pub fn read_head(stream: &mut impl Read) -> std::io::Result<(u16, String, Vec<(String, String)>)> {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            // A read with a timeout can end in EINTR after any signal to
            // the test process (signal(7)); like read_exact, try again.
            let n = match stream.read(&mut byte) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => other?,
            };
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("connection closed after {:?}", String::from_utf8_lossy(&head)),
                ));
            }
            head.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap();
        let mut parts = status_line.splitn(3, ' ');
        let _version = parts.next();
        let status: u16 = parts.next().unwrap_or("0").parse().unwrap_or(0);
        let reason = parts.next().unwrap_or("").to_owned();
        let headers = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        Ok((status, reason, headers))
    }

    /// Reads one response; `head_request` means no body follows whatever the headers say.
    pub fn read_response(stream: &mut impl Read, head_request: bool) -> std::io::Result<Response> {
        let (mut status, mut reason, mut headers) = read_head(stream)?;
        while status == 100 {
            (status, reason, headers) = read_head(stream)?;
        }
        let get = |name: &str| headers.iter().find(|(n, _): &&(String, String)| n == name).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        let chunked = get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if head_request || status == 204 || status == 304 {
        } else if chunked {
            let mut reader = BufReader::new(stream);
            loop {
                let mut size_line = String::new();
                reader.read_line(&mut size_line)?;
                let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap(), 16)
                    .map_err(|_| std::io::Error::other(format!("bad chunk size {size_line:?}")))?;
                if size == 0 {
                    let mut trailer = String::new();
                    reader.read_line(&mut trailer)?;
                    break;
                }
                let mut chunk = vec![0u8; size + 2];
                reader.read_exact(&mut chunk)?;
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(len) = get("content-length") {
            let len: usize = len.parse().unwrap();
            body.resize(len, 0);
            stream.read_exact(&mut body)?;
        } else {
            stream.read_to_end(&mut body)?;
        }
        Ok(Response { status, reason, headers, body, chunked })
    }

    /// A connection to `addr` (HOST:PORT) that gives up reading after 60 s.
    pub fn connect(addr: &str) -> TcpStream {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        stream
    }

    /// One request on a fresh connection to `addr`.
    pub fn request(addr: &str, raw: &[u8]) -> Response {
        let mut stream = connect(addr);
        stream.write_all(raw).unwrap();
        read_response(&mut stream, raw.starts_with(b"HEAD ")).unwrap_or_else(|e| panic!("no response from {addr}: {e}"))
    }

    /// `GET path` on a fresh connection to `addr`.
    pub fn get(addr: &str, path: &str) -> Response {
        request(addr, format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
    }

    /// `POST path` with `body` on a fresh connection to `addr`.
    pub fn post(addr: &str, path: &str, body: &[u8]) -> Response {
        let mut raw =
            format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        raw.extend_from_slice(body);
        request(addr, &raw)
    }

    /// One request over a Unix socket.
    pub fn unix_request(path: &str, raw: &[u8]) -> Response {
        let mut stream = UnixStream::connect(path).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        stream.write_all(raw).unwrap();
        read_response(&mut stream, false).unwrap()
    }
}
