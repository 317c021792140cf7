//! The interpreters a server's groups run, each linked once on one engine,
//! and the thread that ticks the engine's epoch so busy guests yield.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;

use crate::engine::args::InterpreterArgs;
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
    linked: std::collections::HashMap<Choice, Linked>,
    _ticker: EpochTicker,
}

/// One interpreter, ready to instantiate, and what the log says about it.
struct Linked {
    prepared: crate::sandbox::prepared::Prepared,
    /// "cpython-3.13 (CPython 3.13.15)".
    description: String,
}

impl Interpreters {
    pub fn new(args: &InterpreterArgs) -> Result<Interpreters> {
        let cache_dir = args.cache_dir()?;
        let engine = interpreter::engine(&cache_dir)?;
        Ok(Interpreters {
            args: args.clone(),
            cache_dir,
            _ticker: EpochTicker::start(engine.clone()),
            engine,
            linked: Default::default(),
        })
    }

    /// What a group runs when it does not say (`--interpreter`, `WASGI_INTERPRETER`).
    pub fn default_choice(&self) -> Choice {
        self.args.interpreter()
    }

    /// Locates, compiles and links `choice` unless that was done already.
    pub async fn prepare(&mut self, choice: Choice) -> Result<()> {
        if self.linked.contains_key(&choice) {
            return Ok(());
        }
        let python = {
            let args = self.args.clone();
            tokio::task::spawn_blocking(move || args.locate(choice)).await??
        };
        let description = format!("{choice} (CPython {})", python.version);
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
        self.linked.insert(choice, Linked { prepared, description });
        Ok(())
    }

    /// The linked interpreter; [`Interpreters::prepare`] must have made it.
    pub fn get(&self, choice: Choice) -> &crate::sandbox::prepared::Prepared {
        &self.linked.get(&choice).expect("the interpreter was prepared before its groups start").prepared
    }

    /// How the log names a prepared interpreter.
    pub fn describe(&self, choice: Choice) -> &str {
        self.linked.get(&choice).map_or(choice.name(), |l| l.description.as_str())
    }
}

/// What a reactor's snapshots are keyed by: its interpreter's hash and the
/// file's size and time (cheaper than hashing it at every start).
fn identity(interpreter_sha256: &str, reactor: &Path) -> String {
    let meta = std::fs::metadata(reactor).ok();
    let modified = meta.as_ref().and_then(|m| m.modified().ok()).and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    format!("{interpreter_sha256}-{}-{}", meta.map_or(0, |m| m.len()), modified.map_or(0, |d| d.as_nanos()))
}

