//! `wasgi python`: the interpreter fetched or built, verified and compiled
//! ahead of the first start; with `--python-path`, also the variant with
//! that environment's C extensions built in.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::engine::args::InterpreterArgs;
use crate::engine::{extensions, interpreter};
use crate::spec::interpreter::Choice;

/// `wasgi python`: make sure the interpreter is fetched and compiled. Given
/// an app's python path, the interpreter its group will run: the variant
/// with the C extensions found there (built now, so that a server started
/// by a service manager does not sit in the build). Its python.wasm.
pub fn prepare_interpreter(args: &InterpreterArgs, python_path: &[PathBuf]) -> Result<PathBuf> {
    let cache_dir = args.cache_dir()?;
    let mut python = args.locate(args.interpreter())?;
    let wanted = extensions::scan(python_path).to_build;
    if !wanted.is_empty() {
        if args.interpreter() == Choice::Pinned {
            bail!("--python-path names C extensions to build ({}), but only cpython-3.13 links them in", names(&wanted));
        }
        if let Some(variant) = extensions::locate_variant(&cache_dir, &python, &wanted)? {
            for f in &variant.failed {
                eprintln!("wasgi python: {} {} failed to build and is left out: {} (see {})", f.name, f.version, f.error, f.log);
            }
            python = variant.interpreter(&python);
        }
    }
    let engine = interpreter::engine(&cache_dir, interpreter::SlotReuse::LongLived)?;
    interpreter::load_module(&engine, &python, &cache_dir)?;
    if let Some(reactor) = &python.reactor {
        crate::sandbox::snapshot::warm(&engine, reactor, &cache_dir)?;
    }
    Ok(python.path)
}

fn names(pins: &[extensions::Pin]) -> String {
    pins.iter().map(|(n, v)| format!("{n} {v}")).collect::<Vec<_>>().join(", ")
}
