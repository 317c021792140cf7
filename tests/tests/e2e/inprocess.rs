//! The in-process server: `wasgi run`'s flags planned and served inside the
//! test process (`wasgi::cli::supervisor::serve_plan`, what `wasgi run`
//! does once its listener is bound), for tests that need neither a separate
//! process nor its log: no binary to spawn and no log to scan, the same
//! config, plan, groups, sandbox and HTTP service. Tests that look at the
//! log, signals, exit status or the process's memory spawn the binary
//! ([`wasgi_tests::Wasgi`]).

use std::net::TcpStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::Parser;
use wasgi::cli::run::{config_from_flags, RunArgs};
use wasgi::cli::supervisor::{serve_plan, OnHangup, Serving};
use wasgi::config::plan::plan_config;
use wasgi::http::listener::Listener;
use wasgi::spec::listen::{Listen, ListenAddr};
use wasgi_tests::{apps, cache_dir, http, setup};

/// `wasgi run`'s flags, parsed as the binary parses them.
#[derive(Parser)]
struct RunFlags {
    #[command(flatten)]
    run: RunArgs,
}

/// A server running on its own thread and runtime in this process; stopped
/// (drained, then joined) when dropped.
pub struct InProcess {
    pub addr: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    hangup: tokio::sync::mpsc::Sender<()>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    /// Serves as `wasgi run ARGS` would (the tests' cache directory, a free
    /// loopback port), once the app's instances are ready.
    pub fn run(args: &[&str]) -> InProcess {
        setup();
        let cache = cache_dir();
        let mut argv = vec!["wasgi", "--cache-dir", cache.to_str().unwrap()];
        argv.extend_from_slice(args);
        let flags = RunFlags::try_parse_from(&argv).unwrap_or_else(|e| panic!("wasgi run {args:?}: {e}")).run;
        let config = config_from_flags(&flags).unwrap_or_else(|e| panic!("wasgi run {args:?}: {e}"));
        let drain = config.graceful_timeout;
        let plan = plan_config(config, &flags.interpreter.cache_dir().unwrap(), flags.interpreter.interpreter())
            .unwrap_or_else(|e| panic!("wasgi run {args:?}: {e}"));
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let (hangup, hangups) = tokio::sync::mpsc::channel(1);
        let (bound, bound_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let result = runtime.block_on(async move {
                let listen = Listen::new("127.0.0.1:0".parse().unwrap());
                let listener = Listener::bind(&listen, 128).await?;
                let ListenAddr::Tcp(addr) = listener.local_addr() else { unreachable!("a TCP listener was bound") };
                bound.send(addr.to_string()).unwrap();
                let stop = async move {
                    let _ = shutdown_rx.await;
                };
                let serving = Serving { listeners: vec![listener], admin: None, hangups, reopens: tokio::sync::mpsc::channel(1).1 };
                serve_plan(plan, &flags.interpreter, serving, OnHangup::Restart, stop, drain, Instant::now()).await
            });
            runtime.shutdown_timeout(Duration::from_secs(1));
            result
        });
        let addr = bound_rx.recv_timeout(Duration::from_secs(30)).expect("the in-process server binds its listener");
        let mut server = InProcess { addr, shutdown: Some(shutdown), hangup, thread: Some(thread) };
        server.wait_ready();
        server
    }

    /// Until `/.wasgi/ready` answers 200 (the server accepts only once the
    /// groups have started); a start that failed panics with its error.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(600);
        while Instant::now() < deadline {
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                let result = self.thread.take().unwrap().join().expect("the server thread does not panic");
                panic!("the in-process server stopped before it was ready: {result:?}");
            }
            if let Ok(mut stream) = TcpStream::connect(&self.addr) {
                use std::io::Write;
                stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
                if stream.write_all(b"GET /.wasgi/ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").is_ok() {
                    if let Ok(r) = http::read_response(&mut stream, false) {
                        if r.status == 200 {
                            return;
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the in-process server on {} was not ready in 600 s", self.addr);
    }

    /// A client connection to the server.
    pub fn connect(&self) -> TcpStream {
        http::connect(&self.addr)
    }

    pub fn get(&self, path: &str) -> http::Response {
        http::get(&self.addr, path)
    }

    /// What SIGHUP does to `wasgi run`: the instances restart on the code as
    /// it is now.
    pub fn hangup(&self) {
        self.hangup.try_send(()).expect("the server takes a hangup");
    }

    /// Stops accepting, lets requests in flight finish and returns how the
    /// server ended.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stop_now()
    }

    fn stop_now(&mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.thread.take() {
            Some(thread) => thread.join().expect("the server thread does not panic"),
            None => Ok(()),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let _ = self.stop_now();
    }
}

/// The harness itself: a server started in-process answers, takes a hangup
/// (its instances are replaced: a fresh import, so the module-level counter
/// starts again) and stops cleanly, after which its port refuses.
#[test]
fn an_in_process_server_serves_restarts_on_hangup_and_stops() {
    let script = apps().join("features.wsgi");
    let server = InProcess::run(&[script.to_str().unwrap(), "--instances", "1"]);
    let before = server.get("/instance").text();
    let again = server.get("/instance").text();
    let (token, n) = before.split_once(' ').unwrap();
    assert_eq!(again, format!("{token} {}", n.parse::<u32>().unwrap() + 1), "one instance, imported once");
    server.hangup();
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let now = server.get("/instance").text();
        if !now.starts_with(token) || Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_ne!(after.split_once(' ').unwrap().0, token, "a hangup replaces the instance");
    let addr = server.addr.clone();
    server.stop().expect("the server stops cleanly");
    assert!(TcpStream::connect(&addr).is_err(), "the port is closed after the stop");
}
