//! `wasgi python`: the interpreter fetched or built, verified and compiled
//! ahead of the first start.

use std::path::PathBuf;

use anyhow::Result;

use crate::engine::args::InterpreterArgs;
use crate::engine::interpreter;

/// `wasgi python`: make sure the interpreter is fetched and compiled.
pub fn prepare_interpreter(args: &InterpreterArgs) -> Result<PathBuf> {
    let cache_dir = args.cache_dir()?;
    let python = args.locate(args.interpreter())?;
    let engine = interpreter::engine(&cache_dir)?;
    interpreter::load_module(&engine, &python, &cache_dir)?;
    if let Some(reactor) = &python.reactor {
        crate::sandbox::snapshot::warm(&engine, reactor, &cache_dir)?;
    }
    Ok(python.path)
}

