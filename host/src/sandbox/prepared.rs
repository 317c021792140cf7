//! An interpreter linked once and ready to instantiate ([`Prepared`]), and
//! where its snapshots are kept ([`Source`], made by [`crate::sandbox::snapshot`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use wasmtime::{InstancePre, Linker, Module};

use crate::engine::interpreter::Stdlib;
use crate::engine::wasm_error::WasmContext;
use crate::sandbox::hostcalls;
use crate::sandbox::state::GuestState;

/// The linker every guest is instantiated with: WASIp1 and wasgi's own
/// host calls (which an interpreter without `_wasgi` does not import).
pub fn prepare(module: &Module, stdlib: Option<Stdlib>) -> Result<Prepared> {
    let mut linker: Linker<GuestState> = Linker::new(module.engine());
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut GuestState| &mut s.wasi)?;
    hostcalls::add_to_linker(&mut linker)?;
    crate::sandbox::net::add_to_linker(&mut linker)?;
    let pre = linker.instantiate_pre(module).wasm_context("cannot link python.wasm")?;
    let hostcalls = hostcalls::imported_by(module) && !hostcalls::stdio_requested()?;
    Ok(Prepared { pre, linker, stdlib: stdlib.map(Arc::new), zoneinfo: None, hostcalls, entry: Entry::Start, snapshots: None })
}

/// The linked interpreter every instance of a server starts from, and where
/// its standard library is when it is not inside the binary.
#[derive(Clone)]
pub struct Prepared {
    pub pre: InstancePre<GuestState>,
    pub linker: Linker<GuestState>,
    pub stdlib: Option<Arc<Stdlib>>,
    /// The time-zone database mapped read-only at [`crate::engine::zoneinfo::GUEST_DIR`].
    pub zoneinfo: Option<Arc<Path>>,
    /// The interpreter imports the host calls: frames go through them, and
    /// the guest's stdin and stdout carry none.
    pub hostcalls: bool,
    /// How an instance of `pre` begins.
    pub entry: Entry,
    /// Where groups on this interpreter get their snapshots, if it can be snapshotted.
    pub snapshots: Option<Arc<Source>>,
}

impl Prepared {
    /// The same interpreter, starting from a group's snapshot.
    pub fn from_snapshot(&self, module: &Module) -> Result<Prepared> {
        let pre = self.linker.instantiate_pre(module).wasm_context("cannot link the snapshot")?;
        Ok(Prepared { pre, entry: Entry::Serve, ..self.clone() })
    }
}

/// The export an instance is started with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// python.wasm's `_start`: python runs the bridge, which imports the app and serves.
    Start,
    /// A snapshot's `wasgi_serve`: the app is already imported.
    Serve,
}

/// Where an interpreter's snapshots come from and are kept.
pub struct Source {
    /// python-reactor.wasm.
    pub reactor: PathBuf,
    /// What identifies its content (see `sandbox::interpreters::identity`),
    /// part of every snapshot key.
    pub identity: String,
    /// CACHE/snapshots.
    pub dir: PathBuf,
    /// Snapshots loaded by this process, by key: a replacement instance (or
    /// one per request, under isolation = "request") needs no disk read.
    pub(crate) loaded: std::sync::Mutex<std::collections::HashMap<String, Loaded>>,
    /// Keys whose app could not be snapshotted (it keeps files open): not
    /// tried again by this process, so each instance imports the app.
    pub(crate) refused: std::sync::Mutex<std::collections::HashSet<String>>,
    /// One build at a time per key: instances of a group started or
    /// replaced together wait for one snapshot instead of each building it,
    /// while other groups (other keys) build theirs at the same time.
    pub(crate) building: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// python-reactor.wasm instrumented for wizer and compiled, the same
    /// for every key: done once, by the first build, whichever group's.
    pub(crate) instrumented: tokio::sync::OnceCell<Module>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("reactor", &self.reactor).field("dir", &self.dir).finish()
    }
}

impl Source {
    pub fn new(reactor: PathBuf, identity: String, dir: PathBuf) -> Source {
        Source {
            reactor,
            identity,
            dir,
            loaded: Default::default(),
            refused: Default::default(),
            building: Default::default(),
            instrumented: Default::default(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Loaded {
    pub(crate) prepared: Prepared,
    pub(crate) manifest: Arc<Manifest>,
    /// When the manifest's files were last found unchanged.
    pub(crate) checked: Instant,
}

/// What a snapshot was made from, for telling when it is stale.
#[derive(Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// Host path, length, modification time (ns since the epoch).
    pub(crate) files: Vec<(PathBuf, u64, u128)>,
}
