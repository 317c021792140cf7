//! The subcommands: each turns flags or a config file into a plan and starts
//! (or prints) it. The only folder that sees every other.
//!
//! - [`run`]: `wasgi run SCRIPT`: one app, one group, from flags.
//! - [`serve`]: `wasgi serve`: a config file's apps; SIGHUP reloads it.
//! - [`supervisor`]: what both start: listeners, groups, signals, reloads.
//! - [`check`]: `wasgi check`: the plan's report.
//! - [`status`]: `wasgi status`: a running server's instances, from its admin listener.
//! - [`python`]: `wasgi python`: the interpreter made ready ahead of time.
//! - [`cache`]: `wasgi cache [prune]`: the cache directory's use, and pruning.
//! - [`logline`]: every log record one physical line, text or JSON.
//! - [`systemd`]: readiness and watchdog notifications, socket activation.
//!
//! (`wasgi apache-config` and `wasgi import-apache` are [`crate::apache`]'s.)
//!
//! May use: everything.

pub mod cache;
pub mod check;
pub mod logline;
pub mod python;
pub mod run;
pub mod serve;
pub mod status;
pub mod supervisor;
pub mod systemd;
