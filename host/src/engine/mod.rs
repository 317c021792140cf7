//! The interpreter and compiled code: finding, verifying or building
//! python.wasm ([`interpreter`]) and its variants with an app's native
//! extensions linked in ([`extensions`]), the wasmtime engine and its on-disk cache of
//! compiled modules ([`artifacts`]), the time-zone database every guest
//! reads ([`zoneinfo`]), the options that say where they come from
//! ([`args`]), the cache directory's marks of use and pruning ([`cache`]),
//! and the one conversion of wasmtime's errors into wasgi's
//! ([`wasm_error`]).
//!
//! May use: `spec`. Knows nothing of guests, groups or HTTP.

pub mod args;
pub mod artifacts;
pub mod cache;
pub mod extensions;
pub mod interpreter;
pub mod wasm_error;
pub mod zoneinfo;
