//! The interpreters a server's groups run, each linked once on one engine,
//! and the thread that ticks the engine's epoch so busy guests yield.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;

use crate::engine::args::InterpreterArgs;
use crate::engine::extensions::{self, Pin};
use crate::engine::interpreter;
use crate::spec::interpreter::Choice;

/// This module's log target: its name before the folders, so log lines
/// and `WASGI_LOG` filters read as they did.
const LOG_TARGET: &str = "wasgi::run";

/// Ticks the engine's epoch so busy guests yield to other work.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: wasmtime::Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wasgi-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(crate::sandbox::state::EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("can spawn the epoch thread");
        EpochTicker { stop, thread: Some(thread) }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The interpreters a server's groups run, each located, compiled (or loaded
/// from the cache) and linked once, on first use, on one engine whose epoch
/// ticker keeps busy guests yielding. A config reload asks again for what
/// its groups need: interpreters already linked are reused as they are, so
/// changing one group's interpreter prepares only the new one, and one no
/// group uses is never built or compiled.
pub struct Interpreters {
    /// The default for groups that do not choose, and where to find each.
    args: InterpreterArgs,
    cache_dir: PathBuf,
    engine: wasmtime::Engine,
    /// By interpreter and the packages whose extensions are linked into it
    /// (groups whose environments pin the same set share a variant).
    linked: std::collections::HashMap<(Choice, Vec<Pin>), Linked>,
    /// The pinned interpreter's groups were told it links no extensions.
    told_pinned: bool,
    reuse: interpreter::SlotReuse,
    _ticker: EpochTicker,
}

/// One interpreter, ready to instantiate, and what the log says about it.
struct Linked {
    prepared: crate::sandbox::prepared::Prepared,
    /// "cpython-3.13 (CPython 3.13.15)".
    description: String,
}

impl Interpreters {
    /// The cache directory everything here is compiled and kept in.
    pub fn cache_dir(&self) -> &std::path::Path {
        &self.cache_dir
    }

    /// `reuse`: how finished instances' slots are left, for the groups'
    /// isolation (fixed for the process: a reload that adds request
    /// isolation keeps it, and the log says so).
    pub fn new(args: &InterpreterArgs, reuse: interpreter::SlotReuse) -> Result<Interpreters> {
        let cache_dir = args.cache_dir()?;
        let engine = interpreter::engine(&cache_dir, reuse)?;
        Ok(Interpreters {
            args: args.clone(),
            cache_dir,
            _ticker: EpochTicker::start(engine.clone()),
            engine,
            linked: Default::default(),
            told_pinned: false,
            reuse,
        })
    }

    pub fn reuse(&self) -> interpreter::SlotReuse {
        self.reuse
    }

    /// What a group runs when it does not say (`--interpreter`, `WASGI_INTERPRETER`).
    pub fn default_choice(&self) -> Choice {
        self.args.interpreter()
    }

    /// Locates, compiles and links `choice`, with the C extensions of the
    /// packages `extensions` names when it can link them, unless that was
    /// done already.
    pub async fn prepare(&mut self, choice: Choice, extensions: &[Pin]) -> Result<()> {
        let key = linked_key(choice, extensions);
        if self.linked.contains_key(&key) {
            return Ok(());
        }
        if key.1.len() != extensions.len() && !self.told_pinned {
            self.told_pinned = true;
            let names: Vec<String> = extensions.iter().map(|(n, v)| format!("{n} {v}")).collect();
            tracing::warn!(
                target: LOG_TARGET,
                "native extensions are not built for {choice} (only cpython-3.13 links them in): {} run(s) without them, in pure Python where they can",
                names.join(", ")
            );
        }
        let (python, linked_in) = {
            let (args, cache_dir, set) = (self.args.clone(), self.cache_dir.clone(), key.1.clone());
            tokio::task::spawn_blocking(move || -> Result<_> {
                let base = args.locate(choice)?;
                Ok(with_variant(&cache_dir, choice, base, &set))
            })
            .await??
        };
        let description = format!("{choice} (CPython {}){linked_in}", python.version);
        tracing::info!(target: LOG_TARGET, "interpreter {description} from {}", python.path.display());
        let stdlib = python.stdlib.clone();
        let snapshots = python.reactor.as_ref().map(|reactor| {
            Arc::new(crate::sandbox::prepared::Source::new(reactor.clone(), identity(&python.sha256, reactor), self.cache_dir.join("snapshots")))
        });
        let module = {
            let (engine, cache_dir) = (self.engine.clone(), self.cache_dir.clone());
            tokio::task::spawn_blocking(move || interpreter::load_module(&engine, &python, &cache_dir)).await??
        };
        let mut prepared = crate::sandbox::prepared::prepare(&module, stdlib)?;
        prepared.snapshots = snapshots;
        let cache_dir = self.cache_dir.clone();
        prepared.zoneinfo = tokio::task::spawn_blocking(move || crate::engine::zoneinfo::locate(&cache_dir)).await?.map(Arc::from);
        self.linked.insert(key, Linked { prepared, description });
        Ok(())
    }

    /// The linked interpreter; [`Interpreters::prepare`] must have made it.
    pub fn get(&self, choice: Choice, extensions: &[Pin]) -> &crate::sandbox::prepared::Prepared {
        &self.linked.get(&linked_key(choice, extensions)).expect("the interpreter was prepared before its groups start").prepared
    }

    /// How the log names a prepared interpreter.
    pub fn describe(&self, choice: Choice, extensions: &[Pin]) -> &str {
        self.linked.get(&linked_key(choice, extensions)).map_or(choice.name(), |l| l.description.as_str())
    }
}

/// What an interpreter is linked under: only our own build links
/// extensions in, so the pinned one is one interpreter whatever they are.
fn linked_key(choice: Choice, extensions: &[Pin]) -> (Choice, Vec<Pin>) {
    match choice {
        Choice::Cpython313 => (choice, extensions.to_vec()),
        Choice::Pinned => (choice, Vec::new()),
    }
}

/// `base` with `set`'s extension modules linked in (built on first use), and
/// what the log adds to its name (" with markupsafe._speedups (MarkupSafe
/// 3.0.2)"). When they cannot be built, says why and returns `base`: the
/// packages then run in pure Python where they can, and the guest explains
/// an import that fails.
fn with_variant(cache_dir: &Path, choice: Choice, base: interpreter::Interpreter, set: &[Pin]) -> (interpreter::Interpreter, String) {
    let names = || set.iter().map(|(n, v)| format!("{n} {v}")).collect::<Vec<_>>().join(", ");
    let variant = match extensions::locate_variant(cache_dir, &base, set) {
        Ok(Some(variant)) => variant,
        Ok(None) => return (base, String::new()),
        Err(e) => {
            tracing::warn!(target: LOG_TARGET, "cannot link the native extensions of {} into {choice}: {e:#}; its groups run without them", names());
            return (base, String::new());
        }
    };
    for failed in &variant.failed {
        tracing::warn!(
            target: LOG_TARGET,
            "{} {}: its native extensions failed to build ({}), see {}; it runs without them",
            failed.name,
            failed.version,
            failed.error,
            failed.log
        );
    }
    let modules: Vec<String> = variant.packages.iter().flat_map(|p| p.modules.iter().map(move |m| format!("{m} ({} {})", p.name, p.version))).collect();
    let with = if modules.is_empty() { String::new() } else { format!(" with {}", modules.join(", ")) };
    (variant.interpreter(&base), with)
}

/// What a reactor's snapshots are keyed by: its interpreter's hash and the
/// file's size and time (cheaper than hashing it at every start).
fn identity(interpreter_sha256: &str, reactor: &Path) -> String {
    let meta = std::fs::metadata(reactor).ok();
    let modified = meta.as_ref().and_then(|m| m.modified().ok()).and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    format!("{interpreter_sha256}-{}-{}", meta.map_or(0, |m| m.len()), modified.map_or(0, |d| d.as_nanos()))
}

