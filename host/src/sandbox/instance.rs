//! One guest: a wasmtime `Store` running python.wasm and the bridge.
//!
//! The store's data is the guest's WASI context, built from the app's grants
//! and nothing else, plus its memory limits. `_start` runs once, as a tokio
//! future: the bridge imports the app and then loops waiting for frames, so
//! an idle instance is a parked future, not a thread. The frames travel over
//! the guest's stdin and stdout, or, for an interpreter that imports them,
//! through host calls ([`crate::sandbox::hostcalls`]); either way the host talks to
//! the guest through [`GuestIo`] inside [`Instance::drive`], which also says
//! why the guest stopped if it exits or traps.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use tokio::sync::mpsc;
use wasmtime::{Store, StoreLimitsBuilder};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::engine::wasm_error::WasmContext;
use crate::protocol::frames::{Decoder, Kind};
use crate::sandbox::gone::{Channel, Gone};
use crate::sandbox::abi::WASGI_SERVE;
use crate::sandbox::hostcalls::HostEnd;
use crate::sandbox::net::NetEnd;
use crate::sandbox::prepared::{Entry, Prepared};
use crate::sandbox::state::{CpuBudget, GuestState, MemoryWatch, Usage};
use crate::sandbox::stdio::{ChannelStdin, ChannelStdout, LogStderr, LogTag, CHANNEL_SLOTS};
use crate::spec::guest::{GuestSpec, GUEST_GID, GUEST_UID, RUN_FLAGS_POLICY};
use crate::spec::limits::{Isolation, WARMUP_ROUNDS};

/// This module's log target: its name before the folders, so log lines
/// and `WASGI_LOG` filters read as they did.
const LOG_TARGET: &str = "wasgi::instance";

/// The bridge, joined at build time from guest/bridge/ ([`super::bridge`]);
/// it runs as `python -c BOOT BRIDGE CONFIG`.
pub(crate) use super::bridge::BRIDGE_SOURCE;
/// Runs the bridge as module `wasgi_bridge`, under a file name that
/// tracebacks can show source lines for.
const BOOT: &str = "import sys,types,linecache as l;s=sys.argv[1];n='<wasgi-bridge>';\
l.cache[n]=(len(s),None,s.splitlines(True),n);m=types.ModuleType('wasgi_bridge');m.__file__=n;\
sys.modules['wasgi_bridge']=m;exec(compile(s,n,'exec'),m.__dict__)";




/// Why an instance could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The app itself failed to load: retrying will not help.
    #[error("{0}")]
    App(String),
    /// The guest ended (trapped, exited...) before it was ready.
    #[error("the guest stopped before the app was loaded: {0}")]
    Stopped(Gone),
    /// The guest broke the start's protocol, or its task failed.
    #[error("the guest stopped before the app was loaded: {0}")]
    Crashed(String),
    #[error("{0:#}")]
    Setup(anyhow::Error),
}

/// The host's ends of the channels the guest's frames travel on (its stdin
/// and stdout, or its host calls).
pub struct GuestIo {
    pub id: u64,
    to_guest: mpsc::Sender<Bytes>,
    from_guest: mpsc::Receiver<Bytes>,
    decoder: Decoder,
    /// Who is speaking in the guest's log records; it names the request
    /// being served.
    tag: LogTag,
}

impl GuestIo {
    /// Sends one frame to the guest.
    pub async fn send(&mut self, frame: Bytes) -> Result<(), Gone> {
        self.to_guest.send(frame).await.map_err(|_| Gone::Closed(Channel::ToGuest))
    }

    /// The guest's next frame; its log records are logged on the way.
    pub async fn recv(&mut self) -> Result<(Kind, Bytes), Gone> {
        loop {
            match self.decoder.next_frame() {
                Ok(Some((Kind::Log, payload))) => {
                    self.log_record(&payload);
                    continue;
                }
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(e) => return Err(e.into()),
            }
            match self.from_guest.recv().await {
                Some(bytes) => self.decoder.push_bytes(bytes),
                None => return Err(Gone::Closed(Channel::FromGuest)),
            }
        }
    }

    fn log_record(&self, payload: &[u8]) {
        // `level\0message`: the message is the rest, NULs and all.
        let (level, message) = match payload.iter().position(|b| *b == 0) {
            Some(nul) => (&payload[..nul], &payload[nul + 1..]),
            None => (payload, &b""[..]),
        };
        self.tag.record(level, message, 0);
    }

    /// A frame the guest has already sent, without waiting for one: when the
    /// guest writes its last frame and exits within one poll, its exit is
    /// seen first and the frame is still queued.
    pub fn try_recv(&mut self) -> Option<Result<(Kind, Bytes), Gone>> {
        loop {
            match self.decoder.next_frame() {
                Ok(Some((Kind::Log, payload))) => self.log_record(&payload),
                Ok(Some(frame)) => return Some(Ok(frame)),
                Ok(None) => match self.from_guest.try_recv() {
                    Ok(bytes) => self.decoder.push_bytes(bytes),
                    Err(_) => return None,
                },
                Err(e) => return Some(Err(e.into())),
            }
        }
    }

    /// Marks the request this instance serves, for its log lines.
    pub fn set_request(&self, id: Option<Arc<str>>) {
        // What the log rate limit dropped is said under the request that lost it.
        self.tag.report_dropped();
        self.tag.request.set(id);
    }
}

/// A store set up for one guest, not yet instantiated, and the host's ends of its stdio.
pub(crate) struct NewGuest {
    pub store: Store<GuestState>,
    pub io: GuestIo,
    pub memory_bytes: Arc<AtomicUsize>,
    pub cpu: Arc<CpuBudget>,
    pub usage: Arc<Usage>,
}

impl NewGuest {
    /// `snapshot`: the bridge imports the app and returns instead of serving.
    pub(crate) fn new(prepared: &Prepared, spec: &GuestSpec, id: u64, snapshot: bool) -> Result<NewGuest> {
        let engine = prepared.pre.module().engine();
        let (to_guest, guest_stdin) = mpsc::channel(CHANNEL_SLOTS);
        let (guest_stdout, from_guest) = mpsc::channel(CHANNEL_SLOTS);
        let tag = LogTag::new(spec.name.clone(), id);
        let (stdio, hostcalls) = if prepared.hostcalls {
            (None, Some(HostEnd::new(guest_stdin, guest_stdout, tag.clone())))
        } else {
            (Some((ChannelStdin::new(guest_stdin), ChannelStdout::new(guest_stdout))), None)
        };
        let wasi = wasi_context(spec, prepared, stdio, tag.clone(), snapshot)?;
        let memory_bytes = Arc::new(AtomicUsize::new(0));
        let usage = Arc::new(Usage::default());
        let limits = MemoryWatch {
            limits: StoreLimitsBuilder::new().memory_size(spec.memory_limit).instances(1).build(),
            bytes: memory_bytes.clone(),
            usage: usage.clone(),
        };
        let cpu = Arc::new(CpuBudget::default());
        // Also with frames on stdio (WASGI_FRAMES=stdio): the interpreter still imports the calls.
        let net = Some(NetEnd::new(spec.network.clone(), spec.group.clone(), spec.policies.clone(), tag.clone()));
        let mut store = Store::new(engine, GuestState { wasi, hostcalls, net, memory: None, limits, cpu: cpu.clone() });
        store.limiter(|s| &mut s.limits);
        // Yield at every epoch tick (10 ms), so a busy guest neither holds a
        // worker thread other connections need nor escapes its deadline.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| ctx.data().cpu.on_tick());
        let io = GuestIo { id, to_guest, from_guest, decoder: Decoder::default(), tag };
        Ok(NewGuest { store, io, memory_bytes, cpu, usage })
    }
}

/// The guest's run, with the thread CPU time of each poll added to its
/// usage: each poll runs the guest's wasm (and its host calls) until it
/// yields, on the polling thread.
struct CpuTimed<F> {
    run: F,
    usage: Arc<Usage>,
}

impl<F: Future + Unpin> Future for CpuTimed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        let before = thread_cpu_nanos();
        let polled = Pin::new(&mut self.run).poll(cx);
        self.usage.cpu_nanos.fetch_add(thread_cpu_nanos().saturating_sub(before), Ordering::Relaxed);
        polled
    }
}

/// This thread's CPU time so far, in nanoseconds.
fn thread_cpu_nanos() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return 0;
    }
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// The guest's `_start` call; it owns the Store and ends when the guest does.
type Run = Pin<Box<dyn Future<Output = Gone> + Send>>;

/// A running guest.
///
/// The guest only makes progress while [`Instance::drive`] polls it, together
/// with the host's side of the exchange, in one task: handing frames across
/// costs no thread wake-ups, and an idle instance is a parked future.
pub struct Instance {
    pub io: GuestIo,
    /// `None` once the guest has stopped.
    run: Option<Run>,
    /// The guest's linear memory, in bytes.
    memory_bytes: Arc<AtomicUsize>,
    /// The CPU budget of the request being served.
    pub cpu: Arc<CpuBudget>,
    /// What it has used so far (CPU time, refused memory growth).
    pub usage: Arc<Usage>,
    /// Requests completed by this instance.
    pub served: u64,
    /// How the bridge says its frames travel ("host calls" or "stdio"),
    /// from its Ready frame.
    pub transport: String,
}

impl Instance {
    /// Starts a guest and waits until the app is imported.
    pub async fn start(prepared: &Prepared, spec: &GuestSpec, id: u64) -> Result<Instance, StartError> {
        let pre = &prepared.pre;
        let mut guest = NewGuest::new(prepared, spec, id, false).map_err(StartError::Setup)?;
        let store = &mut guest.store;
        let instance = match pre.instantiate_async(&mut *store).await {
            Ok(i) => i,
            // Copy-on-write memory setup has been seen to fail once with
            // "cannot add seals to the memfd"; one retry gets past it.
            Err(first) => {
                tracing::warn!(target: LOG_TARGET, app = %spec.name, instance = id, "instantiation failed ({first:#}); retrying once");
                pre.instantiate_async(&mut *store)
                    .await
                    .wasm_context("cannot instantiate python.wasm")
                    .map_err(StartError::Setup)?
            }
        };
        let entry = match prepared.entry {
            Entry::Start => "_start",
            Entry::Serve => WASGI_SERVE.name,
        };
        let start = instance
            .get_typed_func::<(), ()>(&mut *store, entry)
            .with_wasm_context(|| format!("the interpreter has no {entry}"))
            .map_err(StartError::Setup)?;
        let NewGuest { mut store, io, memory_bytes, cpu, usage } = guest;
        // A snapshot's memory starts at its full size, without growing.
        if let Some(memory) = instance.get_memory(&mut store, "memory") {
            memory_bytes.fetch_max(memory.data_size(&store), Ordering::Relaxed);
        }
        let run: Run = Box::pin(async move { Gone::from_run(start.call_async(&mut store, ()).await) });
        let run: Run = Box::pin(CpuTimed { run, usage: usage.clone() });

        let mut instance = Instance { io, run: Some(run), memory_bytes, cpu, usage, served: 0, transport: String::new() };
        let restored = prepared.entry == Entry::Serve;
        let ready = instance
            .drive(spec.limits.startup_timeout, async |io| {
                if restored {
                    // Who it is: the snapshot may be shared by several groups.
                    io.send(crate::protocol::frames::encode(Kind::Identity, identity(spec).as_bytes())).await?;
                }
                io.recv().await
            })
            .await;
        match ready {
            Err(Gone::Deadline(limit)) => Err(StartError::App(format!(
                "{}: the app was still importing after startup_timeout ({:.0}s); the instance was stopped",
                spec.script.display(),
                limit.as_secs_f64()
            ))),
            Ok((Kind::Ready, transport)) => {
                instance.transport = String::from_utf8_lossy(&transport).into_owned();
                tracing::debug!(
                    target: LOG_TARGET,
                    app = %spec.name, instance = id,
                    "ready; frames over {}; linear memory {} MiB", instance.transport, instance.memory_bytes() >> 20
                );
                Ok(instance)
            }
            Ok((Kind::StartupFailed, message)) => Err(StartError::App(startup_failure(spec, &message))),
            Ok((kind, _)) => Err(StartError::Crashed(format!("unexpected {kind:?} frame before Ready"))),
            Err(gone) => match instance.io.try_recv().and_then(Result::ok) {
                // The bridge reported the failure and exited before it was read.
                Some((Kind::StartupFailed, message)) => Err(StartError::App(startup_failure(spec, &message))),
                _ => Err(StartError::Stopped(gone)),
            },
        }
    }

    /// The guest's linear memory, in bytes, shared with the group's accounting.
    pub fn memory_watch(&self) -> Arc<AtomicUsize> {
        self.memory_bytes.clone()
    }

    /// The guest's linear memory, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes.load(Ordering::Relaxed)
    }

    /// Runs `work` against the guest's I/O while the guest runs. If the guest
    /// stops first (exit, trap, CPU limit), the result says how. Past `limit`,
    /// the guest is stopped wherever it is (it yields at every epoch tick, so
    /// even a busy loop is interrupted within about 10 ms): [`Gone::Deadline`].
    /// After any `Err` the instance is spent.
    pub async fn drive<T>(
        &mut self,
        limit: Option<std::time::Duration>,
        work: impl AsyncFnOnce(&mut GuestIo) -> Result<T, Gone>,
    ) -> Result<T, Gone> {
        let Some(run) = self.run.as_mut() else {
            return Err(Gone::AlreadyStopped);
        };
        let deadline = async {
            match limit {
                Some(limit) => tokio::time::sleep(limit).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            result = work(&mut self.io) => result,
            gone = run => {
                self.run = None;
                Err(gone)
            }
            _ = deadline => {
                // Dropping the suspended guest frees it; it is never resumed.
                self.run = None;
                Err(Gone::Deadline(limit.unwrap_or_default()))
            }
        }
    }
}

/// The guest's whole world: its grants, its environment, its stdio. No
/// sockets, no host environment, no other file. `frames` are the stdin and
/// stdout the frames travel on; without them (host calls) stdin is empty and
/// stdout goes to the log like stderr.
fn wasi_context(
    spec: &GuestSpec,
    prepared: &Prepared,
    frames: Option<(ChannelStdin, ChannelStdout)>,
    tag: LogTag,
    snapshot: bool,
) -> Result<WasiP1Ctx> {
    let (stdlib, hostcalls) = (prepared.stdlib.as_deref(), prepared.hostcalls);
    let mut builder = WasiCtxBuilder::new();
    match frames {
        Some((stdin, stdout)) => builder.stdin(stdin).stdout(stdout),
        None => builder.stdout(LogStderr(tag.clone())),
    };
    builder.stderr(LogStderr(tag));
    builder.allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
    // The grants' file operations run on tokio's blocking pool, never on the
    // thread that drives the instance: a FIFO or a slow mount inside a grant
    // then stalls only its own instance, and request_timeout still ends it.
    // (Each preopen keeps the setting in force when it was added.)
    builder.allow_blocking_current_thread(false);
    let prefix = spec.env.iter().find(|(k, _)| k == "PYTHONPYCACHEPREFIX").map(|(_, v)| v);
    // Under request isolation nothing a request writes may outlive it: the
    // group's bytecode cache, filled while the snapshot imports the app, is
    // read-only for the instances that serve (a planted .pyc would otherwise
    // run in every later request that imports that module).
    let frozen_pycache = spec.isolation == Isolation::Request && !snapshot;
    for grant in &spec.grants {
        let frozen = frozen_pycache && prefix.is_some_and(|p| grant.guest_path == Path::new(p));
        let perms = if grant.write && !frozen { FsPerms::ReadWrite } else { FsPerms::ReadOnly };
        let guest_path = guest_path(&grant.guest_path)?;
        // By handle: the directory opened when the configuration was
        // planned, whatever its name leads to now.
        builder
            .preopened_dir(grant.dir.reopen_path(), guest_path, perms)
            .with_wasm_context(|| format!("cannot grant {} (opened as {})", grant.path.display(), grant.dir.reopen_path().display()))?;
    }
    if let Some(stdlib) = stdlib {
        // The standard library is the server's own (in its cache) and the
        // imports' many small reads are faster in place.
        builder.allow_blocking_current_thread(true);
        let guest = guest_path(&stdlib.guest)?;
        builder
            .preopened_dir(&stdlib.host, guest, FsPerms::ReadOnly)
            .with_wasm_context(|| format!("cannot map the standard library {}", stdlib.host.display()))?;
        // The shipped .pyc, read-only inside the group's writable bytecode
        // cache (the longest preopen wins), so no group compiles them again.
        if let (Some(prefix), Some(mirror)) = (prefix, &stdlib.pyc_mirror) {
            let inside = format!("{prefix}{}", stdlib.guest.display());
            builder
                .preopened_dir(mirror, &inside, FsPerms::ReadOnly)
                .with_wasm_context(|| format!("cannot map {}", mirror.display()))?;
        }
    }
    if let Some(zoneinfo) = zoneinfo_mapped(spec, prepared) {
        builder
            .preopened_dir(zoneinfo, crate::engine::zoneinfo::GUEST_DIR, FsPerms::ReadOnly)
            .with_wasm_context(|| format!("cannot map the time-zone database {}", zoneinfo.display()))?;
    }
    // What the context keeps for itself: with it on, a guest's sleep would
    // be a thread::sleep on the driving thread (wasmtime-wasi's poll_oneoff).
    builder.allow_blocking_current_thread(false);
    for (key, value) in &spec.env {
        builder.env(key, value);
    }
    let config = bridge_config(spec, hostcalls, snapshot);
    builder.args(&["python", "-s", "-c", BOOT, BRIDGE_SOURCE, &config]);
    Ok(builder.build_p1())
}

/// Ends the bridge's report of a `ModuleNotFoundError` when sys.path holds
/// directories the group is not granted (guest/bridge/loader.py `_UNGRANTED_MARK`).
const UNGRANTED_MARK: &str = "\n\u{1e}wasgi-ungranted-sys-path ";

/// The message of a guest that could not load its app. When the bridge says
/// a missing module may sit in a sys.path entry the group is not granted
/// (which the guest cannot look into), the host looks: if the module is
/// there, the hint names where it is and the exact grant to add.
pub(crate) fn startup_failure(spec: &GuestSpec, message: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Ungranted {
        module: String,
        entries: Vec<PathBuf>,
        hint: String,
    }
    let text = String::from_utf8_lossy(message);
    let Some((before, marker)) = text.rsplit_once(UNGRANTED_MARK) else { return text.into_owned() };
    let Ok(ungranted) = serde_json::from_str::<Ungranted>(marker) else { return before.to_owned() };
    let module = &ungranted.module;
    // A module name, never a path: the entries are only looked into, one level.
    if module.is_empty() || !module.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return before.to_owned();
    }
    // The guest names these paths, but only the log hears what the host finds.
    let found = ungranted.entries.iter().filter(|e| e.is_absolute()).take(64).find_map(|entry| module_in(entry, module).map(|at| (entry, at)));
    let Some((entry, at)) = found else { return before.to_owned() };
    let traceback = before.strip_suffix(&ungranted.hint).unwrap_or(before);
    let entry = entry.display();
    let fix = if spec.policies.first().map(String::as_str) == Some(RUN_FLAGS_POLICY) {
        format!("Add `--python-path {entry}` to `wasgi run` (it grants the directory read-only).")
    } else {
        format!(
            "Grant it read-only: in wasgi.toml add \"{entry}\" to python_path of [[group]] {:?}, or add [[grant]] path = \"{entry}\" access = \"read\" to its policy ({}).",
            spec.group,
            if spec.policies.is_empty() { "policies/users/<user>.toml".to_owned() } else { spec.policies.join(", ") }
        )
    };
    format!(
        "{traceback}\nHint: module {module:?} was found at {} on the host, but {entry} is on sys.path without being granted to group {:?}, so the sandbox cannot see into it. {fix}",
        at.display(),
        spec.group
    )
}

/// Where a top-level module `name` is in `dir` on the host: a package (with
/// or without `__init__.py`), `name.py`, or a native extension `name.*.so`.
fn module_in(dir: &Path, name: &str) -> Option<PathBuf> {
    let package = dir.join(name);
    if package.is_dir() {
        return Some(package);
    }
    let source = dir.join(format!("{name}.py"));
    if source.is_file() {
        return Some(source);
    }
    let prefix = format!("{name}.");
    std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).find(|p| {
        p.file_name().and_then(|f| f.to_str()).is_some_and(|f| f.starts_with(&prefix) && f.ends_with(".so"))
    })
}

/// The time-zone database the guest gets at [`crate::engine::zoneinfo::GUEST_DIR`]:
/// wasgi's own, unless one of the group's grants already covers that path
/// (then what the policy grants is what the app sees).
pub(crate) fn zoneinfo_mapped<'a>(spec: &GuestSpec, prepared: &'a Prepared) -> Option<&'a Path> {
    let guest = Path::new(crate::engine::zoneinfo::GUEST_DIR);
    let granted = spec.grants.iter().any(|g| g.guest_path.starts_with(guest));
    prepared.zoneinfo.as_deref().filter(|_| !granted)
}

fn guest_path(path: &Path) -> Result<&str> {
    path.to_str().with_context(|| format!("{} is not valid UTF-8, which WASI paths must be", path.display()))
}

/// What the bridge reads from its command line.
pub(crate) fn bridge_config(spec: &GuestSpec, hostcalls: bool, snapshot: bool) -> String {
    bridge_config_value(spec, hostcalls, snapshot).to_string()
}

/// The bridge's configuration less what only names the group in its
/// messages (the group, its policies, where each grant comes from), which
/// a restored instance is told by [`identity`]: the part a snapshot is
/// made from, so groups that differ only in those share one snapshot.
/// Everything the app can observe (files, grants, environment, its user,
/// group, home and host name) stays in.
pub(crate) fn snapshot_config(spec: &GuestSpec, hostcalls: bool) -> String {
    let mut config = bridge_config_value(spec, hostcalls, true);
    config["group"] = "".into();
    config["policies"] = serde_json::json!([]);
    if let Some(grants) = config["grants"].as_array_mut() {
        for grant in grants {
            // The private /tmp's origin is the same words for every group,
            // and the bridge tells it apart by them: kept.
            if grant["origin"].as_str().is_some_and(|o| !o.contains("private /tmp")) {
                grant["origin"] = "".into();
            }
        }
    }
    config.to_string()
}

/// What a guest restored from a snapshot is told first (Kind::Identity):
/// the group its messages name, and the policies in force.
pub(crate) fn identity(spec: &GuestSpec) -> String {
    serde_json::json!({"group": spec.group, "policies": spec.policies}).to_string()
}

fn bridge_config_value(spec: &GuestSpec, hostcalls: bool, snapshot: bool) -> serde_json::Value {
    let grants: Vec<_> = spec
        .grants
        .iter()
        .map(|g| serde_json::json!({"path": g.guest_path, "write": g.write, "origin": g.origin}))
        .collect();
    serde_json::json!({
        "script": spec.script,
        "callable": spec.callable,
        "python_path": spec.python_path,
        "home": spec.home,
        "group": spec.group,
        "policies": spec.policies,
        "grants": grants,
        "restrict_stdout": spec.restrict_stdout,
        "frames": if hostcalls { "hostcalls" } else { "stdio" },
        "snapshot": snapshot,
        "warmup": if snapshot { spec.warmup.clone() } else { Vec::new() },
        "warmup_rounds": WARMUP_ROUNDS,
        // What wasgi can link in, for the hint on a native extension it cannot.
        "native_recipes": crate::engine::extensions::recipe_packages().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        // The versions the interpreter's built-in extension modules were
        // built from: the guest refuses one whose package has changed since.
        "native_built": spec.extensions.iter().filter_map(|(name, version)| {
            let recipe = crate::engine::extensions::recipe(name)?;
            Some((recipe.package.clone(), serde_json::json!({"version": version, "modules": recipe.modules().collect::<Vec<_>>()})))
        }).collect::<std::collections::BTreeMap<_, _>>(),
        // The socket module over the host's connections, when any are granted.
        "network": (!spec.network.rules.is_empty()).then(|| serde_json::json!({
            "ca_file": spec.env.iter().find(|(k, _)| k == "SSL_CERT_FILE").map(|(_, v)| v),
        })),
        "host_facts": {
            "user": spec.host_facts.user,
            "group": spec.host_facts.group,
            "uid": GUEST_UID,
            "gid": GUEST_GID,
            "home": spec.home.as_deref().unwrap_or(Path::new("/")),
            "hostname": spec.host_facts.hostname,
        },
    })
}
