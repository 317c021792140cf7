//! Pre-initialised instances: a group's app is imported once, the guest is
//! snapshotted (wasmtime-wizer), and every instance of the group starts from
//! the snapshot with the app already imported.
//!
//! The interpreter must be our own build's `python-reactor.wasm`: its
//! `wasgi_init` export runs the bridge up to the end of the app's import and
//! returns, and `wasgi_serve` continues from there. The snapshot is a wasm
//! module whose data segments hold the guest's memory after the import;
//! wasmtime maps them copy-on-write into every instance.
//!
//! A snapshot is kept on disk under `CACHE/snapshots/KEY/`, KEY being a hash
//! of the interpreter, the bridge and everything the guest is given (grants,
//! environment, the bridge's config), less what only names its group in the
//! bridge's messages: groups that run the same app files with the same
//! settings, user and host name share one snapshot (built once, its code
//! mapped once), and each restored instance is told its group first. Next to it, a manifest of the files the
//! import read (modules and files opened), with their sizes and modification
//! times: a snapshot whose files changed is built again, so a reload after an
//! edit never starts the old code.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use wasmtime::Module;

use crate::engine::wasm_error::WasmContext;
use crate::protocol::frames::Kind;
use crate::sandbox::gone::Gone;
use crate::sandbox::abi;
use crate::sandbox::instance::{self, NewGuest, StartError};
use crate::sandbox::prepared::{Loaded, Manifest, Prepared, Source};
use crate::sandbox::state::GuestState;
use crate::spec::guest::GuestSpec;

/// This module's log target: its name before the folders, so log lines
/// and `WASGI_LOG` filters read as they did.
const LOG_TARGET: &str = "wasgi::snapshot";

/// The most files a guest may report as read by its import. The manifest
/// is checked (a stat per file) whenever an instance starts, at most once a
/// second; an absurd report is cut here, and the log says so.
pub const MAX_REPORTED_FILES: usize = 10_000;

/// How long a loaded snapshot is trusted before its files are looked at again.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The instances of `spec` start from a snapshot when its interpreter can be
/// snapshotted and the group allows it; `None` means start them as usual.
pub async fn prepare(base: &Prepared, spec: &GuestSpec) -> Result<Option<Prepared>, StartError> {
    let Some(source) = base.snapshots.as_ref().filter(|_| spec.snapshot) else {
        return Ok(None);
    };
    let key = key(source, base, spec);
    if let Some(prepared) = in_memory(source, &key) {
        return Ok(Some(prepared));
    }
    let key_lock = source.building.lock().expect("snapshot build locks").entry(key.clone()).or_default().clone();
    let _building = key_lock.lock().await;
    if let Some(prepared) = in_memory(source, &key) {
        return Ok(Some(prepared));
    }
    if source.refused.lock().expect("snapshot refusals lock").contains(&key) {
        return Ok(None);
    }
    let engine = base.pre.module().engine().clone();
    let dir = source.dir.join(&key);
    let cached = {
        let (engine, dir) = (engine.clone(), dir.clone());
        tokio::task::spawn_blocking(move || load(&engine, &dir)).await.map_err(|e| StartError::Setup(e.into()))?
    };
    let (module, manifest) = match cached {
        Ok(Some(found)) => {
            tracing::debug!(target: LOG_TARGET, app = %spec.name, "starting from snapshot {key}");
            found
        }
        Ok(None) | Err(_) => {
            if let Err(e) = cached {
                tracing::warn!(target: LOG_TARGET, app = %spec.name, "snapshot {} is unusable ({e:#}); building it again", dir.display());
            }
            let started = Instant::now();
            let Some((module, manifest, memory)) = build(base, source, spec, &dir).await? else {
                source.refused.lock().expect("snapshot refusals lock").insert(key);
                return Ok(None);
            };
            tracing::info!(
                target: LOG_TARGET,
                app = %spec.name,
                "snapshot built in {:.1}s ({:.1} MiB of memory after import); instances start from it",
                started.elapsed().as_secs_f64(),
                memory as f64 / (1 << 20) as f64
            );
            (module, manifest)
        }
    };
    // Kept by pruning while this server runs it.
    crate::engine::cache::mark_used(&dir);
    let prepared = base.from_snapshot(&module).map_err(StartError::Setup)?;
    let loaded = Loaded { prepared: prepared.clone(), manifest: Arc::new(manifest), checked: Instant::now() };
    source.loaded.lock().expect("snapshot cache lock").insert(key, loaded);
    Ok(Some(prepared))
}

/// The snapshot this process already loaded, if its files are unchanged.
fn in_memory(source: &Source, key: &str) -> Option<Prepared> {
    let mut loaded = source.loaded.lock().expect("snapshot cache lock");
    let entry = loaded.get_mut(key)?;
    if entry.checked.elapsed() > RECHECK {
        if !unchanged(&entry.manifest) {
            loaded.remove(key);
            return None;
        }
        entry.checked = Instant::now();
    }
    Some(entry.prepared.clone())
}

fn unchanged(manifest: &Manifest) -> bool {
    for (path, len, modified) in &manifest.files {
        if stamp(path) != Some((*len, *modified)) {
            tracing::info!(target: LOG_TARGET, "{} changed since the snapshot was made", path.display());
            return false;
        }
    }
    true
}

/// Compiles python-reactor.wasm once, so its functions are in the incremental
/// cache and a group's first snapshot compiles in seconds (`wasgi python`
/// does this; otherwise the first snapshot pays for it).
pub fn warm(engine: &wasmtime::Engine, reactor: &Path, cache_dir: &Path) -> Result<()> {
    let wasm = std::fs::read(reactor).with_context(|| format!("cannot read {}", reactor.display()))?;
    let (_, instrumented) = instrumenter().instrument(&wasm).with_wasm_context(|| format!("cannot instrument {}", reactor.display()))?;
    let sha256 = hex::encode(Sha256::digest(&instrumented));
    crate::engine::interpreter::load_or_compile(engine, &sha256, cache_dir, "compiling python-reactor.wasm for snapshots (first use only)", || Ok(instrumented))?;
    Ok(())
}

fn instrumenter() -> wasmtime_wizer::Wizer {
    let mut wizer = wasmtime_wizer::Wizer::new();
    wizer.init_func(abi::WASGI_INIT.name);
    wizer
}

/// Everything the guest is made from, hashed; the app's own files are in the manifest.
fn key(source: &Source, base: &Prepared, spec: &GuestSpec) -> String {
    let mut h = Sha256::new();
    h.update(source.identity.as_bytes());
    // Hashed once: a key is computed for every instance started (under
    // isolation = "request", for every request).
    static BRIDGE: std::sync::LazyLock<[u8; 32]> = std::sync::LazyLock::new(|| Sha256::digest(instance::BRIDGE_SOURCE.as_bytes()).into());
    h.update(*BRIDGE);
    // Not what only names the group in messages: groups whose guests see
    // the same files, environment and host facts share one snapshot.
    h.update(instance::snapshot_config(spec, base.hostcalls).as_bytes());
    for (k, v) in &spec.env {
        h.update(format!("env {k}={v}\0").as_bytes());
    }
    for g in &spec.grants {
        if g.is_private() {
            // Each group's own, empty for the build (see `build`): only
            // where the guest finds it matters.
            h.update(format!("private {}:{}\0", g.guest_path.display(), g.write).as_bytes());
            continue;
        }
        // The directory's identity too: a grant replaced by another
        // directory of the same name is not what the snapshot was made from.
        let (dev, ino) = g.dir.identity();
        h.update(format!("grant {}={}:{} {dev}:{ino}\0", g.path.display(), g.guest_path.display(), g.write).as_bytes());
    }
    if let Some(stdlib) = &base.stdlib {
        h.update(format!("stdlib {}={}\0", stdlib.host.display(), stdlib.guest.display()).as_bytes());
    }
    if let Some(zoneinfo) = instance::zoneinfo_mapped(spec, base) {
        h.update(format!("zoneinfo {}\0", zoneinfo.display()).as_bytes());
    }
    h.update(crate::engine::interpreter::engine_settings(base.pre.module().engine()).as_bytes());
    hex::encode(&h.finalize()[..12])
}

/// The snapshot in `dir`, if it exists and its files have not changed since.
fn load(engine: &wasmtime::Engine, dir: &Path) -> Result<Option<(Module, Manifest)>> {
    let Ok(text) = std::fs::read_to_string(dir.join("manifest.json")) else {
        return Ok(None);
    };
    let manifest: Manifest = serde_json::from_str(&text).context("its manifest is damaged")?;
    if !unchanged(&manifest) {
        return Ok(None);
    }
    Ok(Some((mapped(engine, dir)?, manifest)))
}

/// The compiled snapshot in `dir`, mapped from its file.
fn mapped(engine: &wasmtime::Engine, dir: &Path) -> Result<Module> {
    let artifact = dir.join("snapshot.cwasm");
    // Mapped, not read: instances share its pages, and a start reads only
    // what it touches. It was written whole and renamed into place; its
    // recorded length catches a file cut short.
    crate::engine::artifacts::trusted_artifact(&artifact)?;
    let expected: u64 = std::fs::read_to_string(dir.join("snapshot.len")).context("its length record is missing")?.trim().parse().context("its length record is damaged")?;
    let found = std::fs::metadata(&artifact).with_context(|| format!("cannot read {}", artifact.display()))?.len();
    if found != expected {
        bail!("{} is {found} bytes, {expected} were written", artifact.display());
    }
    // SAFETY: written by `Module::serialize` of this wasmtime with these
    // engine settings (both in the key), complete (its length matches), and
    // never modified in place (a new snapshot replaces the directory).
    Ok(unsafe { Module::deserialize_file(engine, &artifact) }?)
}

/// Empty private directories (bytecode cache, /tmp) for a snapshot's build,
/// removed when dropped. The build imports the app with these instead of
/// the building group's own: a snapshot that several groups share holds
/// what their common files gave, never what one tenant left in its /tmp.
struct Scratch(PathBuf);

impl Scratch {
    fn new(source: &Source, dir: &Path) -> Result<Scratch> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!(".build-{}-{}-{n}", dir.file_name().map(|f| f.to_string_lossy()).unwrap_or_default(), std::process::id());
        let path = source.dir.join(name);
        std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Scratch(path))
    }

    /// `spec` with each private grant on an empty directory of its own here.
    fn private_dirs(&self, spec: &GuestSpec) -> Result<GuestSpec> {
        let mut spec = spec.clone();
        for (i, grant) in spec.grants.iter_mut().enumerate().filter(|(_, g)| g.is_private()) {
            let path = self.0.join(format!("private-{i}"));
            std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
            grant.dir = crate::spec::grant_dir::GrantDir::open(&path, true).with_context(|| format!("cannot open {}", path.display()))?;
            grant.path = path;
        }
        Ok(spec)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn stamp(path: &Path) -> Option<(u64, u128)> {
    let meta = std::fs::metadata(path).ok()?;
    let modified = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
    Some((meta.len(), modified))
}

/// Runs `wasgi_init` in an instrumented reactor, snapshots it and stores the
/// result. `None`: the app cannot be snapshotted (the log says why).
async fn build(base: &Prepared, source: &Source, spec: &GuestSpec, dir: &Path) -> Result<Option<(Module, Manifest, usize)>, StartError> {
    let setup = |e: anyhow::Error| StartError::Setup(e);
    let engine = base.pre.module().engine().clone();
    let wasm = std::fs::read(&source.reactor).with_context(|| format!("cannot read {}", source.reactor.display())).map_err(setup)?;
    let wizer = instrumenter();
    let t = Instant::now();
    let (cx, instrumented) = wizer.instrument(&wasm).with_wasm_context(|| format!("cannot instrument {}", source.reactor.display())).map_err(setup)?;
    // The instrumented reactor is the same for every snapshot of this
    // interpreter: compiled once (or loaded from the module cache) by the
    // first build, which the others wait for.
    let module = source
        .instrumented
        .get_or_try_init(|| {
            let (engine, cache_dir) = (engine.clone(), source.dir.parent().unwrap_or(&source.dir).to_owned());
            async move {
            let sha256 = hex::encode(Sha256::digest(&instrumented));
            tokio::task::spawn_blocking(move || {
                crate::engine::interpreter::load_or_compile(&engine, &sha256, &cache_dir, "compiling python-reactor.wasm for snapshots (first use only)", || Ok(instrumented))
            })
            .await
            .map_err(|e| setup(e.into()))?
            .context("cannot compile python-reactor.wasm")
            .map_err(setup)
            }
        })
        .await?
        .clone();

    tracing::debug!(target: LOG_TARGET, app = %spec.name, "snapshot: instrumented and compiled in {:.2}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let scratch = Scratch::new(source, dir).map_err(setup)?;
    let build_spec = scratch.private_dirs(spec).map_err(setup)?;
    let NewGuest { mut store, mut io, memory_bytes: _, cpu: _, usage: _ } =
        NewGuest::new(base, &build_spec, 0, true).map_err(setup)?;
    let instance = base.linker.instantiate_async(&mut store, &module).await.wasm_context("cannot instantiate python-reactor.wasm").map_err(setup)?;
    let mut calls = Vec::new();
    for name in ["_initialize", abi::WASGI_INIT.name] {
        let f = instance.get_typed_func::<(), ()>(&mut store, name).with_wasm_context(|| format!("python-reactor.wasm has no {name}")).map_err(setup)?;
        calls.push(f);
    }
    let init = async {
        for f in &calls {
            f.call_async(&mut store, ()).await?;
        }
        wasmtime::Result::Ok(())
    };
    let outcome = match spec.limits.startup_timeout {
        Some(limit) => match tokio::time::timeout(limit, init).await {
            Ok(outcome) => outcome,
            Err(_) => {
                return Err(StartError::App(format!(
                    "{}: the app was still importing after startup_timeout ({:.0}s); the snapshot was abandoned",
                    spec.script.display(),
                    limit.as_secs_f64()
                )))
            }
        },
        None => init.await,
    };
    // What the bridge said while importing: its log lines are logged on the way.
    let mut prepared = None;
    while let Some(frame) = io.try_recv() {
        match frame {
            Ok((Kind::StartupFailed, message)) => return Err(StartError::App(instance::startup_failure(spec, &message))),
            Ok((Kind::Prepared, payload)) => prepared = Some(payload),
            Ok((kind, _)) => return Err(StartError::Crashed(format!("unexpected {kind:?} frame while importing for a snapshot"))),
            Err(gone) => return Err(StartError::Stopped(gone)),
        }
    }
    if let Err(e) = outcome {
        return Err(StartError::Stopped(Gone::from_run(Err(e))));
    }
    let Some(payload) = prepared else {
        return Err(StartError::Crashed("wasgi_init returned without saying the app was imported".into()));
    };
    #[derive(Deserialize)]
    struct Imported {
        files: Vec<PathBuf>,
        open_fds: Vec<i32>,
    }
    let mut imported: Imported = serde_json::from_slice(&payload).map_err(|e| StartError::Crashed(format!("bad snapshot report from the bridge: {e}")))?;
    if !imported.open_fds.is_empty() {
        tracing::warn!(
            target: LOG_TARGET,
            app = %spec.name,
            "not snapshotting: the app keeps {} file(s) open after its import (descriptors {:?}), which a snapshot cannot carry into a new instance; its instances import it each",
            imported.open_fds.len(),
            &imported.open_fds[..imported.open_fds.len().min(16)]
        );
        return Ok(None);
    }
    if imported.files.len() > MAX_REPORTED_FILES {
        tracing::warn!(
            target: LOG_TARGET,
            app = %spec.name,
            "the app reported {} files read by its import, over the limit of {MAX_REPORTED_FILES}: only the first {MAX_REPORTED_FILES} are watched for changes, so a change to another one takes effect at the next restart",
            imported.files.len()
        );
        imported.files.truncate(MAX_REPORTED_FILES);
    }

    tracing::debug!(target: LOG_TARGET, app = %spec.name, "snapshot: the app imported in {:.2}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let memory = instance.get_memory(&mut store, "memory").map(|m| m.data_size(&store)).unwrap_or(0);
    let snapshot = wizer.snapshot(&cx, &mut Guest { store: &mut store, instance }).await.wasm_context("cannot snapshot the guest").map_err(setup)?;
    tracing::debug!(target: LOG_TARGET, app = %spec.name, "snapshot: memory captured in {:.2}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let module = {
        let engine = engine.clone();
        tokio::task::spawn_blocking(move || Module::new(&engine, &snapshot))
            .await
            .map_err(|e| setup(e.into()))?
            .wasm_context("cannot compile the snapshot")
            .map_err(setup)?
    };
    tracing::debug!(target: LOG_TARGET, app = %spec.name, "snapshot: compiled in {:.2}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let manifest = Manifest { files: host_files(base, spec, &imported.files) };
    let module = match store_snapshot(&module, &manifest, dir) {
        // The stored file, mapped, replaces the compiled code held in memory:
        // instances then share its pages with the page cache, as they do
        // after the next start, and the process does not keep a private copy.
        Ok(()) => mapped(&engine, dir).unwrap_or(module),
        Err(e) => {
            tracing::warn!(target: LOG_TARGET, app = %spec.name, "cannot keep the snapshot in {}: {e:#}", dir.display());
            module
        }
    };
    tracing::debug!(target: LOG_TARGET, app = %spec.name, "snapshot: stored in {:.2}s", t.elapsed().as_secs_f64());
    drop(store);
    crate::engine::interpreter::release_freed_memory();
    Ok(Some((module, manifest, memory)))
}

/// The host files behind the guest paths the import read; the standard
/// library is left out (it is part of the interpreter, in the key).
fn host_files(base: &Prepared, spec: &GuestSpec, guest_files: &[PathBuf]) -> Vec<(PathBuf, u64, u128)> {
    let mut grants: Vec<_> = spec.grants.iter().collect();
    grants.sort_by_key(|g| std::cmp::Reverse(g.guest_path.as_os_str().len()));
    let mut files: Vec<_> = std::iter::once(spec.script.clone())
        .chain(guest_files.iter().filter_map(|file| {
            if base.stdlib.as_ref().is_some_and(|s| file.starts_with(&s.guest)) {
                return None;
            }
            // wasgi's time-zone database is in the key.
            if instance::zoneinfo_mapped(spec, base).is_some() && file.starts_with(crate::engine::zoneinfo::GUEST_DIR) {
                return None;
            }
            let grant = grants.iter().find(|g| file.starts_with(&g.guest_path))?;
            Some(grant.path.join(file.strip_prefix(&grant.guest_path).ok()?))
        }))
        .filter_map(|path| stamp(&path).map(|(len, modified)| (path, len, modified)))
        .collect();
    files.sort();
    files.dedup();
    files
}

fn store_snapshot(module: &Module, manifest: &Manifest, dir: &Path) -> Result<()> {
    let bytes = module.serialize()?;
    let parent = dir.parent().context("a snapshot directory has a parent")?;
    std::fs::create_dir_all(parent)?;
    // Built in a scratch directory and renamed into place, so a reader never
    // sees half a snapshot.
    let scratch = parent.join(format!(".{}-{}.tmp", std::process::id(), crate::engine::artifacts::unique()));
    std::fs::create_dir_all(&scratch)?;
    crate::engine::artifacts::write_private(&scratch.join("snapshot.cwasm"), &bytes)?;
    std::fs::write(scratch.join("snapshot.len"), bytes.len().to_string())?;
    std::fs::write(scratch.join("manifest.json"), serde_json::to_vec(manifest)?)?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&scratch, dir).with_context(|| format!("cannot move the snapshot into {}", dir.display()))?;
    Ok(())
}

/// wasmtime-wizer reads the instrumented instance's globals and memory through this.
struct Guest<'a> {
    store: &'a mut wasmtime::Store<GuestState>,
    instance: wasmtime::Instance,
}

impl wasmtime_wizer::InstanceState for Guest<'_> {
    async fn global_get(&mut self, name: &str, _: wasmtime_wizer::ValType) -> wasmtime_wizer::SnapshotVal {
        use wasmtime::Val;
        use wasmtime_wizer::SnapshotVal;
        let global = self.instance.get_global(&mut *self.store, name).expect("wizer names an exported global");
        match global.get(&mut *self.store) {
            Val::I32(x) => SnapshotVal::I32(x),
            Val::I64(x) => SnapshotVal::I64(x),
            Val::F32(x) => SnapshotVal::F32(x),
            Val::F64(x) => SnapshotVal::F64(x),
            Val::V128(x) => SnapshotVal::V128(x.as_u128()),
            other => panic!("a global of type {other:?} cannot be snapshotted"),
        }
    }

    async fn memory_contents(&mut self, name: &str, contents: impl FnOnce(&[u8]) + Send) {
        let memory = self.instance.get_memory(&mut *self.store, name).expect("wizer names an exported memory");
        contents(memory.data(&*self.store))
    }
}

