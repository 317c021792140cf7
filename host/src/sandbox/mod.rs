//! One guest: a wasmtime store running python.wasm and the bridge.
//!
//! - [`abi`]: the host calls' and guest exports' names, types and
//!   contracts, written once and checked against the C sources.
//! - [`bridge`]: the bridge's Python source (guest/bridge/), joined at build time.
//! - [`prepared`]: the interpreter linked once (WASI and the host calls), and
//!   where its snapshots are kept.
//! - [`instance`]: a guest's WASI context built from its grants and nothing
//!   else, its start, and [`instance::Instance::drive`], which runs it
//!   together with one request's exchange.
//! - [`state`]: a store's data: WASI, memory limit, CPU budget.
//! - [`gone`]: why a guest ended (exit, trap, deadline, CPU limit, broken
//!   frames, a closed channel), as a value the exchange matches on.
//! - [`hostcalls`]: frames through wasm imports (`_wasgi` in our own build).
//! - [`net`]: outbound connections the host makes for a guest, checked
//!   against its group's `[[connect]]` grants.
//! - [`stdio`]: the guest's stdin/stdout channels (frames on the pinned
//!   3.12) and its stderr → the log.
//! - [`snapshot`]: a group's app imported once and snapshotted (wasmtime-wizer).
//! - [`interpreters`]: each interpreter the groups run, linked once, and the
//!   epoch ticker.
//!
//! May use: `engine`, `protocol`, `spec`. Knows nothing of groups or HTTP.

pub mod abi;
pub mod bridge;
pub mod gone;
pub mod hostcalls;
pub mod instance;
pub mod net;
pub mod interpreters;
pub mod prepared;
pub mod snapshot;
pub mod state;
pub mod stdio;
