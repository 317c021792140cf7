//! Where interpreters come from, as every subcommand takes it: `--python-wasm`,
//! `--cache-dir`, `--interpreter` (and their environment variables).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::engine::interpreter;
use crate::spec::interpreter::Choice;

#[derive(Args, Debug, Clone)]
pub struct InterpreterArgs {
    /// A local copy of the pinned python.wasm (checked against its SHA-256; no network needed).
    #[arg(long, env = "WASGI_PYTHON_WASM", value_name = "PATH")]
    pub python_wasm: Option<PathBuf>,
    /// Where fetched and compiled artifacts are kept.
    #[arg(long, env = "WASGI_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// cpython-3.13 (the default: built here from Debian's sources on first use by
    /// python-wasm/build, about 10 to 15 minutes on 2 cores, then cached) or cpython-3.12 (the pinned
    /// prebuilt 3.12.0, fetched in seconds; the default with --python-wasm); in a wasgi.toml,
    /// for the groups that set no `interpreter` of their own.
    #[arg(long = "interpreter", env = "WASGI_INTERPRETER", value_name = "NAME")]
    pub chosen: Option<Choice>,
}

impl InterpreterArgs {
    /// The process's interpreter: `--interpreter` (or WASGI_INTERPRETER); else
    /// the pinned 3.12.0 when `--python-wasm` gives a copy of it; else our
    /// own CPython 3.13.
    pub fn interpreter(&self) -> Choice {
        match (self.chosen, &self.python_wasm) {
            (Some(choice), _) => choice,
            (None, Some(_)) => Choice::Pinned,
            (None, None) => Choice::default(),
        }
    }

    /// The server's own cache directory (see [`interpreter::own_cache_dir`]):
    /// absolute, because the guest is handed paths inside it.
    pub fn cache_dir(&self) -> Result<PathBuf> {
        let dir = match &self.cache_dir {
            Some(dir) => dir.clone(),
            None => interpreter::default_cache_dir()?,
        };
        interpreter::own_cache_dir(&dir)
    }

    /// Finds `choice` (fetching or building it when needed). `--python-wasm`
    /// is a copy of the pinned build: it serves the groups on cpython-3.12,
    /// and is still handed to the process's default so that
    /// `--interpreter cpython-3.13 --python-wasm X` stays the error it was.
    pub fn locate(&self, choice: Choice) -> Result<interpreter::Interpreter> {
        let applies = choice == Choice::Pinned || choice == self.interpreter();
        let explicit = self.python_wasm.as_deref().filter(|_| applies);
        interpreter::locate_choice(choice, explicit, &self.cache_dir()?)
    }
}

