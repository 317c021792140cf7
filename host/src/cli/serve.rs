//! `wasgi serve`: a config file planned and handed to the supervisor, which
//! binds its listeners, starts every group and re-reads the file on SIGHUP.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::cli::supervisor::{supervise, OnHangup};
use crate::config::plan::plan;
use crate::engine::args::InterpreterArgs;

/// `wasgi serve --config FILE`: check, bind, start every group, serve;
/// SIGHUP re-reads the file and its policies.
pub fn serve(config_file: &Path, interpreter: &InterpreterArgs, graceful_timeout: Option<Duration>) -> Result<()> {
    let started = Instant::now();
    let cache_dir = interpreter.cache_dir()?;
    let plan = plan(config_file, &cache_dir, interpreter.interpreter())?;
    let drain = graceful_timeout.unwrap_or(plan.config.graceful_timeout);
    supervise(plan, interpreter, OnHangup::Reread { file: config_file.to_owned(), cache_dir }, drain, started)
}
