//! What to run, as plain values: the limits, listen addresses, log settings, trusted
//! proxies, access lists, interpreter choice and guest spec that `config`
//! (or `wasgi run`'s flags) builds and the runtime reads, and each granted
//! directory opened once ([`grant_dir`]), and the outbound connection grants
//! ([`connect`]).
//!
//! May use: nothing else in the crate. Every other folder may use it.

pub mod access;
pub mod connect;
pub mod grant_dir;
pub mod guest;
pub mod interpreter;
pub mod limits;
pub mod listen;
pub mod logging;
pub mod proxies;
