//! Real servers for the outbound-connection tests (issue 17): PostgreSQL,
//! Redis, MariaDB from Debian's packages (installed with apt-get when
//! missing), and an HTTP(S) echo server and an SMTP server of our own in
//! Python (tests/fixtures/servers). Each listens on loopback only, on a free
//! port, with its data and log in a directory of its own, and is stopped
//! when its guard is dropped.
//!
//! Every server runs in a process group of its own: stopping it ends the
//! whole group, so nothing is left behind (a PostgreSQL backend, say). A
//! guard kept in a `static` is never dropped; for that case the groups
//! still running are killed when the test process exits.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use crate::apache::{free_port, make_traversable};
use crate::{root, FileLock, TempDir};

/// How long a server may take to accept connections. Generous: CI machines
/// with two cores run several test binaries at once.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How many times a server is started again on a new port when another
/// process took the free port between our pick and its bind.
const PORT_ATTEMPTS: usize = 3;

/// Installs Debian `packages` with apt-get (as root, or with passwordless
/// sudo) unless `present` already holds; `apt-get update` first only when a
/// plain install fails (a fresh machine has empty package lists). Serialized
/// across test processes by a lock file; no package's service is started.
pub fn apt_install(packages: &[&str], present: impl Fn() -> bool) {
    if present() {
        return;
    }
    let _lock = FileLock::acquire(&crate::target_dir().join(".apt-install.lock"));
    if present() {
        return;
    }
    let root = unsafe { libc::geteuid() } == 0;
    let apt = |args: &[&str]| -> (bool, String) {
        let mut cmd = if root { Command::new("apt-get") } else { Command::new("sudo") };
        if !root {
            cmd.args(["-n", "apt-get"]);
        }
        // Another apt (another worktree's tests) may hold dpkg's lock: wait for it.
        cmd.args(["-o", "DPkg::Lock::Timeout=300"]);
        // Install only: RUNLEVEL=1 keeps invoke-rc.d from starting the
        // packages' own services.
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive").env("RUNLEVEL", "1");
        match cmd.stdin(Stdio::null()).output() {
            Ok(out) => (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned()),
            Err(e) => (false, e.to_string()),
        }
    };
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend_from_slice(packages);
    eprintln!("installing {packages:?} with apt-get (once per machine)");
    if !apt(&install).0 {
        let (updated, err) = apt(&["update", "-q"]);
        assert!(updated, "apt-get update failed: installing {packages:?} needs root or passwordless sudo:\n{err}");
        let (installed, err) = apt(&install);
        assert!(installed, "apt-get install {packages:?} failed:\n{err}");
    }
    assert!(present(), "{packages:?} still missing after apt-get install");
}

/// The uid and gid of a system user, from /etc/passwd.
fn system_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.split(':').next() == Some(name))?;
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

fn running_as_root() -> bool {
    (unsafe { libc::geteuid() }) == 0
}

/// The account a database server runs as: PostgreSQL and MariaDB refuse
/// root, so when the tests run as root (CI) it is the user their Debian
/// package created; otherwise the tests' own user (None).
fn service_account(name: &str) -> Option<(u32, u32)> {
    if !running_as_root() {
        return None;
    }
    Some(system_user(name).unwrap_or_else(|| panic!("running as root, but there is no `{name}` user to run the server as")))
}

/// A database server's data directory (`label`) and socket directory
/// (`socket_label`), owned by the account it runs as, if not the tests' own.
fn server_dirs(label: &str, socket_label: &str, account: Option<(u32, u32)>) -> (TempDir, TempDir) {
    let dir = TempDir::new(label);
    let sockets = socket_dir(socket_label);
    if let Some(account) = account {
        make_traversable(dir.path());
        chown(dir.path(), account);
        chown(sockets.path(), account);
    }
    (dir, sockets)
}

fn chown(path: &Path, (uid, gid): (u32, u32)) {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let rc = unsafe { libc::chown(c_path.as_ptr(), uid, gid) };
    assert_eq!(rc, 0, "chown {}: {}", path.display(), std::io::Error::last_os_error());
}

/// A directory for Unix sockets, under /tmp: a socket's path must fit in
/// 108 bytes, which a directory under a deep target/ may not leave room for.
fn socket_dir(label: &str) -> TempDir {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("wasgi-{label}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap();
    TempDir(path)
}

/// Process groups of servers not yet stopped, killed at exit.
static RUNNING_GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

extern "C" fn kill_running_groups() {
    if let Ok(groups) = RUNNING_GROUPS.lock() {
        for &group in groups.iter() {
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
    }
}

/// A server process: its own process group, its output in a log file.
struct ServerProcess {
    name: &'static str,
    child: Child,
    log_path: PathBuf,
    /// The signal that stops it quickly and with its children
    /// (PostgreSQL's postmaster waits for its backends on SIGQUIT).
    stop_signal: i32,
    stopped: bool,
}

impl ServerProcess {
    fn spawn(name: &'static str, mut command: Command, log_path: &Path, stop_signal: i32) -> ServerProcess {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log_path).unwrap();
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            // cargo's library path has nothing to do with the server.
            .env_remove("LD_LIBRARY_PATH");
        static AT_EXIT: Once = Once::new();
        AT_EXIT.call_once(|| unsafe {
            libc::atexit(kill_running_groups);
        });
        let mut groups = RUNNING_GROUPS.lock().unwrap();
        let child = command.spawn().unwrap_or_else(|e| panic!("start {name}: {e} ({command:?})"));
        groups.push(child.id() as i32);
        ServerProcess { name, child, log_path: log_path.to_owned(), stop_signal, stopped: false }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last lines of the log, for a panic message.
    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("--- {} log ({}) ---\n{tail}", self.name, self.log_path.display())
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Waits until `ready` holds: Ok, or Err(log) if the server exited
    /// first; panics with the log tail after START_TIMEOUT.
    fn wait_ready(&mut self, mut ready: impl FnMut(&str) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ready(&self.log()) {
                return Ok(());
            }
            if self.exited() {
                return Err(self.log_tail());
            }
            assert!(Instant::now() < deadline, "{} did not accept connections within {START_TIMEOUT:?}\n{}", self.name, self.log_tail());
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Stops the server and everything in its group, and reaps it.
    fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let group = self.child.id() as i32;
        unsafe { libc::kill(group, self.stop_signal) };
        // Wait without reaping: while the leader is a zombie its group id
        // cannot be reused, so killing the group below hits only ours.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let rc = unsafe { libc::waitid(libc::P_PID, group as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT | libc::WNOHANG) };
            if rc != 0 || unsafe { info.si_pid() } != 0 {
                break;
            }
            if Instant::now() > deadline {
                eprintln!("{} did not stop on signal {} within 15s: killed", self.name, self.stop_signal);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.child.wait();
        RUNNING_GROUPS.lock().unwrap().retain(|&g| g != group);
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a server on a fresh free port until it does not lose the port to
/// another process (at most PORT_ATTEMPTS times); `launch` starts it on the
/// port given and waits for it: Err(log) when it exited.
fn on_a_free_port<T>(name: &str, mut launch: impl FnMut(u16) -> Result<T, String>) -> T {
    let mut last = String::new();
    for _ in 0..PORT_ATTEMPTS {
        match launch(free_port()) {
            Ok(server) => return server,
            Err(log) if log.contains("in use") => last = log,
            Err(log) => panic!("{name} exited before accepting connections\n{log}"),
        }
    }
    panic!("{name} found its port taken {PORT_ATTEMPTS} times\n{last}")
}

/// Runs a setup command to its end; panics with its output on failure.
fn run_ok(what: &str, mut command: Command) -> String {
    let output = command.stdin(Stdio::null()).env_remove("LD_LIBRARY_PATH").output().unwrap_or_else(|e| panic!("{what}: {e} ({command:?})"));
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what} failed ({}):\n{text}", output.status);
    text
}

/// Runs a client command to its end: its standard output; panics with
/// both outputs on failure.
fn output_of(what: &str, mut command: Command) -> String {
    let output = command.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: {e} ({command:?})"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{what} failed ({}):\n{stdout}{}", output.status, String::from_utf8_lossy(&output.stderr));
    stdout
}

// ---------------------------------------------------------------- TLS

/// A certificate authority made for one test, and a server certificate it
/// signed for `localhost` and 127.0.0.1: clients that trust `ca` can verify
/// the servers that present `cert`.
pub struct TestCa {
    /// The CA's certificate (PEM): what a client trusts.
    pub ca: PathBuf,
    /// The server's certificate (PEM), for DNS:localhost and IP:127.0.0.1.
    pub cert: PathBuf,
    /// The server certificate's private key (PEM, unencrypted).
    pub key: PathBuf,
}

impl TestCa {
    /// Makes the CA and the server certificate in `dir` with the `openssl`
    /// tool (ECDSA P-256: quick to make, and every TLS stack takes it).
    pub fn new(dir: &Path) -> TestCa {
        apt_install(&["openssl"], || Path::new("/usr/bin/openssl").exists());
        std::fs::create_dir_all(dir).unwrap();
        let ca = TestCa { ca: dir.join("ca.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem") };
        std::fs::write(
            dir.join("server.ext"),
            "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature, keyEncipherment\n\
             extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost, IP:127.0.0.1\n",
        )
        .unwrap();
        let openssl = |args: &[&str]| {
            let mut cmd = Command::new("openssl");
            cmd.args(args).current_dir(dir);
            run_ok(&format!("openssl {}", args[0]), cmd);
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let mut make_ca = vec!["req", "-x509", "-days", "30", "-subj", "/CN=wasgi test CA"];
        make_ca.extend_from_slice(&ec);
        make_ca.extend_from_slice(&["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        make_ca.extend_from_slice(&["-keyout", "ca-key.pem", "-out", "ca.pem"]);
        openssl(&make_ca);
        let mut make_request = vec!["req", "-subj", "/CN=localhost"];
        make_request.extend_from_slice(&ec);
        make_request.extend_from_slice(&["-keyout", "key.pem", "-out", "server.csr"]);
        openssl(&make_request);
        openssl(&[
            "x509", "-req", "-days", "30", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
            "-extfile", "server.ext", "-out", "cert.pem",
        ]);
        ca
    }

    /// Copies the server certificate and key into `dir`, owned by the
    /// server's account with the key private (PostgreSQL and MariaDB refuse
    /// a key others can read, or cannot read one root owns): (cert, key).
    fn install_for(&self, dir: &Path, account: Option<(u32, u32)>) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let cert = dir.join("server-cert.pem");
        let key = dir.join("server-key.pem");
        std::fs::copy(&self.cert, &cert).unwrap();
        std::fs::copy(&self.key, &key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        if let Some(account) = account {
            chown(&cert, account);
            chown(&key, account);
        }
        (cert, key)
    }
}

// ---------------------------------------------------------------- PostgreSQL

/// The newest PostgreSQL server's bin directory (/usr/lib/postgresql/VER/bin).
pub fn postgres_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// A private PostgreSQL cluster: user `wasgi` with password `wasgi` (a
/// superuser) and database `wasgi`; password (SCRAM) authentication over
/// TCP on 127.0.0.1:`port` and over the Unix socket in `socket_dir`; TLS
/// offered (`sslmode=require` works; `verify-full` with `ca_file`).
pub struct Postgres {
    process: ServerProcess,
    pub port: u16,
    /// The directory of the socket `.s.PGSQL.<port>`: what libpq's `host=` takes.
    pub socket_dir: PathBuf,
    pub user: String,
    pub password: String,
    pub database: String,
    /// The CA that signed the server's certificate.
    pub ca_file: PathBuf,
    pub bin_dir: PathBuf,
    _sockets: TempDir,
    pub dir: TempDir,
}

impl Postgres {
    pub fn start() -> Postgres {
        apt_install(&["postgresql"], || postgres_bin_dir().is_some());
        let bin_dir = postgres_bin_dir().unwrap();
        let account = service_account("postgres");
        let (dir, sockets) = server_dirs("postgres", "pg", account);
        let as_server = |program: &str| {
            let mut cmd = Command::new(bin_dir.join(program));
            if let Some((uid, gid)) = account {
                cmd.uid(uid).gid(gid);
            }
            cmd.current_dir(dir.path()).env("LC_ALL", "C.UTF-8");
            cmd
        };

        let (user, password, database) = ("wasgi", "wasgi", "wasgi");
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, password).unwrap();
        if let Some(account) = account {
            chown(&password_file, account);
        }
        let data = dir.path().join("data");
        let mut initdb = as_server("initdb");
        initdb.arg("-D").arg(&data).args(["-U", user, "--pwfile"]).arg(&password_file);
        initdb.args(["-A", "scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]);
        run_ok("initdb", initdb);

        let tls = TestCa::new(&dir.path().join("tls"));
        let (cert, key) = tls.install_for(&data, account);
        let log_path = dir.path().join("postgres.log");
        let (process, port) = on_a_free_port("postgres", |port| {
            let mut postgres = as_server("postgres");
            postgres.arg("-D").arg(&data);
            let settings = [
                "listen_addresses=127.0.0.1".to_owned(),
                format!("port={port}"),
                format!("unix_socket_directories={}", sockets.path().display()),
                // Throwaway data: no waiting for the disk.
                "fsync=off".to_owned(),
                "synchronous_commit=off".to_owned(),
                "full_page_writes=off".to_owned(),
                "ssl=on".to_owned(),
                format!("ssl_cert_file={}", cert.display()),
                format!("ssl_key_file={}", key.display()),
            ];
            for setting in &settings {
                postgres.arg("-c").arg(setting);
            }
            let mut process = ServerProcess::spawn("postgres", postgres, &log_path, libc::SIGQUIT);
            process.wait_ready(|log| log.contains("database system is ready to accept connections"))?;
            Ok((process, port))
        });
        let mut create = Command::new(bin_dir.join("psql"));
        create.arg("-h").arg(sockets.path()).args(["-p", &port.to_string(), "-U", user, "-d", "postgres", "-v", "ON_ERROR_STOP=1"]);
        create.args(["-c", &format!("CREATE DATABASE {database}")]).env("PGPASSWORD", password);
        run_ok("psql CREATE DATABASE", create);
        Postgres {
            process,
            port,
            socket_dir: sockets.path().to_owned(),
            user: user.into(),
            password: password.into(),
            database: database.into(),
            ca_file: tls.ca,
            bin_dir,
            _sockets: sockets,
            dir,
        }
    }

    /// The Unix socket's own path.
    pub fn socket_path(&self) -> PathBuf {
        self.socket_dir.join(format!(".s.PGSQL.{}", self.port))
    }

    /// A libpq connection URL over TCP.
    pub fn url(&self) -> String {
        format!("postgresql://{}:{}@127.0.0.1:{}/{}", self.user, self.password, self.port, self.database)
    }

    /// Runs `sql` as `wasgi` on database `wasgi` with psql over the socket:
    /// its rows, unaligned (`|` between columns), one a line. For a test to
    /// prepare tables and check what a guest wrote.
    pub fn query(&self, sql: &str) -> String {
        let mut psql = Command::new(self.bin_dir.join("psql"));
        psql.arg("-h").arg(&self.socket_dir).args(["-p", &self.port.to_string(), "-U", &self.user, "-d", &self.database]);
        psql.args(["-v", "ON_ERROR_STOP=1", "-tA", "-c", sql]).env("PGPASSWORD", &self.password);
        output_of("psql", psql)
    }

    /// The postmaster's pid (its process group's id too).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn log(&self) -> String {
        self.process.log()
    }
}

// ---------------------------------------------------------------- Redis

pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// A Redis server with nothing saved to disk, on 127.0.0.1:`port` and the
/// Unix socket `socket`; `password` set when started with one.
pub struct Redis {
    process: ServerProcess,
    pub port: u16,
    pub socket: PathBuf,
    pub password: Option<String>,
    _sockets: TempDir,
    pub dir: TempDir,
}

impl Redis {
    /// Without authentication.
    pub fn start() -> Redis {
        Redis::launch(None)
    }

    /// Requiring AUTH with `password` (`requirepass`).
    pub fn start_with_password(password: &str) -> Redis {
        Redis::launch(Some(password))
    }

    fn launch(password: Option<&str>) -> Redis {
        apt_install(&["redis-server"], || Path::new(REDIS_SERVER).exists() && Path::new("/usr/bin/redis-cli").exists());
        let dir = TempDir::new("redis");
        let sockets = socket_dir("redis");
        let socket = sockets.path().join("redis.sock");
        let log_path = dir.path().join("redis.log");
        let (process, port) = on_a_free_port("redis-server", |port| {
            let mut redis = Command::new(REDIS_SERVER);
            redis.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"]);
            redis.arg("--dir").arg(dir.path()).arg("--unixsocket").arg(&socket).args(["--unixsocketperm", "700"]);
            if let Some(password) = password {
                redis.args(["--requirepass", password]);
            }
            let mut process = ServerProcess::spawn("redis-server", redis, &log_path, libc::SIGKILL);
            process.wait_ready(|_| redis_answers(port))?;
            Ok((process, port))
        });
        Redis { process, port, socket, password: password.map(str::to_owned), _sockets: sockets, dir }
    }

    /// Runs one command with redis-cli over the socket: its reply as
    /// redis-cli prints it.
    pub fn command(&self, args: &[&str]) -> String {
        let mut cli = Command::new("redis-cli");
        cli.arg("-s").arg(&self.socket);
        if let Some(password) = &self.password {
            cli.args(["--no-auth-warning", "-a", password]);
        }
        cli.args(args);
        output_of("redis-cli", cli)
    }

    /// `redis://[:password@]127.0.0.1:port/0`
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// Whether a Redis server answers a PING on `port` (`-NOAUTH` counts: it
/// is up, and wants a password).
fn redis_answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut line = String::new();
    let _ = BufReader::new(stream).read_line(&mut line);
    line.starts_with("+PONG") || line.starts_with("-NOAUTH")
}

// ---------------------------------------------------------------- MariaDB

pub const MARIADBD: &str = "/usr/sbin/mariadbd";

/// A private MariaDB server: user `wasgi` with password `wasgi` on
/// database `wasgi` (from 127.0.0.1 and over the socket), on
/// 127.0.0.1:`port` and the Unix socket `socket`; TLS offered, with a
/// certificate from `ca_file`.
pub struct MariaDb {
    process: ServerProcess,
    pub port: u16,
    pub socket: PathBuf,
    pub user: String,
    pub password: String,
    pub database: String,
    pub ca_file: PathBuf,
    _sockets: TempDir,
    pub dir: TempDir,
}

impl MariaDb {
    pub fn start() -> MariaDb {
        apt_install(&["mariadb-server"], || Path::new(MARIADBD).exists() && Path::new("/usr/bin/mariadb").exists());
        let account = service_account("mysql");
        let (dir, sockets) = server_dirs("mariadb", "mariadb", account);
        let data = dir.path().join("data");
        let socket = sockets.path().join("mariadb.sock");
        // As root, mariadbd and the install script switch to `mysql` themselves.
        let as_user = if account.is_some() { vec!["--user=mysql"] } else { vec![] };

        // A temp dir of its own: with the shared /tmp, a bootstrap run beside
        // another one was seen to lose its temporary tables (ERROR 1051).
        let scratch = dir.path().join("tmp");
        std::fs::create_dir(&scratch).unwrap();
        if let Some(account) = account {
            chown(&scratch, account);
        }
        let tmpdir = format!("--tmpdir={}", scratch.display());
        let mut install = Command::new("mariadb-install-db");
        install.arg("--no-defaults").arg(format!("--datadir={}", data.display())).args(&as_user).arg(&tmpdir);
        install.args(["--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"]);
        run_ok("mariadb-install-db", install);

        let tls = TestCa::new(&dir.path().join("tls"));
        let (cert, key) = tls.install_for(&data, account);
        let log_path = dir.path().join("mariadb.log");
        let (process, port) = on_a_free_port("mariadbd", |port| {
            let mut mariadbd = Command::new(MARIADBD);
            mariadbd.arg("--no-defaults").args(&as_user).arg(&tmpdir);
            mariadbd.arg(format!("--datadir={}", data.display()));
            mariadbd.arg(format!("--socket={}", socket.display()));
            mariadbd.arg(format!("--pid-file={}", data.join("mariadbd.pid").display()));
            mariadbd.args([&format!("--port={port}"), "--bind-address=127.0.0.1", "--skip-name-resolve", "--skip-log-bin"]);
            // Throwaway data: small, and no waiting for the disk.
            mariadbd.args(["--innodb-buffer-pool-size=32M", "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0"]);
            mariadbd.arg(format!("--ssl-ca={}", tls.ca.display()));
            mariadbd.arg(format!("--ssl-cert={}", cert.display())).arg(format!("--ssl-key={}", key.display()));
            let mut process = ServerProcess::spawn("mariadbd", mariadbd, &log_path, libc::SIGKILL);
            process.wait_ready(|log| log.contains("ready for connections"))?;
            Ok((process, port))
        });
        let (user, password, database) = ("wasgi", "wasgi", "wasgi");
        let mut sql = format!("CREATE DATABASE {database};");
        for host in ["localhost", "127.0.0.1", "%"] {
            sql += &format!("CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'; GRANT ALL ON {database}.* TO '{user}'@'{host}';");
        }
        let mut setup = Command::new("mariadb");
        setup.arg("--no-defaults").arg(format!("--socket={}", socket.display())).args(["-u", "root", "-e", &sql]);
        run_ok("mariadb (creating the wasgi user and database)", setup);
        MariaDb {
            process,
            port,
            socket,
            user: user.into(),
            password: password.into(),
            database: database.into(),
            ca_file: tls.ca,
            _sockets: sockets,
            dir,
        }
    }

    /// Runs `sql` as `wasgi` on database `wasgi` with the mariadb client
    /// over the socket: its rows, tab-separated, one a line, no header.
    pub fn query(&self, sql: &str) -> String {
        let mut client = Command::new("mariadb");
        client.arg("--no-defaults").arg(format!("--socket={}", self.socket.display()));
        client.args(["-u", &self.user, &format!("-p{}", self.password), "-N", "-B", "-e", sql, &self.database]);
        output_of("mariadb", client)
    }

    /// `mysql://wasgi:wasgi@127.0.0.1:port/wasgi`
    pub fn url(&self) -> String {
        format!("mysql://{}:{}@127.0.0.1:{}/{}", self.user, self.password, self.port, self.database)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn log(&self) -> String {
        self.process.log()
    }
}

// ---------------------------------------------------------------- Python servers

/// Starts a fixture script that prints `listening on PORT` once bound
/// (port 0: no race for the port); the process and the port.
fn start_python_script(name: &'static str, python: &Path, args: &[&Path], log_path: &Path) -> (ServerProcess, u16) {
    let mut command = Command::new(python);
    command.arg("-u").args(args);
    let mut process = ServerProcess::spawn(name, command, log_path, libc::SIGKILL);
    let mut port = None;
    let started = process.wait_ready(|log| {
        port = log.lines().find_map(|l| l.strip_prefix("listening on ")).and_then(|p| p.trim().parse().ok());
        port.is_some()
    });
    if let Err(log) = started {
        panic!("{name} exited before accepting connections\n{log}");
    }
    (process, port.unwrap())
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/servers").join(name)
}

/// The HTTP/1.1 server of tests/fixtures/servers/echo_server.py (its
/// docstring lists the paths: /hello, /echo, /headers, /status/N, /slow,
/// /reset), on 127.0.0.1:`port`; HTTPS when started with a [`TestCa`].
pub struct HttpServer {
    process: ServerProcess,
    pub port: u16,
    pub tls: bool,
    pub dir: TempDir,
}

/// The body of the echo server's `GET /hello`.
pub const HELLO_BODY: &str = "hello from the echo server\n";

impl HttpServer {
    pub fn start(tls: Option<&TestCa>) -> HttpServer {
        let dir = TempDir::new("http");
        let script = fixture("echo_server.py");
        let mut args = vec![script.as_path()];
        if let Some(ca) = tls {
            args.extend([ca.cert.as_path(), ca.key.as_path()]);
        }
        let (process, port) = start_python_script("echo_server.py", Path::new("python3"), &args, &dir.path().join("http.log"));
        HttpServer { process, port, tls: tls.is_some(), dir }
    }

    /// `http[s]://localhost:port` (localhost: the name the certificate has).
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://localhost:{}", self.port)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// What it logged: one line a request.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// aiosmtpd in a virtualenv of the host's python3, installed once.
fn smtp_python() -> PathBuf {
    crate::venv("smtp", &["aiosmtpd==1.4.*"]).join("bin/python")
}

/// The SMTP server of tests/fixtures/servers/smtp_server.py on
/// 127.0.0.1:`port`: every message it accepts becomes a file in `maildir`.
/// With a [`TestCa`] it offers STARTTLS; AUTH takes `wasgi`/`wasgi`.
pub struct Smtp {
    process: ServerProcess,
    pub port: u16,
    pub maildir: PathBuf,
    pub dir: TempDir,
}

impl Smtp {
    pub fn start(tls: Option<&TestCa>) -> Smtp {
        let python = smtp_python();
        let dir = TempDir::new("smtp");
        let maildir = dir.path().join("mail");
        std::fs::create_dir_all(&maildir).unwrap();
        let script = fixture("smtp_server.py");
        let mut args = vec![script.as_path(), maildir.as_path()];
        if let Some(ca) = tls {
            args.extend([ca.cert.as_path(), ca.key.as_path()]);
        }
        let (process, port) = start_python_script("smtp_server.py", &python, &args, &dir.path().join("smtp.log"));
        Smtp { process, port, maildir, dir }
    }

    /// The messages received so far, oldest first: `X-Envelope-From` and
    /// `X-Envelope-To` lines, then the message as sent.
    pub fn messages(&self) -> Vec<String> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.maildir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        names.sort();
        names.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
    }

    /// Waits until `count` messages have arrived; panics with the log after `timeout`.
    pub fn wait_for_messages(&self, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            assert!(Instant::now() < deadline, "{} of {count} messages arrived within {timeout:?}\n{}", messages.len(), self.process.log_tail());
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn log(&self) -> String {
        self.process.log()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether anything of the process group `pid` led is still alive.
    fn group_alive(pid: u32) -> bool {
        unsafe { libc::kill(-(pid as i32), 0) == 0 }
    }

    fn timed<T>(what: &str, start: impl FnOnce() -> T) -> T {
        let began = Instant::now();
        let server = start();
        eprintln!("{what} started in {:?}", began.elapsed());
        server
    }

    fn run(what: &str, command: &mut Command) -> String {
        let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{what} failed: {text}{}", String::from_utf8_lossy(&output.stderr));
        text
    }

    #[test]
    fn a_server_that_lost_its_port_is_started_again_on_another() {
        let mut ports = Vec::new();
        let port = on_a_free_port("a server", |port| {
            ports.push(port);
            if ports.len() < PORT_ATTEMPTS {
                Err("bind: Address already in use".to_owned())
            } else {
                Ok(port)
            }
        });
        assert_eq!(ports.len(), PORT_ATTEMPTS);
        assert_eq!(Some(&port), ports.last());
        let failed = std::panic::catch_unwind(|| on_a_free_port("a server", |_| -> Result<(), String> { Err("bad config".into()) }));
        assert!(failed.is_err(), "an exit for another reason is not retried");
    }

    #[test]
    fn postgres_takes_password_logins_over_tcp_tls_and_the_socket() {
        let pg = timed("postgres", Postgres::start);
        let pid = pg.pid();
        let psql = pg.bin_dir.join("psql");
        let tcp = run(
            "psql over TCP",
            Command::new(&psql).args(["-h", "127.0.0.1", "-p", &pg.port.to_string(), "-U", &pg.user, "-d", &pg.database, "-tAc", "SELECT 1"]).env("PGPASSWORD", &pg.password),
        );
        assert_eq!(tcp.trim(), "1");
        let socket = run(
            "psql over the socket",
            Command::new(&psql).arg("-h").arg(&pg.socket_dir).args(["-p", &pg.port.to_string(), "-U", &pg.user, "-d", &pg.database, "-tAc", "SELECT current_database()"]).env("PGPASSWORD", &pg.password),
        );
        assert_eq!(socket.trim(), "wasgi");
        assert!(pg.socket_path().exists());
        let url = format!("host=localhost port={} user={} dbname={} sslmode=verify-full sslrootcert={}", pg.port, pg.user, pg.database, pg.ca_file.display());
        let tls = run(
            "psql with verify-full",
            Command::new(&psql).args([url.as_str(), "-tAc", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"]).env("PGPASSWORD", &pg.password),
        );
        assert_eq!(tls.trim(), "t");
        pg.query("CREATE TABLE notes (id int, body text); INSERT INTO notes VALUES (1, 'one')");
        assert_eq!(pg.query("SELECT id, body FROM notes").trim(), "1|one");
        let wrong = Command::new(&psql).arg(pg.url().replace(":wasgi@", ":nope@")).args(["-c", "SELECT 1"]).output().unwrap();
        assert!(!wrong.status.success(), "a wrong password was let in");
        drop(pg);
        assert!(!group_alive(pid), "postgres processes were left behind");
    }

    #[test]
    fn redis_answers_ping_over_tcp_and_the_socket() {
        let redis = timed("redis", Redis::start);
        let pid = redis.pid();
        let tcp = run("redis-cli", Command::new("redis-cli").args(["-h", "127.0.0.1", "-p", &redis.port.to_string(), "PING"]));
        assert_eq!(tcp.trim(), "PONG");
        let socket = run("redis-cli -s", Command::new("redis-cli").arg("-s").arg(&redis.socket).arg("PING"));
        assert_eq!(socket.trim(), "PONG");
        drop(redis);
        assert!(!group_alive(pid));

        let redis = Redis::start_with_password("sesame");
        let refused = run("redis-cli", Command::new("redis-cli").args(["-p", &redis.port.to_string(), "PING"]));
        assert!(refused.contains("NOAUTH"), "{refused}");
        let pong = run("redis-cli -a", Command::new("redis-cli").args(["--no-auth-warning", "-a", "sesame", "-p", &redis.port.to_string(), "PING"]));
        assert_eq!(pong.trim(), "PONG");
        redis.command(&["SET", "greeting", "hi"]);
        assert_eq!(redis.command(&["GET", "greeting"]).trim(), "hi");
    }

    #[test]
    fn mariadb_takes_the_wasgi_user_over_tcp_tls_and_the_socket() {
        let db = timed("mariadb", MariaDb::start);
        let pid = db.pid();
        let tcp = run(
            "mariadb over TCP",
            Command::new("mariadb").args(["--no-defaults", "-h", "127.0.0.1", "-P", &db.port.to_string(), "-u", "wasgi", "-pwasgi", "wasgi", "-N", "-e", "select 1"]),
        );
        assert_eq!(tcp.trim(), "1");
        let socket = run(
            "mariadb over the socket",
            Command::new("mariadb").arg("--no-defaults").arg(format!("--socket={}", db.socket.display())).args(["-u", "wasgi", "-pwasgi", "-N", "-e", "select database()", "wasgi"]),
        );
        assert_eq!(socket.trim(), "wasgi");
        let tls = run(
            "mariadb over TLS",
            Command::new("mariadb")
                .args(["--no-defaults", "-h", "127.0.0.1", "-P", &db.port.to_string(), "-u", "wasgi", "-pwasgi", "-N", "--ssl-verify-server-cert"])
                .arg(format!("--ssl-ca={}", db.ca_file.display()))
                .args(["-e", "show status like 'Ssl_version'"]),
        );
        assert!(tls.contains("TLS"), "{tls}");
        db.query("CREATE TABLE notes (id int, body text); INSERT INTO notes VALUES (1, 'one')");
        assert_eq!(db.query("SELECT id, body FROM notes").trim(), "1\tone");
        drop(db);
        assert!(!group_alive(pid));
    }

    #[test]
    fn http_server_serves_hello_echo_and_faults_over_http_and_https() {
        apt_install(&["curl"], || Path::new("/usr/bin/curl").exists());
        let dir = TempDir::new("http-test");
        let ca = timed("test CA", || TestCa::new(dir.path()));
        for tls in [None, Some(&ca)] {
            let http = timed("echo server", || HttpServer::start(tls));
            let pid = http.pid();
            let curl = |args: &[&str]| {
                let mut cmd = Command::new("curl");
                cmd.args(["-sS", "--max-time", "10", "--cacert"]).arg(&ca.ca).args(args);
                cmd.output().unwrap()
            };
            let hello = curl(&[&format!("{}/hello", http.base_url())]);
            assert_eq!(String::from_utf8_lossy(&hello.stdout), HELLO_BODY, "{}", String::from_utf8_lossy(&hello.stderr));
            let echo = curl(&["--data-binary", "ping pong", &format!("{}/echo", http.base_url())]);
            assert_eq!(String::from_utf8_lossy(&echo.stdout), "ping pong");
            let reset = curl(&[&format!("{}/reset", http.base_url())]);
            assert!(!reset.status.success(), "a reset went unnoticed");
            let slow = curl(&["--max-time", "1", &format!("{}/slow?s=5", http.base_url())]);
            assert_eq!(slow.status.code(), Some(28), "curl's timeout, after the first half: {slow:?}");
            drop(http);
            assert!(!group_alive(pid));
        }
    }

    #[test]
    fn smtp_server_stores_a_mail_sent_plain_and_with_starttls() {
        let dir = TempDir::new("smtp-test");
        let ca = TestCa::new(dir.path());
        smtp_python();
        let smtp = timed("smtp", || Smtp::start(Some(&ca)));
        let pid = smtp.pid();
        let send = format!(
            "import smtplib, ssl\n\
             s = smtplib.SMTP('127.0.0.1', {port}, timeout=10)\n\
             s.sendmail('a@example.test', ['b@example.test'], 'Subject: plain\\r\\n\\r\\nfirst\\r\\n')\n\
             s.starttls(context=ssl.create_default_context(cafile={ca:?}))\n\
             s.login('wasgi', 'wasgi')\n\
             s.sendmail('c@example.test', ['d@example.test', 'e@example.test'], 'Subject: tls\\r\\n\\r\\nsecond\\r\\n')\n\
             s.quit()\n",
            port = smtp.port,
            ca = ca.ca.display().to_string(),
        );
        run("smtplib", Command::new("python3").args(["-c", &send]));
        let messages = smtp.wait_for_messages(2, Duration::from_secs(10));
        assert!(messages[0].contains("X-Envelope-From: a@example.test") && messages[0].contains("first"), "{}", messages[0]);
        assert!(messages[1].contains("X-Envelope-To: d@example.test, e@example.test") && messages[1].contains("Subject: tls"), "{}", messages[1]);
        drop(smtp);
        assert!(!group_alive(pid));
    }
}
